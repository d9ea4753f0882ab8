/**
 * Normalisation ops: batchNorm2d (PyTorch's training/eval semantics, running statistics updated in
 * place), layerNorm over trailing dims (torch.nn.functional.layer_norm) and SAM's LayerNorm2d
 * (normalise the channels of each pixel of an NCHW tensor). Fused kernels forward and backward.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import { disposeCopy, empty, type Shape, Tensor } from "../tensor.ts";
import { noGrad, record } from "../autograd.ts";
import {
  BATCH_NORM_UNIFORMS,
  batchNormApplyKernel,
  batchNormBackwardDxKernel,
  batchNormBackwardReduceKernel,
  batchNormStatsKernel,
  BN_EW_WG,
  BN_WG,
  bnBwdState,
  bnStatsState,
} from "../../kernels/norm/batch_norm.ts";
import {
  LAYER_NORM_UNIFORMS,
  layerNormBackwardKernel,
  layerNormKernel,
  layerNormParamGradKernel,
  layerNormVec4,
} from "../../kernels/norm/layer_norm.ts";
import { rowItemsPerGroup } from "../../kernels/softmax.ts";
import { rowModeFor } from "../routing.ts";
import { binaryRaw, mul, unaryRaw } from "./elementwise.ts";
import { dense, reshape } from "./view.ts";
import { gpu } from "../device.ts";
import { assertLoopLimit } from "../../kernels/common.ts";
import { splitBatch } from "../split.ts";

const fmt = (s: Shape) => `[${s.join(", ")}]`;
const denseRaw = (t: Tensor): Tensor => noGrad(() => dense(t));

function checkF32(name: string, what: string, t: Tensor): void {
  t.assertAlive();
  if (t.dtype !== "f32") {
    throw new Error(`${name}: ${what} must be f32, got ${t.dtype} ${fmt(t.shape)}`);
  }
}

function checkVec(name: string, what: string, t: Tensor | undefined, c: number, ctx: string): void {
  if (!t) return;
  checkF32(name, what, t);
  if (t.size !== c || t.rank !== 1) {
    throw new Error(`${name}: ${what} has shape ${fmt(t.shape)}, expected [${c}] for ${ctx}`);
  }
}

/**
 * Lanes of the per-channel reductions (a workgroup per channel) for `units` values (or vec4s) per
 * channel. GPUs: BN_WG. Software adapters: about 64 units a lane, 32 to BN_WG lanes — there a
 * workgroup's lanes run as SIMD batches that meet at every barrier of the tree sum, so lanes
 * without work cost as much as busy ones: at [2, 2048, 16, 16] (128 vec4s a channel) 256 lanes
 * took 165 ms (statistics) and 237 ms (backward sums), 32 lanes 10 and 9 ms (bench/profile.ts-style
 * replay under load; BENCHMARKS.md "Training step").
 */
function reduceLanes(units: number): number {
  if (!gpu().isSoftware) return BN_WG;
  let w = 32;
  while (w < BN_WG && units > 64 * w) w *= 2;
  return w;
}

/** Whether the elementwise BN kernels can read vec4s: planes and split offsets multiples of 4. */
function vec4(HW: number, ...offsets: number[]): boolean {
  return HW % 4 === 0 && offsets.every((o) => o % 4 === 0);
}

export interface BatchNormOptions {
  weight?: Tensor;
  bias?: Tensor;
  /** Updated in place (raw, no autograd) in training mode; required in eval mode. */
  runningMean?: Tensor;
  runningVar?: Tensor;
  training: boolean;
  momentum?: number;
  eps?: number;
  /**
   * Return max(batchNorm(x), 0) — F.relu of the result, bit for bit — in the same pass; its
   * backward masks the gradient where the output is positive inside BatchNorm's own backward
   * passes (training mode), saving ReLU's two passes.
   */
  relu?: boolean;
  /**
   * Added to the result before the ReLU (if any), in the same pass: relu?(batchNorm(x) + residual),
   * bit for bit F.add's sum. A tensor of x's shape; its gradient is the (masked) output gradient.
   */
  residual?: Tensor;
}

/**
 * BatchNorm over the N, H, W dims of an NCHW tensor, as torch.nn.functional.batch_norm.
 * Training normalises with the batch statistics (biased variance) and, when running statistics
 * are given, updates them in place: r ← (1 − momentum)·r + momentum·stat with the unbiased
 * variance. Eval normalises with the running statistics.
 */
