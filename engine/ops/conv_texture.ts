/**
 * conv2d and its two gradients as texture GEMMs, for software adapters (where matmul stages its
 * operands in textures, engine/ops/matmul.ts): each operand is packed into an rgba32float texture
 * by kernels/conv/texture.ts (the image side as im2col or its transpose, one sample and at
 * most maxTextureDimension2D rows at a time) and multiplied by kernels/matmul_texture.ts, whose
 * loads are branch-free gathers on llvmpipe instead of per-lane loops. Ungrouped convs only; the
 * forward without bias (the GEMM's bias runs along the pixels, not the channels) but with an
 * optional per-channel epilogue along the GEMM's rows (a folded BatchNorm, residual and ReLU:
 * engine/ops/conv_fused.ts).
 *
 * - forward: y[n] [O, OH·OW] = W [O, C·KK] · im2col(x[n])ᵀ
 * - input gradient: dx[n] [C, H·W] = Wᶜ [C, O·KK] · gather(dy[n])ᵀ
 * - weight gradient: dW [O, C·KK] = Σ_n dy[n] [O, OH·OW] · im2colᵀ(x[n]), accumulated
 */
import { dispatch } from "../dispatch.ts";
import { gpu } from "../device.ts";
import { empty, type Tensor } from "../tensor.ts";
import { acquireTexture, releaseTexture } from "../texture_pool.ts";
import { bindingLimit, convTextureMaxRows } from "../routing.ts";
import {
  CONV_PACK_UNIFORMS,
  CONV_PACK_WG,
  convPackKernel,
  type ConvPackMode,
  convPackVec4Kernel,
} from "../../kernels/conv/texture.ts";
import { MATMUL_TEXTURE_UNIFORMS, matmulTextureKernel } from "../../kernels/matmul_texture.ts";
import { bindRange } from "./matmul_plan.ts";
import { type ConvEpilogueOperands, epilogueSpec } from "./conv_epilogue.ts";
import { matmulTile } from "../autotune.ts";
import { type ConvGeometry, dilatedWindowOf } from "../../kernels/window.ts";

export type Staged = ReturnType<typeof acquireTexture>;

/** One sample's range fits a binding (else the conv kernels, which split, take the conv). */
function fits(lo: number, hi: number): boolean {
  return (hi - lo + 1) * 4 + 256 <= bindingLimit();
}

/** Whether this geometry can take the texture path (texture rows and bindings within limits). */
export function convTextureFits(g: ConvGeometry): boolean {
  const max = gpu().limits.maxTextureDimension2D;
  const KK = g.kh * g.kw;
  return g.groups === 1 && g.O <= max && g.C <= max && g.C * KK <= max &&
    Math.ceil(g.C * KK / 4) <= max && Math.ceil(g.O * KK / 4) <= max &&
    fits(0, g.C * g.H * g.W - 1) && fits(0, g.O * g.OH * g.OW - 1);
}

export interface Stage {
  mode: ConvPackMode;
  src: Tensor;
  /** Element range of `src` the pack reads (one sample, or the weights). */
  lo: number;
  hi: number;
  rows: number;
  row0?: number;
  K: number;
  k0?: number;
  strides?: { sRow: number; kIn: number; sOut: number; sIn: number };
}

/** Whether the window is 1×1, stride 1, unpadded: im2col is the image itself (or its transpose). */
function pointwise(g: ConvGeometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.sh === 1 && g.sw === 1 && g.ph === 0 && g.pw === 0;
}

/**
 * The vec4 pack that stages `s` (kernels/conv/texture.ts `convPackVec4Kernel`) where its operand is
 * plain rows (`rows4`: element (r, k) at off + r·sRow + k) or their transpose (`cols4`: at
 * off + k·sRow + r) with the alignment vec4 loads need; else null (the general pack).
 */
function vec4Form(
  s: Stage,
  g: ConvGeometry,
  off: number,
  bindingBytes: number,
): { mode: "rows4" | "cols4"; sRow: number } | null {
  const st = s.strides;
  const k0 = s.k0 ?? 0, row0 = s.row0 ?? 0;
  let f: { mode: "rows4" | "cols4"; sRow: number } | null = null;
  if (s.mode === "strided" && st && st.sIn === 1 && st.kIn >= k0 + s.K) {
    f = { mode: "rows4", sRow: st.sRow };
  } else if (s.mode === "strided" && st && st.kIn === 1 && st.sRow === 1) {
    // A 1×1 conv's weights per input channel (input gradient): element (c, o) at o·C + c.
    f = { mode: "cols4", sRow: st.sOut };
  } else if (s.mode === "im2colT" && pointwise(g)) f = { mode: "rows4", sRow: g.H * g.W };
  else if (s.mode === "im2col" && pointwise(g)) f = { mode: "cols4", sRow: g.H * g.W };
  else if (s.mode === "dgrad" && pointwise(g)) f = { mode: "cols4", sRow: g.OH * g.OW };
  if (!f || off % 4 || f.sRow % 4 || bindingBytes % 16) return null;
  return (f.mode === "rows4" ? k0 : row0) % 4 ? null : f;
}

