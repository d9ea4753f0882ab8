/**
 * Convolutions (NCHW, PyTorch's weight layouts): conv2d and convTranspose2d with stride, padding,
 * dilation and groups, forward launch and backward rules side by side.
 *
 * Three kernels serve both ops (kernels/conv/): the implicit-GEMM forward, the gather input
 * gradient and the split-K weight gradient. convTranspose2d's forward is conv2d's input gradient,
 * its input gradient is conv2d's forward and its weight gradient is conv2d's weight gradient with
 * the roles of input and output gradient swapped.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import { disposeCopy, empty, Tensor, view } from "../tensor.ts";
import { noGrad, record } from "../autograd.ts";
import {
  convForcedSplitK,
  convPath,
  convSplitKTarget,
  convTilesInForce,
  convWinograd,
} from "../routing.ts";
import { conv2dForwardKernel, CONV_UNIFORMS, type ConvTile } from "../../kernels/conv/forward.ts";
import { conv2dBackwardDataKernel } from "../../kernels/conv/backward_data.ts";
import {
  conv2dBackwardWeightKernel,
  SPLITK_SUM_UNIFORMS,
  SPLITK_SUM_WG,
  splitKSumKernel,
} from "../../kernels/conv/backward_weight.ts";
import { LOOP_BUDGET } from "../../kernels/common.ts";
import { applyConvEpilogueRaw, type ConvEpilogueOperands, epilogueSpec } from "./conv_epilogue.ts";
import { type ConvGeometry, dilatedWindowOf, windowOutSize } from "../../kernels/window.ts";
import { reduceRaw } from "./reduce.ts";
import { splitBatch } from "../split.ts";
import { dense as denseOp, writeInto } from "./view.ts";
import { zeros } from "./elementwise.ts";
import {
  conv2dBackwardDataTexture,
  conv2dBackwardWeightTexture,
  conv2dForwardTexture,
  convTextureFits,
} from "./conv_texture.ts";
import { inputGradientCol2im } from "./conv_col2im.ts";
import {
  batchedWeightGradient,
  pointwiseForward,
  pointwiseInputGradient,
} from "./conv_pointwise.ts";
import {
  conv2dBackwardDataWinograd,
  conv2dBackwardWeightWinograd,
  conv2dForwardWinograd,
  convWinogradFits,
} from "./conv_winograd.ts";

/** A dense version of `t` for binding (a copy only for strided views), never recorded. */
const dense = (t: Tensor): Tensor => noGrad(() => denseOp(t));

/** Runs `f` on dense forms of `a` and `b`, then drops the copies `dense` made. */
function onDense<T>(a: Tensor, b: Tensor, f: (ad: Tensor, bd: Tensor) => T): T {
  const ad = dense(a), bd = dense(b);
  const out = f(ad, bd);
  disposeCopy(ad, a);
  disposeCopy(bd, b);
  return out;
}

type Pair = number | [number, number];

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

export interface ConvTranspose2dOptions extends Conv2dOptions {
  outputPadding?: Pair;
}

export type { ConvGeometry } from "../../kernels/window.ts";

function pair(
  op: string,
  name: string,
  v: Pair | undefined,
  def: number,
  min: number,
): [number, number] {
  const p: [number, number] = v === undefined
    ? [def, def]
    : typeof v === "number"
    ? [v, v]
    : [v[0], v[1]];
  if (p.length !== 2 || p.some((x) => !Number.isInteger(x) || x < min)) {
    throw new Error(
      `${op}: ${name} must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v)}`,
    );
  }
  return p;
}

function checkF32(op: string, what: string, t: Tensor, rank: number): void {
  t.assertAlive();
  if (t.dtype !== "f32") throw new Error(`${op}: ${what} must be f32, got ${t.dtype} [${t.shape}]`);
  if (t.rank !== rank) throw new Error(`${op}: ${what} must have rank ${rank}, got [${t.shape}]`);
}