export function batchNorm2d(x: Tensor, opts: BatchNormOptions): Tensor {
  const name = "batchNorm2d";
  const { weight, bias, runningMean, runningVar, training } = opts;
  const relu = !!opts.relu;
  const residual = opts.residual;
  if (residual) {
    checkF32(name, "residual", residual);
    if (residual.shape.join() !== x.shape.join()) {
      throw new Error(
        `${name}: residual ${fmt(residual.shape)} must have the input's shape ${fmt(x.shape)}`,
      );
    }
  }
  const momentum = opts.momentum ?? 0.1;
  const eps = opts.eps ?? 1e-5;
  checkF32(name, "input", x);
  if (x.rank !== 4) throw new Error(`${name}: expected an NCHW input, got shape ${fmt(x.shape)}`);
  const [N, C, H, W] = x.shape;
  const HW = H * W;
  const ctx = `input ${fmt(x.shape)}`;
  checkVec(name, "weight", weight, C, ctx);
  checkVec(name, "bias", bias, C, ctx);
  checkVec(name, "runningMean", runningMean, C, ctx);
  checkVec(name, "runningVar", runningVar, C, ctx);
  if (!runningMean !== !runningVar) {
    throw new Error(`${name}: give both runningMean and runningVar, or neither`);
  }
  if (!training && !runningMean) {
    throw new Error(`${name}: eval mode needs runningMean and runningVar`);
  }
  if (training && N * HW <= 1) {
    throw new Error(
      `${name}: expected more than 1 value per channel when training, got input size ${
        fmt(x.shape)
      }`,
    );
  }
  for (const [what, t] of [["runningMean", runningMean], ["runningVar", runningVar]] as const) {
    if (t && !t.isDense()) {
      throw new Error(`${name}: ${what} must be a dense tensor (it is updated in place)`);
    }
  }
  // Uniforms of one dispatch over samples [n0, n1) with split operands at offsets o.
  // `V`: values per unit of the per-channel reductions (4 where they read vec4s; `rot` in units).
  const prm = (n0: number, n1: number, o: number[] = [], V = 1, w = BN_WG) =>
    BATCH_NORM_UNIFORMS.pack({
      N: n1 - n0,
      C,
      HW,
      eps,
      momentum,
      o0: o[0] ?? 0,
      o1: o[1] ?? 0,
      o2: o[2] ?? 0,
      o3: o[3] ?? 0,
      total: N * HW,
      rot: (n0 * HW / V) % w,
    });
  const xd = denseRaw(x);
  let mean: Tensor, invstd: Tensor;
  if (training) {
    mean = empty([C]);
    invstd = empty([C]);
    if (x.size > 0) {
      const update = !!runningMean;
      const outs = [mean.binding(), invstd.binding()];
      if (update) outs.push(runningMean!.binding(), runningVar!.binding());
      const chunks = splitBatch(name, N, [xd]);
      // vec4 loads only if every chunk allows them (each lane must see the same units throughout).
      const v = chunks.every((ch) => vec4(HW, ch.ranges[0].off));
      const lanes = reduceLanes(N * HW / (v ? 4 : 1));
      if (gpu().isSoftware) {
        // A workgroup per channel strides over the N·H·W values of each dispatch (plus a tree
        // reduction); a batch split over the binding limit splits the loop too.
        const most = Math.max(...chunks.map((ch) => ch.n1 - ch.n0));
        try {
          assertLoopLimit(
            name,
            Math.ceil((most * HW) / (v ? 4 : 1) / lanes) + most + 16,
            `statistics over ${fmt(x.shape)}`,
          );
        } catch (e) {
          disposeCopy(xd, x);
          mean.dispose();
          invstd.dispose();
          throw e;
        }
      }
      // Over the binding limit: one dispatch per run of samples, each lane's sums carried over.
      const state = chunks.length > 1 ? empty([C * bnStatsState(lanes)]) : null;
      chunks.forEach((ch, i) => {
        const stage = { first: i === 0, last: i === chunks.length - 1 };
        const [rx] = ch.ranges;
        const bs = [rx.binding];
        if (state) bs.push(state.binding());
        if (stage.last) bs.push(...outs);
        dispatch(
          batchNormStatsKernel(update, stage, v, lanes),
          bs,
          prm(ch.n0, ch.n1, [rx.off], v ? 4 : 1, lanes),
          grid1d(C, 1),
        );
      });
      state?.dispose();
    }
  } else {
    mean = unaryRaw("affine", runningMean!, 1, 0); // a copy: later training steps update the original
    const v = unaryRaw("affine", runningVar!, 1, eps);
    invstd = unaryRaw("rsqrt", v);
    v.dispose();
  }
  const wd = weight ? denseRaw(weight) : undefined;
  const bd = bias ? denseRaw(bias) : undefined;
  const y = empty(x.shape);
  const rd = residual ? denseRaw(residual) : undefined;
  if (y.size > 0) {
    for (const ch of splitBatch(name, N, rd ? [xd, y, rd] : [xd, y])) {
      const [rx, ry, rr] = ch.ranges;
      const bs = [rx.binding, mean.binding(), invstd.binding()];
      if (wd) bs.push(wd.binding());
      if (bd) bs.push(bd.binding());
      bs.push(ry.binding);
      if (rr) bs.push(rr.binding);
      const v = vec4(HW, ...ch.ranges.map((r) => r.off));
      const n = (ch.n1 - ch.n0) * C * HW / (v ? 4 : 1);
      dispatch(
        batchNormApplyKernel(!!wd, !!bd, v, relu, !!rd),
        bs,
        prm(ch.n0, ch.n1, [rx.off, ry.off, rr?.off ?? 0]),
        grid1d(n, BN_EW_WG),
      );
    }
  }
  disposeCopy(bd, bias);
  disposeCopy(rd, residual);
  const inputs = [x];
  if (weight) inputs.push(weight);
  if (bias) inputs.push(bias);
  if (residual) inputs.push(residual);
  const saved = [xd, mean, invstd];
  if (wd) saved.push(wd);
  // With the fused ReLU, backward masks g by the output (relu's backward saves its output too).
  if (relu) saved.push(y);
  const out = record(name, inputs, y, (g) => {
    // Eval mode's dx is a broadcast multiply, and a residual takes the masked gradient as it is:
    // the mask as a pass of its own there.
    const own = relu && (!training || !!residual);
    const masked = own ? binaryRaw("relu_bwd", dense(g), y) : null;
    const fused = relu && !own;
    const gd = masked ?? dense(g);
    const sumG = empty([C]);
    const sumGX = empty([C]);
    if (g.size > 0) {
      const chunks = splitBatch(`${name} backward`, N, fused ? [xd, gd, y] : [xd, gd]);
      const v = chunks.every((ch) => vec4(HW, ...ch.ranges.map((r) => r.off)));
      const lanes = reduceLanes(N * HW / (v ? 4 : 1));
      const state = chunks.length > 1 ? empty([C * bnBwdState(lanes)]) : null;
      chunks.forEach((ch, i) => {
        const stage = { first: i === 0, last: i === chunks.length - 1 };
        const [rx, rg, ry] = ch.ranges;
        const bs = [rx.binding, rg.binding, mean.binding(), invstd.binding()];
        if (state) bs.push(state.binding());
        if (stage.last) bs.push(sumG.binding(), sumGX.binding());
        if (ry) bs.push(ry.binding);
        dispatch(
          batchNormBackwardReduceKernel(stage, v, lanes, fused),
          bs,
          prm(ch.n0, ch.n1, [rx.off, rg.off, 0, ry?.off ?? 0], v ? 4 : 1, lanes),
          grid1d(C, 1),
        );
      });
      state?.dispose();
    }
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      if (training) {
        dx = empty(x.shape);
        if (dx.size > 0) {
          const ts = fused ? [xd, gd, dx, y] : [xd, gd, dx];
          for (const ch of splitBatch(`${name} backward`, N, ts)) {
            const [rx, rg, rdx, ry] = ch.ranges;
            const bs = [rx.binding, rg.binding, mean.binding(), invstd.binding()];
            if (wd) bs.push(wd.binding());
            bs.push(sumG.binding(), sumGX.binding(), rdx.binding);
            if (ry) bs.push(ry.binding);
            const v = vec4(HW, ...ch.ranges.map((r) => r.off));
            const n = (ch.n1 - ch.n0) * C * HW / (v ? 4 : 1);
            dispatch(
              batchNormBackwardDxKernel(!!wd, v, fused),
              bs,
              prm(ch.n0, ch.n1, [rx.off, rg.off, rdx.off, ry?.off ?? 0]),
              grid1d(n, BN_EW_WG),
            );
          }
        }
      } else {
        const scale = wd ? binaryRaw("mul", invstd, wd) : invstd;
        dx = mul(gd, reshape(scale, [1, C, 1, 1]));
      }
    }
    const grads: (Tensor | null)[] = [dx];
    if (weight) grads.push(sumGX);
    if (bias) grads.push(sumG);
    // The residual's gradient is the sum's: g, masked by the ReLU.
    if (residual) grads.push(residual.requiresGrad ? (masked ?? gd) : null);
    else masked?.dispose();
    return grads;
  }, saved);
  // The node holds what backward needs; the op's own references go.
  disposeCopy(xd, x);
  disposeCopy(wd, weight);
  mean.dispose();
  invstd.dispose();
  return out;
}