/**
 * Packs the operand `s` into a scratch texture (the caller releases it), or into rows row.. of
 * `into.tex` (a stack of operands, one product's batches).
 */
export function stage(s: Stage, g: ConvGeometry, into?: { tex: Staged; row: number }): Staged {
  const width = Math.ceil(s.K / 4);
  const tex = into?.tex ?? acquireTexture(width, s.rows);
  const b = bindRange(s.src, s.lo, s.hi);
  const st = s.strides ?? { sRow: 0, kIn: 1, sOut: 0, sIn: 0 };
  const off = s.lo - b.start;
  const v4 = vec4Form(s, g, off, b.binding.size!);
  dispatch(
    v4 ? convPackVec4Kernel(v4.mode) : convPackKernel(s.mode),
    [b.binding, { view: tex.view }],
    CONV_PACK_UNIFORMS.pack({
      rows: s.rows,
      K: s.K,
      width,
      off,
      row0: s.row0 ?? 0,
      k0: s.k0 ?? 0,
      ...st,
      ...(v4 ? { sRow: v4.sRow } : {}),
      C: g.C,
      ...dilatedWindowOf(g),
      tRow: into?.row ?? 0,
    }),
    [
      Math.ceil(width / CONV_PACK_WG.x),
      Math.ceil((v4?.mode === "cols4" ? Math.ceil(s.rows / 4) : s.rows) / CONV_PACK_WG.y),
    ],
  );
  return tex;
}

/** out[lo + i·ldc + j] (+)= Σ_k A[i, k]·B[j, k] for i < M, j < N over `k4` texels ({@link product}). */
function gemm(
  ta: Staged,
  tb: Staged,
  M: number,
  N: number,
  k4: number,
  out: Tensor,
  lo: number,
  ldc: number,
  accumulate: boolean,
  ep?: ConvEpilogueOperands,
): void {
  const p = { M, N, K4: k4, nz: 1, aRows: 0, bRows: 0, sc0: 0, ldc, bRowMajor: false, accumulate };
  product(ta, tb, p, out, lo, ep);
}

export interface Product {
  M: number;
  N: number;
  K4: number;
  /** Batches (grid z): B's texture rows per batch, A's (0: shared), C's stride. */
  nz: number;
  aRows: number;
  bRows: number;
  sc0: number;
  ldc: number;
  bRowMajor: boolean;
  /** Adds into out (beta = 1) instead of overwriting it. */
  accumulate?: boolean;
}

/**
 * out[lo + z·sc0 + i·ldc + j] (+)= Σ_k A_z[i, k]·B_z[k, j] for every batch z, then the epilogue `ep`
 * with channel i (its residual bound over the same range as `out`): the one launch of the conv
 * texture GEMMs (this file, conv_pointwise.ts, conv_col2im.ts).
 */
export function product(
  ta: Staged,
  tb: Staged,
  p: Product,
  out: Tensor,
  lo: number,
  ep?: ConvEpilogueOperands,
): void {
  // The adapter's tuned tile for this product's class, else the default rule (engine/autotune.ts).
  const rt = matmulTile("texture", p.M, p.N, 4 * p.K4);
  const hi = lo + (p.nz - 1) * p.sc0 + (p.M - 1) * p.ldc + p.N - 1;
  const c = bindRange(out, lo, hi);
  const bindings: Parameters<typeof dispatch>[1] = [{ view: ta.view }, { view: tb.view }];
  if (ep?.scale) bindings.push(ep.scale.binding());
  if (ep?.shift) bindings.push(ep.shift.binding());
  if (ep?.residual) {
    // Same shape and offset as `out` (conv2dForwardRaw checks): the same range, index for index.
    const r = bindRange(ep.residual, lo, hi);
    if (ep.residual.offset !== out.offset || r.start !== c.start) {
      throw new Error("conv2d epilogue: residual and output ranges differ");
    }
    bindings.push(r.binding);
  }
  bindings.push(c.binding);
  dispatch(
    matmulTextureKernel(
      { bias: false, beta: !!p.accumulate, bRowMajor: p.bRowMajor },
      rt,
      ep ? epilogueSpec(ep) : undefined,
    ),
    bindings,
    MATMUL_TEXTURE_UNIFORMS.pack({
      M: p.M,
      N: p.N,
      K4: p.K4,
      zBase: 0,
      aRows: p.aRows,
      bRows: p.bRows,
      cOff: lo - c.start,
      ldc: p.ldc,
      biasOff: 0,
      nb1: 1,
      sc0: p.sc0,
      sc1: 0,
      alpha: 1,
      beta: p.accumulate ? 1 : 0,
    }),
    [Math.ceil(p.N / (rt.wx * rt.tn)), Math.ceil(p.M / (rt.wy * rt.tm)), p.nz],
  );
}