/** Shrinks a register-block width to the next power of two ≥ `cols` when fewer columns exist. */
function fit(r: number, cols: number): number {
  const p = 2 ** Math.ceil(Math.log2(Math.max(1, cols)));
  return Math.max(1, Math.min(r, p));
}
function fitTile(t: ConvTile, cols: number): ConvTile {
  return { ...t, rn: fit(t.rn, cols) };
}

/** What one conv dispatch adds to the geometry (kernels/conv/forward.ts `CONV_UNIFORMS`). */
interface ConvLaunch {
  blocks: number;
  M?: number;
  chunk?: number;
  J?: number;
  a0: number;
  a1: number;
  zb?: number;
}

function params(g: ConvGeometry, l: ConvLaunch): Uint8Array {
  return CONV_UNIFORMS.pack({
    N: g.N,
    C: g.C,
    O: g.O,
    groups: g.groups,
    ...dilatedWindowOf(g),
    Cg: g.C / g.groups,
    Og: g.O / g.groups,
    blocks: l.blocks,
    M: l.M ?? 0,
    chunk: l.chunk ?? 0,
    J: l.J ?? 0,
    a0: l.a0,
    a1: l.a1,
    zb: l.zb ?? 0,
  });
}

// ---------------------------------------------------------------- raw launches

/** Whether this pass takes the texture GEMMs (the rule and its measurements: engine/routing.ts). */
function viaTextures(
  g: ConvGeometry,
  bias: Tensor | null,
  pass: "forward" | "input" | "weight",
): boolean {
  return convPath(g, pass, bias !== null, () => convTextureFits(g)) === "texture";
}

/** Winograd's tile m where this pass takes it (the rule: engine/routing.ts), else null. */
function viaWinograd(
  g: ConvGeometry,
  bias: Tensor | null,
  pass: "forward" | "input" | "weight",
) {
  return convWinograd(g, pass, bias !== null, () => convWinogradFits(g, pass));
}

/**
 * y [N,O,OH,OW] = conv2d(x, w) + bias for dense f32 x [N,C,H,W], w [O,C/g,kh,kw] (no autograd),
 * then the epilogue `ep` when given (engine/ops/conv_fused.ts; the conv kernels and the texture
 * GEMMs both apply it in their store).
 */
export function conv2dForwardRaw(
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  g: ConvGeometry,
  ep?: ConvEpilogueOperands,
): Tensor {
  if (ep?.residual && (ep.residual.offset !== 0 || !ep.residual.isDense())) {
    throw new Error("conv2dForwardRaw: the epilogue's residual must be dense at offset 0");
  }
  const wm = viaWinograd(g, bias, "forward");
  if (wm) {
    const y = onDense(x, w, (xd, wd) => conv2dForwardWinograd(xd, wd, g, wm));
    // The output transform's store does not take the epilogue yet: a pass of its own.
    if (ep) applyConvEpilogueRaw(y, ep);
    return y;
  }
  if (viaTextures(g, bias, "forward")) {
    return onDense(
      x,
      w,
      (xd, wd) => pointwiseForward(xd, wd, g, ep) ?? conv2dForwardTexture(xd, wd, g, ep),
    );
  }
  const y = empty([g.N, g.O, g.OH, g.OW]);
  if (y.size === 0) return y;
  const Og = g.O / g.groups;
  const t = fitTile(convTilesInForce().fwd, Og);
  const xd = dense(x), wd = dense(w), bd = bias ? dense(bias) : null;
  const pointwise = g.kh === 1 && g.kw === 1 && g.sh === 1 && g.sw === 1 && g.ph === 0 &&
    g.pw === 0;
  const blocks = Math.ceil(Og / t.rn);
  const kernel = conv2dForwardKernel(
    t,
    bd !== null,
    pointwise,
    ep ? epilogueSpec(ep) : undefined,
  );
  const res = ep?.residual;
  // Samples are independent: over the binding limit, each run of samples is one dispatch.
  for (const ch of splitBatch("conv2d", g.N, res ? [xd, y, res] : [xd, y])) {
    const [rx, ry, rr] = ch.ranges;
    const gc = { ...g, N: ch.n1 - ch.n0 };
    const Mc = gc.N * g.OH * g.OW;
    const bindings = [rx.binding, wd.binding()];
    if (bd) bindings.push(bd.binding());
    if (ep?.scale) bindings.push(ep.scale.binding());
    if (ep?.shift) bindings.push(ep.shift.binding());
    if (rr) {
      // Same shape, both at offset 0: the same element offset in their bindings (checked).
      if (rr.off !== ry.off) throw new Error("conv2d epilogue: residual and output ranges differ");
      bindings.push(rr.binding);
    }
    bindings.push(ry.binding);
    dispatch(kernel, bindings, params(gc, { blocks, M: Mc, a0: rx.off, a1: ry.off }), [
      Math.ceil(Mc / (t.wg * t.rm)),
      g.groups * blocks,
    ]);
  }
  disposeCopy(xd, x);
  disposeCopy(wd, w);
  disposeCopy(bd, bias);
  return y;
}

