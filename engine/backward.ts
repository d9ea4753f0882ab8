/**
 * Reverse-mode autograd in one topological sort (micrograd's shape, on GPU tensors).
 * `backward(loss)` visits the nodes `record` made (autograd.ts) in reverse topological order, so
 * each rule runs once with the gradient summed over every path, and leaves accumulate into
 * `.grad` across calls. Kept apart from `record` because it runs ops (add, fill, sumTo) and every
 * op imports `record`: this way neither side imports the other back.
 */
import { alias, type Shape, Tensor } from "./tensor.ts";
import { keep, tidy } from "./scope.ts";
import { noGrad } from "./autograd.ts";
import { add, fill } from "./ops/elementwise.ts";
import { sumTo } from "./ops/reduce.ts";

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
  if (grad && !sameShape(grad.shape, loss.shape)) {
    throw new Error(
      `backward(): the gradient has shape [${grad.shape}], the output [${loss.shape}]`,
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
    // The caller's gradient is used where it lies, through an alias of its own (disposing that
    // leaves the caller's tensor alone): rules never write into a gradient. A copy made here
    // until 2026-12-03 held a second tensor of the output's size through every call: 256 MiB per
    // checkpointed segment at layer1 of the paper profile's step (engine/ops/checkpoint.ts).
    grads.set(loss, keep(grad ? alias(grad) : fill(loss.shape, 1)));
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.node;
      if (!node) {
        // A leaf: accumulate. A `.grad` never shares storage with the caller's gradient (a rule
        // may pass it through untouched), so the caller may overwrite that tensor afterwards.
        if (t.grad) {
          const sum = keep(add(t.grad, g));
          t.grad.dispose();
          g.dispose();
          t.grad = sum;
        } else if (grad && g.storage === grad.storage) {
          t.grad = keep(tidy(() => add(g, fill(g.shape, 0))));
          g.dispose();
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
