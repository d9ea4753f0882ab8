/**
 * Reverse-mode autograd in one topological sort (micrograd's shape, on GPU tensors).
 * Each op that may need a gradient calls `record` with its inputs, output and a backward rule;
 * `backward(loss)` visits nodes in reverse topological order, so each rule runs once with the
 * gradient summed over every path, and leaves accumulate into `.grad` across calls.
 */
import { alias, type Shape, Tensor } from "./tensor.ts";
import { keep, tidy } from "./scope.ts";
import { add, fill } from "./ops/elementwise.ts";
import { sumTo } from "./ops/reduce.ts";

let gradDepth = 0;

/** Whether ops currently record graph nodes. */
export function isGradEnabled(): boolean {
  return gradDepth === 0;
}

/** Runs `fn` without recording gradients (inference, optimiser steps, metrics). */
export function noGrad<T>(fn: () => T): T {
  gradDepth++;
  try {
    return fn();
  } finally {
    gradDepth--;
  }
}

/** Async variant of {@link noGrad}. */
export async function noGradAsync<T>(fn: () => Promise<T>): Promise<T> {
  gradDepth++;
  try {
    return await fn();
  } finally {
    gradDepth--;
  }
}

let recomputeDepth = 0;

/**
 * Runs `fn` recording a graph even inside a backward rule or {@link noGrad}, marked as a rerun
 * ({@link isRecomputing}): activation checkpointing's second forward.
 */
export function recompute<T>(fn: () => T): T {
  const saved = gradDepth;
  gradDepth = 0;
  recomputeDepth++;
  try {
    return fn();
  } finally {
    gradDepth = saved;
    recomputeDepth--;
  }
}

/** True while a checkpointed forward runs again: side effects (BN running statistics) skip it. */
export function isRecomputing(): boolean {
  return recomputeDepth > 0;
}

/** Backward rule: the gradient of the output → one gradient (or null) per input. */
export type BackwardRule = (grad: Tensor) => (Tensor | null | undefined)[];

export class Node {
  private released = false;
  constructor(
    readonly name: string,
    readonly inputs: Tensor[],
    readonly rule: BackwardRule,
    readonly saved: Tensor[],
  ) {
    for (const s of saved) s.hold();
  }
  /** Lets go of the tensors saved for backward (after backward, or when the graph is abandoned). */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const s of this.saved) s.unhold();
  }
  get isReleased(): boolean {
    return this.released;
  }
}

/**
 * Records `out = op(inputs)` for autograd when grad mode is on and an input requires grad.
 * `saved` lists tensors the rule reads (kept alive until backward); inputs used by the rule must be
 * listed there too.
 */
export function record(
  name: string,
  inputs: Tensor[],
  out: Tensor,
  rule: BackwardRule,
  saved: Tensor[] = [],
): Tensor {
  if (gradDepth > 0 || !inputs.some((t) => t.requiresGrad)) return out;
  out.requiresGrad = true;
  out.node = new Node(name, inputs, rule, saved);
  return out;
}

/** Makes a leaf that accumulates gradients (a parameter or an input under test). */
export function requireGrad<T extends Tensor>(t: T, on = true): T {
  if (t.node) {
    throw new Error(`requireGrad: ${t} is not a leaf (it was produced by ${t.node.name})`);
  }
  t.requiresGrad = on;
  return t;
}

/** Topological order of the nodes reachable from `root` (inputs before outputs). */
function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: model graphs are thousands of nodes deep.
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const ins = t.node?.inputs ?? [];
    if (i < ins.length) {
      top[1]++;
      const c = ins[i];
      if (c.requiresGrad && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

/**
 * Backpropagates from `loss` (a scalar unless `grad` is given). Leaves' `.grad` accumulate;
 * the graph is freed unless `retainGraph`.
 */
export function backward(loss: Tensor, grad?: Tensor, opts: { retainGraph?: boolean } = {}): void {
  if (!loss.requiresGrad) {
    throw new Error("backward(): the loss does not require grad (no parameter reaches it)");
  }
  if (!grad && loss.size !== 1) {
    throw new Error(
      `backward(): the loss must be a scalar, got shape [${loss.shape}]; pass a gradient`,
    );
  }
  const order = topoSort(loss);
  const grads = new Map<Tensor, Tensor>();
  try {
    backwardPass(loss, order, grads, grad, opts);
  } finally {
    // Normally empty; after a throw, the gradients still in flight.
    for (const g of grads.values()) g.dispose();
  }
}

function backwardPass(
  loss: Tensor,
  order: Tensor[],
  grads: Map<Tensor, Tensor>,
  grad: Tensor | undefined,
  opts: { retainGraph?: boolean },
): void {
  noGrad(() => {
    grads.set(
      loss,
      grad ? keep(tidy(() => add(grad, fill(grad.shape, 0)))) : keep(fill(loss.shape, 1)),
    );
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.node;
      if (!node) {
        // A leaf: accumulate.
        if (t.grad) {
          const sum = keep(add(t.grad, g));
          t.grad.dispose();
          g.dispose();
          t.grad = sum;
        } else t.grad = g;
        continue;
      }
      if (node.isReleased) {
        g.dispose();
        throw new Error(
          `backward(): the graph through ${node.name} was already freed (call backward with retainGraph)`,
        );
      }
      const inGrads = tidy(() => {
        const gs = node.rule(g);
        return node.inputs.map((inp, i) => {
          const gi = gs[i];
          if (!gi || !inp.requiresGrad) return null;
          return sameShape(gi.shape, inp.shape) ? gi : sumTo(gi, inp.shape);
        });
      });
      // A rule may pass `g` itself through, or one tensor to two inputs: give each its own alias.
      const used = new Set<Tensor>([g]);
      node.inputs.forEach((inp, i) => {
        let gi = inGrads[i];
        if (!gi) return;
        if (used.has(gi)) gi = alias(gi);
        used.add(gi);
        keep(gi);
        const prev = grads.get(inp);
        if (prev) {
          grads.set(inp, keep(add(prev, gi)));
          prev.dispose();
          gi.dispose();
        } else grads.set(inp, gi);
      });
      g.dispose();
      if (!opts.retainGraph) node.release();
    }
  });
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
