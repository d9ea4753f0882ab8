/**
 * Losses: binary cross-entropy on logits (torch's stable form, with its gradient written out so
 * it stays exact at 0 and for saturated logits) and the soft Dice / IoU losses of EP-SAM's trainer.
 */
import type { Tensor } from "../tensor.ts";
import { record } from "../autograd.ts";
import { tidy } from "../scope.ts";
import { noGrad } from "../autograd.ts";
import {
  abs,
  add,
  affine,
  broadcastShapes,
  div,
  exp,
  log,
  mul,
  neg,
  relu,
  sigmoid,
  sub,
} from "./elementwise.ts";
import { mean, sum } from "./reduce.ts";

/** How a per-element loss is reduced (as torch's `reduction`). */
export type Reduction = "mean" | "sum" | "none";

/** Options for {@link bceWithLogits}. */
export interface BceOptions {
  reduction?: Reduction;
  /** Weight of positive examples, broadcast against the targets (torch's `pos_weight`); not differentiated. */
  posWeight?: Tensor | number;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function reduce(name: string, l: Tensor, reduction: Reduction): Tensor {
  if (reduction === "none") return l;
  if (reduction === "sum") return sum(l);
  if (reduction === "mean") return mean(l);
  throw new Error(
    `${name}: reduction must be "mean", "sum" or "none", got ${JSON.stringify(reduction)}`,
  );
}

/** log(1 + exp(−|x|)) + max(−x, 0) = softplus(−x), without overflow. */
function softplusNeg(x: Tensor): Tensor {
  return add(log(affine(exp(neg(abs(x))), 1, 1)), relu(neg(x)));
}

/**
 * `torch.nn.functional.binary_cross_entropy_with_logits`:
 * ℓ = (1 − t)·x + w·softplus(−x), w = 1 + (pos_weight − 1)·t. Differentiable in logits and targets.
 */
export function bceWithLogits(logits: Tensor, targets: Tensor, opts: BceOptions = {}): Tensor {
  const reduction = opts.reduction ?? "mean";
  if (!sameShape(logits.shape, targets.shape)) {
    throw new Error(
      `bceWithLogits: targets [${targets.shape}] must have the same shape as logits [${logits.shape}]`,
    );
  }
  const pw = opts.posWeight;
  if (pw !== undefined && typeof pw !== "number") {
    try {
      broadcastShapes(pw.shape, targets.shape);
    } catch {
      throw new Error(
        `bceWithLogits: posWeight [${pw.shape}] does not broadcast against targets [${targets.shape}]`,
      );
    }
  }
  const x = logits, t = targets;
  // w − 1 = (pw − 1)·t; null when there is no pos_weight.
  const wMinus1 = (): Tensor | null =>
    pw === undefined ? null : typeof pw === "number" ? mul(t, pw - 1) : mul(t, affine(pw, 1, -1));
  const elem = tidy(() =>
    noGrad(() => {
      const sp = softplusNeg(x);
      const w1 = wMinus1();
      const base = add(mul(affine(t, -1, 1), x), sp);
      return w1 ? add(base, mul(w1, sp)) : base;
    })
  );
  const saved = [x, t];
  if (pw !== undefined && typeof pw !== "number") saved.push(pw);
  const out = record("bce_with_logits", [x, t], elem, (g) => {
    // ∂/∂x = w·σ(x) − w + 1 − t;  ∂/∂t = −x + (pw − 1)·softplus(−x).
    const s = sigmoid(x);
    const w1 = wMinus1();
    const gx = w1
      ? sub(add(mul(affine(w1, 1, 1), s), affine(t, -1, 1)), affine(w1, 1, 1))
      : sub(s, t);
    let gt = neg(x);
    if (pw !== undefined) {
      const sp = softplusNeg(x);
      gt = add(gt, typeof pw === "number" ? mul(sp, pw - 1) : mul(sp, affine(pw, 1, -1)));
    }
    return [mul(g, gx), mul(g, gt)];
  }, saved);
  return reduce("bceWithLogits", out, reduction);
}

function checkPair(name: string, probs: Tensor, target: Tensor): number[] {
  if (!sameShape(probs.shape, target.shape)) {
    throw new Error(
      `${name}: target [${target.shape}] must have the same shape as probs [${probs.shape}]`,
    );
  }
  if (probs.rank < 2) {
    throw new Error(`${name}: expected [N, ...] with a batch axis, got [${probs.shape}]`);
  }
  return Array.from({ length: probs.rank - 1 }, (_, i) => i + 1);
}

/**
 * EP-SAM's DiceLoss (tools/losses.py): per sample over every axis but the first,
 * 1 − (2·Σpt + s)/(Σp + Σt + s), then the mean over the batch.
 */
export function diceLoss(probs: Tensor, target: Tensor, smooth = 1e-3): Tensor {
  const ax = checkPair("diceLoss", probs, target);
  const inter = sum(mul(probs, target), ax);
  const denom = add(sum(probs, ax), sum(target, ax));
  return mean(affine(div(affine(inter, 2, smooth), affine(denom, 1, smooth)), -1, 1));
}

/**
 * EP-SAM's IoULoss (tools/losses.py): per sample, 1 − (Σpt + s)/(Σ(p + t) − Σpt + s), then the mean
 * over the batch.
 */
export function iouLoss(probs: Tensor, target: Tensor, smooth = 1e-3): Tensor {
  const ax = checkPair("iouLoss", probs, target);
  const inter = sum(mul(probs, target), ax);
  const union = sub(sum(add(probs, target), ax), inter);
  return mean(affine(div(affine(inter, 1, smooth), affine(union, 1, smooth)), -1, 1));
}