/**
 * dx [N,C,H,W] of a conv2d from dy [N,O,OH,OW] and w [O,C/g,kh,kw] (no autograd); with `bias`
 * [C], convTranspose2d's forward.
 */
export function conv2dBackwardDataRaw(
  dy: Tensor,
  w: Tensor,
  bias: Tensor | null,
  g: ConvGeometry,
): Tensor {
  const sub = subsampledInputGradient(dy, w, bias, g) ?? stridedInputGradient(dy, w, bias, g);
  if (sub) return sub;
  const wm = viaWinograd(g, bias, "input");
  if (wm) {
    return onDense(dy, w, (dyd, wd) => conv2dBackwardDataWinograd(dyd, wd, g, wm));
  }
  if (viaTextures(g, bias, "input")) {
    return onDense(dy, w, (dyd, wd) => inputGradientTexture(dyd, wd, g));
  }
  const dx = empty([g.N, g.C, g.H, g.W]);
  if (dx.size === 0) return dx;
  const Cg = g.C / g.groups;
  const t = fitTile(convTilesInForce().bwdData, Cg);
  const dyd = dense(dy), wd = dense(w), bd = bias ? dense(bias) : null;
  const blocks = Math.ceil(Cg / t.rn);
  const kernel = conv2dBackwardDataKernel(t, bd !== null);
  for (const ch of splitBatch("conv2d input gradient", g.N, [dyd, dx])) {
    const [rdy, rdx] = ch.ranges;
    const gc = { ...g, N: ch.n1 - ch.n0 };
    const maxPhase = gc.N * Math.ceil(g.H / g.sh) * Math.ceil(g.W / g.sw);
    const bindings = [rdy.binding, wd.binding()];
    if (bd) bindings.push(bd.binding());
    bindings.push(rdx.binding);
    dispatch(kernel, bindings, params(gc, { blocks, a0: rdy.off, a1: rdx.off }), [
      Math.ceil(maxPhase / (t.wg * t.rm)),
      g.groups * blocks,
      g.sh * g.sw,
    ]);
  }
  disposeCopy(dyd, dy);
  disposeCopy(wd, w);
  disposeCopy(bd, bias);
  return dx;
}

/** The texture input gradient of dense dy and w: the 1×1 copy form where it applies. */
function inputGradientTexture(dy: Tensor, w: Tensor, g: ConvGeometry): Tensor {
  return pointwiseInputGradient(dy, w, g) ?? conv2dBackwardDataTexture(dy, w, g);
}

/**
 * The input gradient of an unpadded 1×1 conv with stride > 1 where its stride-1 form takes the
 * texture GEMMs, else null: dx is zero off the stride's grid, and on it the stride-1 input gradient
 * of the subsampled image (dx[n, c, oy·sh, ox·sw] = Σ_o w[o, c]·dy[n, o, oy, ox]), written into
 * zeros. The strided gather would stage (1 − 1/(sh·sw)) zeros in the GEMM's operand, and the conv
 * kernel (routing's rule for strided input gradients) is the slower path on software adapters.
 */