const HUGE = 0x7fffffff;

/** Pixels summed per weight-gradient GEMM before adding into dW. */
export const WGRAD_PIXELS = 1024;

/**
 * out[n] [M, P] = weights [M, K] · image-side rows of sample n, for every sample, `P` pixels per
 * sample in chunks of at most convTextureMaxRows() texture rows: the shape of both the forward (M = O, im2col
 * of x) and the input gradient (M = C, gather of dy).
 */
function perSampleGemm(
  g: ConvGeometry,
  weights: Stage,
  image: { mode: ConvPackMode; src: Tensor; perSample: number },
  out: Tensor,
  M: number,
  P: number,
  ep?: ConvEpilogueOperands,
): Tensor {
  const K = weights.K, maxR = convTextureMaxRows();
  const ta = stage(weights, g);
  for (let n = 0; n < g.N; n++) {
    const lo = image.src.offset + n * image.perSample;
    for (let p0 = 0; p0 < P; p0 += maxR) {
      const R = Math.min(maxR, P - p0);
      const tb = stage({
        mode: image.mode,
        src: image.src,
        lo,
        hi: lo + image.perSample - 1,
        rows: R,
        row0: p0,
        K,
      }, g);
      gemm(ta, tb, M, R, Math.ceil(K / 4), out, n * M * P + p0, P, false, ep);
      releaseTexture(tb);
    }
  }
  releaseTexture(ta);
  return out;
}

/** All of the dense weights `w` read as `rows` texture rows of K values with `strides`. */
export function weightStage(w: Tensor, rows: number, K: number, strides: Stage["strides"]): Stage {
  return { mode: "strided", src: w, lo: w.offset, hi: w.offset + w.size - 1, rows, K, strides };
}

/** y [N,O,OH,OW] of dense x and w (groups = 1, no bias), then the epilogue `ep` if given. */
export function conv2dForwardTexture(
  x: Tensor,
  w: Tensor,
  g: ConvGeometry,
  ep?: ConvEpilogueOperands,
): Tensor {
  const Kg = g.C * g.kh * g.kw;
  return perSampleGemm(
    g,
    weightStage(w, g.O, Kg, { sRow: Kg, kIn: HUGE, sOut: 0, sIn: 1 }),
    { mode: "im2col", src: x, perSample: g.C * g.H * g.W },
    empty([g.N, g.O, g.OH, g.OW]),
    g.O,
    g.OH * g.OW,
    ep,
  );
}

/** dx [N,C,H,W] from dense dy [N,O,OH,OW] and w (groups = 1). */
export function conv2dBackwardDataTexture(dy: Tensor, w: Tensor, g: ConvGeometry): Tensor {
  const KK = g.kh * g.kw;
  return perSampleGemm(
    g,
    // Row c, k = o·KK + tap: w[o, c, tap].
    weightStage(w, g.C, g.O * KK, { sRow: KK, kIn: KK, sOut: g.C * KK, sIn: 1 }),
    { mode: "dgrad", src: dy, perSample: g.O * g.OH * g.OW },
    empty([g.N, g.C, g.H, g.W]),
    g.C,
    g.H * g.W,
  );
}

/** dW [O,C,kh,kw] from dense x and dy (groups = 1), summed over samples and pixels. */
export function conv2dBackwardWeightTexture(x: Tensor, dy: Tensor, g: ConvGeometry): Tensor {
  const Kg = g.C * g.kh * g.kw, OHW = g.OH * g.OW, CHW = g.C * g.H * g.W;
  const dw = empty([g.O, g.C, g.kh, g.kw]);
  // Pixels per GEMM: shorter sequential f32 sums (the chunks then add up in dW) keep the gradient
  // as accurate as the split-K kernel's; through BN the terms cancel heavily.
  const maxK = Math.min(WGRAD_PIXELS, 4 * convTextureMaxRows());
  let first = true;
  for (let n = 0; n < g.N; n++) {
    const dl = dy.offset + n * g.O * OHW, xl = x.offset + n * CHW;
    for (let p0 = 0; p0 < OHW; p0 += maxK) {
      const P = Math.min(maxK, OHW - p0);
      const ta = stage({
        mode: "strided",
        src: dy,
        lo: dl,
        hi: dl + g.O * OHW - 1,
        rows: g.O,
        K: P,
        k0: p0,
        strides: { sRow: OHW, kIn: HUGE, sOut: 0, sIn: 1 },
      }, g);
      const tb = stage({
        mode: "im2colT",
        src: x,
        lo: xl,
        hi: xl + CHW - 1,
        rows: Kg,
        K: P,
        k0: p0,
      }, g);
      gemm(ta, tb, g.O, Kg, Math.ceil(P / 4), dw, dw.offset, Kg, !first);
      first = false;
      releaseTexture(ta);
      releaseTexture(tb);
    }
  }
  return dw;
}