function layerNormImpl(
  name: string,
  x: Tensor,
  rows: number,
  L: number,
  inner: number,
  weight: Tensor | undefined,
  bias: Tensor | undefined,
  eps: number,
): Tensor {
  const xd = denseRaw(x);
  const wd = weight ? denseRaw(weight) : undefined;
  const bd = bias ? denseRaw(bias) : undefined;
  const y = empty(x.shape);
  const mean = empty([rows]);
  const rstd = empty([rows]);
  const m = rowModeFor(rows, L, inner);
  const p = LAYER_NORM_UNIFORMS.pack({ rows, L, inner, eps });
  if (y.size > 0) {
    const bs = [xd.binding(), y.binding(), mean.binding(), rstd.binding()];
    if (wd) bs.push(wd.binding());
    if (bd) bs.push(bd.binding());
    const v4 = layerNormVec4(m, L, inner);
    dispatch(layerNormKernel(m, !!wd, !!bd, v4), bs, p, grid1d(rows, rowItemsPerGroup(m)));
  }
  disposeCopy(bd, bias);
  const inputs = [x];
  if (weight) inputs.push(weight);
  if (bias) inputs.push(bias);
  const saved = [xd, mean, rstd];
  if (wd) saved.push(wd);
  const out = record(name, inputs, y, (g) => {
    const gd = dense(g);
    const grads: (Tensor | null)[] = [];
    if (x.requiresGrad) {
      const dx = empty(x.shape);
      const bs = [xd.binding(), gd.binding(), mean.binding(), rstd.binding()];
      if (wd) bs.push(wd.binding());
      bs.push(dx.binding());
      if (dx.size > 0) {
        dispatch(layerNormBackwardKernel(m, !!wd), bs, p, grid1d(rows, rowItemsPerGroup(m)));
      }
      grads.push(dx);
    } else grads.push(null);
    if (weight || bias) {
      const dw = empty([L]);
      const db = empty([L]);
      if (L > 0) {
        dispatch(
          layerNormParamGradKernel(),
          [xd.binding(), gd.binding(), mean.binding(), rstd.binding(), dw.binding(), db.binding()],
          p,
          grid1d(L, 1),
        );
      }
      if (weight) grads.push(reshape(dw, weight.shape));
      if (bias) grads.push(reshape(db, bias.shape));
    }
    return grads;
  }, saved);
  disposeCopy(xd, x);
  disposeCopy(wd, weight);
  mean.dispose();
  rstd.dispose();
  return out;
}