function subsampledInputGradient(
  dy: Tensor,
  w: Tensor,
  bias: Tensor | null,
  g: ConvGeometry,
): Tensor | null {
  if (g.kh !== 1 || g.kw !== 1 || g.ph !== 0 || g.pw !== 0 || (g.sh === 1 && g.sw === 1)) {
    return null;
  }
  const g1 = { ...g, H: g.OH, W: g.OW, sh: 1, sw: 1 };
  if (g.groups !== 1 || !viaTextures(g1, bias, "input")) return null;
  const onGrid = onDense(dy, w, (dyd, wd) => inputGradientTexture(dyd, wd, g1));
  const dx = zeros([g.N, g.C, g.H, g.W]);
  const HW = g.H * g.W;
  writeInto(view(dx, [g.N, g.C, g.OH, g.OW], [g.C * HW, HW, g.sh * g.W, g.sw], dx.offset), onGrid);
  onGrid.dispose();
  return dx;
}

/**
 * The input gradient of a strided conv as a texture GEMM and col2im (engine/ops/conv_col2im.ts)
 * where the stride-1 conv of the same channels and window would take the texture GEMMs, else null.
 */
function stridedInputGradient(
  dy: Tensor,
  w: Tensor,
  bias: Tensor | null,
  g: ConvGeometry,
): Tensor | null {
  if ((g.sh === 1 && g.sw === 1) || bias || g.groups !== 1) return null;
  if (!viaTextures({ ...g, sh: 1, sw: 1 }, null, "input")) return null;
  return onDense(dy, w, (dyd, wd) => inputGradientCol2im(dyd, wd, g));
}

/** dW [O,C/g,kh,kw] of a conv2d from x [N,C,H,W] and dy [N,O,OH,OW] (no autograd), split-K. */
export function conv2dBackwardWeightRaw(x: Tensor, dy: Tensor, g: ConvGeometry): Tensor {
  const Cg = g.C / g.groups, Og = g.O / g.groups;
  const J = Cg * g.kh * g.kw;
  const wm = viaWinograd(g, null, "weight");
  if (wm) {
    return onDense(x, dy, (xd, dyd) => conv2dBackwardWeightWinograd(xd, dyd, g, wm));
  }
  if (viaTextures(g, null, "weight")) {
    return onDense(
      x,
      dy,
      (xd, dyd) => batchedWeightGradient(xd, dyd, g) ?? conv2dBackwardWeightTexture(xd, dyd, g),
    );
  }
  const dw = empty([g.O, Cg, g.kh, g.kw]);
  if (dw.size === 0) return dw;
  const t0 = convTilesInForce().bwdWeight;
  const splitK = convForcedSplitK();
  const t = { ...t0, ro: fit(t0.ro, Og), rj: fit(t0.rj, J) };
  const blocks = Math.ceil(Og / t.ro);
  const tilesN = Math.ceil(J / t.rj) * g.groups * blocks;
  /** Split-K slices for M = samples·OH·OW pixels. */
  const slices = (M: number): number => {
    // Each slice covers at least 8 strides of the workgroup over the pixels.
    const maxSplits = Math.max(1, Math.ceil(M / (t.wg * 8)));
    // Each invocation strides over chunk / wg pixels: at least enough slices to stay within the
    // per-invocation loop budget (kernels/common.ts), whatever the target or override says.
    const minSplits = Math.ceil(M / (t.wg * LOOP_BUDGET));
    return Math.max(
      minSplits,
      splitK
        ? Math.min(splitK, Math.max(1, M))
        : Math.min(maxSplits, Math.max(1, Math.ceil(convSplitKTarget() / tilesN)), 1024),
    );
  };
  const xd = dense(x), dyd = dense(dy);
  // Over the binding limit, runs of samples are separate dispatches whose slices all land in
  // the one scratch buffer that the split-K sum adds up.
  const chunks = splitBatch("conv2d weight gradient", g.N, [xd, dyd]);
  const S = chunks.map((ch) => slices((ch.n1 - ch.n0) * g.OH * g.OW));
  const total = S.reduce((a, b) => a + b, 0);
  const part = total === 1 ? dw : empty([total, g.O, J]);
  const kernel = conv2dBackwardWeightKernel(t);
  let zb = 0;
  chunks.forEach((ch, i) => {
    const [rx, rdy] = ch.ranges;
    const gc = { ...g, N: ch.n1 - ch.n0 };
    const M = gc.N * g.OH * g.OW;
    const chunk = Math.ceil(M / S[i]);
    dispatch(
      kernel,
      [rx.binding, rdy.binding, part.binding()],
      params(gc, { blocks, M, chunk, J, a0: rx.off, a1: rdy.off, zb }),
      [Math.ceil(J / t.rj), g.groups * blocks, S[i]],
    );
    zb += S[i];
  });
  if (total > 1) {
    const n = dw.size;
    dispatch(
      splitKSumKernel(),
      [part.binding(), dw.binding()],
      SPLITK_SUM_UNIFORMS.pack({ n, S: total }),
      grid1d(n, SPLITK_SUM_WG),
    );
    part.dispose();
  }
  disposeCopy(xd, x);
  disposeCopy(dyd, dy);
  return dw;
}

