/**
 * Inference-only conv2d + BatchNorm (running statistics) [+ residual] [+ ReLU] in one conv pass:
 * the BN is folded into the conv (w' = w·s, b' = β − mean·s with s = γ/√(var + eps)) and applied,
 * with the residual add and the ReLU, in the conv's store (kernels/conv/epilogue.ts) on both conv
 * paths, the conv kernels and the texture GEMMs (engine/routing.ts `convPath`). The unfused chain
 * writes and reads the activation three or four more times (BN, add, ReLU) and runs three small
 * dispatches per BN for its statistics; this runs one per BN (kernels/conv/bn_fold.ts).
 *
 * The fold scales the sum (acc·s + b') instead of copying scaled weights: the same map, with no
 * folded weights to cache and so none to go stale when an optimiser step, a checkpoint load or a
 * training forward changes the weights or the running statistics — each call folds from the
 * tensors as they are (one dispatch of C invocations).
 *
 * Where it applies: model/resnet_adl.ts uses it when no gradient is recorded (`noGrad`) and its
 * BatchNorms are in eval mode (CAM generation, validation, inference), unless
 * `ENGINE_FUSE_CONV_BN=0` or `setConvBnFusion(false)` (engine/routing.ts) turns it off. Training
 * (batch statistics) and any pass with gradients keep conv2d + batchNorm2d + relu unchanged.
 * Against the unfused chain the outputs differ by rounding only: acc·s + (β − mean·s) in one fma
 * instead of (acc − mean)·s + β in two steps.
 */
import { dispatch } from "../dispatch.ts";
import { disposeCopy, empty, type Tensor } from "../tensor.ts";
import { isGradEnabled, noGrad } from "../autograd.ts";
import { conv2dForwardRaw, conv2dGeometry, type Conv2dOptions } from "./conv.ts";
import { dense } from "./view.ts";
import { unaryRaw } from "./elementwise.ts";
import { BN_FOLD_UNIFORMS, BN_FOLD_WG, bnFoldKernel } from "../../kernels/conv/bn_fold.ts";

/** A BatchNorm's affine parameters and running statistics (eval mode). */
export interface BatchNormEval {
  weight?: Tensor;
  bias?: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
  eps: number;
}

export interface ConvBatchNormOptions extends Conv2dOptions {
  /** Added after the BN, before the ReLU: [N, O, OH, OW] like the output. */
  residual?: Tensor;
  /** ReLU last. */
  relu?: boolean;
}

const denseRaw = (t: Tensor): Tensor => noGrad(() => dense(t));

/**
 * The per-channel scale γ/√(var + eps) and shift β − mean·scale of a BatchNorm in eval mode,
 * [C] each (no autograd).
 */
export function foldBatchNorm(bn: BatchNormEval, C: number, op = "foldBatchNorm"): {
  scale: Tensor;
  shift: Tensor;
} {
  const vecs: [string, Tensor | undefined][] = [
    ["runningMean", bn.runningMean],
    ["runningVar", bn.runningVar],
    ["weight", bn.weight],
    ["bias", bn.bias],
  ];
  for (const [what, t] of vecs) {
    if (!t) continue;
    t.assertAlive();
    if (t.dtype !== "f32" || t.rank !== 1 || t.size !== C) {
      throw new Error(
        `${op}: BatchNorm ${what} must be f32 [${C}] (the conv's output channels), got ${t.dtype} [${t.shape}]`,
      );
    }
  }
  if (!(bn.eps >= 0)) throw new Error(`${op}: BatchNorm eps must be >= 0, got ${bn.eps}`);
  const ins = vecs.filter(([, t]) => t).map(([, t]) => denseRaw(t!));
  const scale = empty([C]), shift = empty([C]);
  if (C > 0) {
    dispatch(
      bnFoldKernel(!!bn.weight, !!bn.bias),
      [...ins.map((t) => t.binding()), scale.binding(), shift.binding()],
      BN_FOLD_UNIFORMS.pack({ C, eps: bn.eps }),
      [Math.ceil(C / BN_FOLD_WG)],
    );
  }
  const originals = vecs.filter(([, t]) => t).map(([, t]) => t!);
  ins.forEach((t, i) => disposeCopy(t, originals[i]));
  return { scale, shift };
}

/**
 * relu?(batchNorm_eval(conv2d(x, w)) + residual?) for x [N,C,H,W], w [O,C/groups,kh,kw] and a
 * BatchNorm over the O output channels, in one conv pass. Inference only: throws when gradients
 * are recorded for any input (use conv2d + batchNorm2d there).
 */
export function conv2dBatchNormEval(
  x: Tensor,
  w: Tensor,
  bn: BatchNormEval,
  opts: ConvBatchNormOptions = {},
): Tensor {
  const op = "conv2dBatchNormEval";
  const { residual, relu = false } = opts;
  if (
    isGradEnabled() &&
    [x, w, bn.weight, bn.bias, residual].some((t) => t?.requiresGrad)
  ) {
    throw new Error(
      `${op}: inference only (no backward); run it under noGrad, or use conv2d + batchNorm2d`,
    );
  }
  const g = conv2dGeometry(op, x, w, null, opts);
  let res: Tensor | undefined;
  if (residual) {
    residual.assertAlive();
    const want = [g.N, g.O, g.OH, g.OW];
    if (residual.dtype !== "f32" || residual.shape.join() !== want.join()) {
      throw new Error(
        `${op}: residual must be f32 [${want}] (the conv's output), got ${residual.dtype} [${residual.shape}]`,
      );
    }
    // The kernels index the residual like the output (offset 0): a copy otherwise.
    res = residual.offset === 0 && residual.isDense()
      ? residual
      : noGrad(() => unaryRaw("affine", residual, 1, 0));
  }
  const { scale, shift } = foldBatchNorm(bn, g.O, op);
  const y = conv2dForwardRaw(x, w, null, g, { scale, shift, residual: res, relu });
  scale.dispose();
  shift.dispose();
  disposeCopy(res, residual);
  return y;
}
