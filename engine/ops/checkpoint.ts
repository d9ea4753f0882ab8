/**
 * Activation checkpointing, as `torch.utils.checkpoint`: `fn` runs without a graph, so none of its
 * intermediates stay alive; backward runs it again with a graph and back-propagates through that,
 * one checkpointed segment at a time. One more forward buys the memory of the intermediates.
 * Unlike PyTorch's, the rerun leaves BatchNorm running statistics alone ({@link isRecomputing}),
 * so a checkpointed step updates them once, as an ordinary one does. `fn` must be deterministic
 * (no random draws) and read no tensor but `x` and `params` that requires grad.
 */
import { isGradEnabled, noGrad, recompute, record, requireGrad } from "../autograd.ts";
import { backward } from "../backward.ts";
import { alias, type Tensor } from "../tensor.ts";

let segmentForwards = 0;

/**
 * True while a checkpointed segment's first forward runs: without a graph, yet part of a pass
 * that records gradients (its backward reruns the segment with one), so not an inference pass
 * whatever `isGradEnabled` says: inference-only rewrites (engine/ops/conv_fused.ts) must not
 * apply there, or the forward and its rerun would round differently.
 */
export function isCheckpointForward(): boolean {
  return segmentForwards > 0;
}

export function checkpoint(x: Tensor, params: Tensor[], fn: (x: Tensor) => Tensor): Tensor {
  const trained = params.filter((p) => p.requiresGrad);
  if (!isGradEnabled() || (!x.requiresGrad && !trained.length)) return fn(x);
  segmentForwards++;
  let out: Tensor;
  try {
    out = noGrad(() => fn(x));
  } finally {
    segmentForwards--;
  }
  // Parameters are inputs so that the output requires grad; their gradients accumulate into
  // `.grad` in the inner backward, so the rule returns none for them.
  return record("checkpoint", [x, ...trained], out, (g) => {
    const xi = alias(x); // a leaf over x's storage, to collect x's gradient
    if (x.requiresGrad) requireGrad(xi);
    const y = recompute(() => fn(xi));
    backward(y, g);
    const gx = xi.grad;
    xi.grad = null;
    return [gx];
  }, [x]);
}