/**
 * torch.nn.functional.layer_norm: normalises over the trailing dims `normalizedShape` with
 * biased variance; optional elementwise weight and bias of that shape.
 */
export function layerNorm(
  x: Tensor,
  normalizedShape: number[],
  weight?: Tensor,
  bias?: Tensor,
  eps = 1e-5,
): Tensor {
  const name = "layerNorm";
  checkF32(name, "input", x);
  const k = normalizedShape.length;
  const tail = x.shape.slice(x.rank - k);
  if (k === 0 || k > x.rank || tail.some((s, i) => s !== normalizedShape[i])) {
    throw new Error(
      `${name}: normalizedShape ${fmt(normalizedShape)} must be the trailing dims of input ${
        fmt(x.shape)
      }`,
    );
  }
  const L = normalizedShape.reduce((a, b) => a * b, 1);
  for (const [what, t] of [["weight", weight], ["bias", bias]] as const) {
    if (!t) continue;
    checkF32(name, what, t);
    if (t.rank !== k || t.shape.some((s, i) => s !== normalizedShape[i])) {
      throw new Error(
        `${name}: ${what} has shape ${fmt(t.shape)}, expected normalizedShape ${
          fmt(normalizedShape)
        }`,
      );
    }
  }
  if (L === 0) {
    throw new Error(`${name}: cannot normalise over an empty shape ${fmt(normalizedShape)}`);
  }
  return layerNormImpl(name, x, x.size / L, L, 1, weight, bias, eps);
}

/**
 * SAM's LayerNorm2d on NCHW: at each pixel, u = mean_c x, s = mean_c (x − u)²,
 * y = (x − u)/sqrt(s + eps)·w[c] + b[c].
 */
export function layerNorm2d(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-6): Tensor {
  const name = "layerNorm2d";
  checkF32(name, "input", x);
  if (x.rank !== 4) throw new Error(`${name}: expected an NCHW input, got shape ${fmt(x.shape)}`);
  const [N, C, H, W] = x.shape;
  if (C === 0) throw new Error(`${name}: input ${fmt(x.shape)} has no channels`);
  checkVec(name, "weight", weight, C, `input ${fmt(x.shape)}`);
  checkVec(name, "bias", bias, C, `input ${fmt(x.shape)}`);
  return layerNormImpl(name, x, N * H * W, C, H * W, weight, bias, eps);
}
