/**
 * Recording the autograd graph: grad mode (`noGrad`, `recompute`), graph nodes and `record`, which
 * every differentiable op calls with its inputs, output and backward rule. It imports no op, so
 * every op may import it; the backward pass itself, which runs ops, is in `backward.ts`.
 */
import type { Tensor } from "./tensor.ts";

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