// ---------------------------------------------------------------- differentiable ops

/**
 * The checked geometry of conv2d(x, w, bias, opts) (shapes, groups, bias length, a non-empty
 * output), errors naming `op`.
 */
export function conv2dGeometry(
  op: string,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null | undefined,
  opts: Conv2dOptions,
): ConvGeometry {
  checkF32(op, "input", x, 4);
  checkF32(op, "weight", w, 4);
  const [sh, sw] = pair(op, "stride", opts.stride, 1, 1);
  const [ph, pw] = pair(op, "padding", opts.padding, 0, 0);
  const [dh, dw] = pair(op, "dilation", opts.dilation, 1, 1);
  const groups = opts.groups ?? 1;
  const [N, C, H, W] = x.shape;
  const [O, Cg, kh, kw] = w.shape;
  if (!Number.isInteger(groups) || groups < 1 || C % groups || O % groups) {
    throw new Error(
      `${op}: groups=${groups} must divide both the input channels (${C}) and output channels (${O})`,
    );
  }
  if (Cg * groups !== C) {
    throw new Error(
      `${op}: input [${x.shape}] has ${C} channels but weight [${w.shape}] expects ${Cg}·groups(${groups}) = ${
        Cg * groups
      }`,
    );
  }
  if (kh < 1 || kw < 1) throw new Error(`${op}: weight [${w.shape}] has an empty kernel`);
  if (bias) {
    checkF32(op, "bias", bias, 1);
    if (bias.shape[0] !== O) {
      throw new Error(`${op}: bias [${bias.shape}] must have ${O} elements (weight [${w.shape}])`);
    }
  }
  const OH = windowOutSize(H, kh, sh, ph, dh), OW = windowOutSize(W, kw, sw, pw, dw);
  if (OH < 1 || OW < 1) {
    throw new Error(
      `${op}: input [${x.shape}] is too small for kernel ${kh}x${kw} (dilation ${dh},${dw}, padding ${ph},${pw}): ` +
        `output would be ${OH}x${OW}`,
    );
  }
  return { N, C, H, W, O, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, groups };
}

/**
 * 2-D convolution (torch.nn.functional.conv2d): x [N,C,H,W], w [O,C/groups,kh,kw], bias [O].
 * stride/padding/dilation are a number or [h, w].
 */
export function conv2d(
  x: Tensor,
  w: Tensor,
  bias?: Tensor | null,
  opts: Conv2dOptions = {},
): Tensor {
  const g = conv2dGeometry("conv2d", x, w, bias, opts);
  const y = conv2dForwardRaw(x, w, bias ?? null, g);
  const inputs = bias ? [x, w, bias] : [x, w];
  return record("conv2d", inputs, y, (gy) => [
    x.requiresGrad ? conv2dBackwardDataRaw(gy, w, null, g) : null,
    w.requiresGrad ? conv2dBackwardWeightRaw(x, gy, g) : null,
    bias?.requiresGrad ? reduceRaw("sum", gy, [0, 2, 3]) : null,
  ], [x, w]);
}

/**
 * Transposed 2-D convolution (torch.nn.functional.conv_transpose2d): x [N,Cin,H,W],
 * w [Cin,Cout/groups,kh,kw], bias [Cout];
 * OH = (H-1)·stride - 2·padding + dilation·(kh-1) + outputPadding + 1.
 */
export function convTranspose2d(
  x: Tensor,
  w: Tensor,
  bias?: Tensor | null,
  opts: ConvTranspose2dOptions = {},
): Tensor {
  const op = "convTranspose2d";
  checkF32(op, "input", x, 4);
  checkF32(op, "weight", w, 4);
  const [sh, sw] = pair(op, "stride", opts.stride, 1, 1);
  const [ph, pw] = pair(op, "padding", opts.padding, 0, 0);
  const [dh, dw] = pair(op, "dilation", opts.dilation, 1, 1);
  const [oph, opw] = pair(op, "outputPadding", opts.outputPadding, 0, 0);
  const groups = opts.groups ?? 1;
  const [N, Cin, H, W] = x.shape;
  const [wCin, Cg, kh, kw] = w.shape;
  if (wCin !== Cin) {
    throw new Error(
      `${op}: input [${x.shape}] has ${Cin} channels but weight [${w.shape}] expects ${wCin}`,
    );
  }
  if (!Number.isInteger(groups) || groups < 1 || Cin % groups) {
    throw new Error(`${op}: groups=${groups} must divide the input channels (${Cin})`);
  }
  if (oph >= Math.max(sh, dh) || opw >= Math.max(sw, dw)) {
    throw new Error(
      `${op}: outputPadding (${oph},${opw}) must be smaller than stride or dilation (${sh},${sw} / ${dh},${dw})`,
    );
  }
  if (kh < 1 || kw < 1) throw new Error(`${op}: weight [${w.shape}] has an empty kernel`);
  const Cout = Cg * groups;
  if (bias) {
    checkF32(op, "bias", bias, 1);
    if (bias.shape[0] !== Cout) {
      throw new Error(
        `${op}: bias [${bias.shape}] must have ${Cout} elements (weight [${w.shape}], groups ${groups})`,
      );
    }
  }
  const OH = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1;
  const OW = (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1;
  if (OH < 1 || OW < 1) {
    throw new Error(
      `${op}: input [${x.shape}] with padding (${ph},${pw}) gives an empty output ${OH}x${OW}`,
    );
  }
  // The conv2d whose adjoint this is: its input is our output, its output our input.
  const g: ConvGeometry = {
    N,
    C: Cout,
    H: OH,
    W: OW,
    O: Cin,
    OH: H,
    OW: W,
    kh,
    kw,
    sh,
    sw,
    ph,
    pw,
    dh,
    dw,
    groups,
  };
  const y = conv2dBackwardDataRaw(x, w, bias ?? null, g);
  const inputs = bias ? [x, w, bias] : [x, w];
  return record(op, inputs, y, (gy) => [
    x.requiresGrad ? conv2dForwardRaw(gy, w, null, g) : null,
    w.requiresGrad ? conv2dBackwardWeightRaw(gy, x, g) : null,
    bias?.requiresGrad ? reduceRaw("sum", gy, [0, 2, 3]) : null,
  ], [x, w]);
}
