/**
 * 1×1 stride-1 unpadded convs (groups = 1) as texture GEMMs on software adapters, with the image
 * side copied into its texture as it lies instead of packed, and the samples (or, for the weight
 * gradient, every sample's pixel chunks) as the batches of one product dispatch.
 *
 * The general texture path (engine/ops/conv_texture.ts) packs x[n] [C, H·W] as im2col, its
 * transpose (a `cols4` pack per sample), and runs one GEMM per sample (per 1024-pixel chunk for
 * the weight gradient, each with two packs). But x[n] already is the row-major B of the forward
 * GEMM, which the bRowMajor product reads as texel (p/4, c) = x[n, c, p..p+3]: a buffer-to-texture
 * copy, no pass of its own. Likewise dy[n] for the input gradient, and both operands of the weight
 * gradient (rows whose k is the pixel, contiguous).
 *
 * - forward: y[n] [O, HW] = W [O, C] · x[n] [C, HW] (then the epilogue, as conv_texture.ts)
 * - input gradient: dx[n] [C, HW] = Wᵀ [C, O] · dy[n] [O, HW]
 * - weight gradient: dW [O, C] = Σ_n Σ_chunks dy[n][:, chunk] · x[n][:, chunk]ᵀ, the chunks as
 *   batches of one product into a scratch [S, O, C], added up by a sum pass in the order in which
 *   conv_texture.ts accumulates them; any other window too, its image side packed as im2colᵀ
 *   into the stacked texture ({@link batchedWeightGradient}).
 *
 * Every product adds its terms in the same order as the general path's (the bRowMajor product and a
 * copy stage the same texels as a pack; the sum adds the chunks in turn): bitwise the same results
 * (tests/ops/conv_pointwise_test.ts). Where a layout does not allow the copies (pixel rows not a
 * multiple of 64 floats, misaligned offsets, a ragged last chunk) the functions return null and the
 * general path runs.
 */
import { copyBufferToTexture, dispatch, grid1d } from "../dispatch.ts";
import { gpu } from "../device.ts";
import { empty, type Tensor } from "../tensor.ts";
import { acquireTexture, releaseTexture } from "../texture_pool.ts";
import { bindingLimit, convTextureMaxRows } from "../routing.ts";
import {
  SPLITK_SUM_UNIFORMS,
  SPLITK_SUM_WG,
  splitKSumKernel,
} from "../../kernels/conv/backward_weight.ts";
import type { ConvEpilogueOperands } from "./conv_epilogue.ts";
import type { ConvGeometry } from "../../kernels/window.ts";
import { product, stage, type Staged, weightStage, WGRAD_PIXELS } from "./conv_texture.ts";

/** Most floats of the weight gradient's scratch per product (its chunks then go in groups). */
const WGRAD_SCRATCH_FLOATS = 1 << 22;

/** Whether the window is 1×1, stride 1, unpadded, dilation irrelevant, ungrouped. */
function pointwise(g: ConvGeometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.sh === 1 && g.sw === 1 && g.ph === 0 && g.pw === 0 &&
    g.groups === 1;
}

/**
 * Whether `rows` rows of K floats, `stride` floats apart from element `start` of `t`, can be copied
 * into texture rows as they are: K whole texels, rows 256-byte multiples apart (WebGPU's copy
 * pitch) and not overlapping, a start on a texel (16 bytes).
 */
export function rowsCopyable(
  t: Tensor,
  start: number,
  stride: number,
  K: number,
  rows: number,
): boolean {
  return K % 4 === 0 && K / 4 <= gpu().limits.maxTextureDimension2D &&
    (rows === 1 || ((4 * stride) % 256 === 0 && stride >= K)) &&
    (t.storage.offset + 4 * start) % 16 === 0;
}

/** Copies `rows` rows of K floats (see {@link rowsCopyable}) into `tex` from texture row `y`. */
export function copyRows(
  tex: Staged,
  t: Tensor,
  start: number,
  stride: number,
  K: number,
  rows: number,
  y: number,
): void {
  const bytesPerRow = rows === 1 ? Math.ceil(K * 4 / 256) * 256 : 4 * stride;
  copyBufferToTexture(
    t.storage.buffer,
    t.storage.offset + 4 * start,
    bytesPerRow,
    tex.texture,
    K / 4,
    rows,
    y,
  );
}

/** The dense weights [M, K] (k contiguous) staged a texture row per row: a copy where it can be. */
function weightRows(w: Tensor, M: number, K: number, g: ConvGeometry): Staged {
  if (rowsCopyable(w, w.offset, K, K, M) && M <= convTextureMaxRows()) {
    const tex = acquireTexture(K / 4, M);
    copyRows(tex, w, w.offset, K, K, M, 0);
    return tex;
  }
  return stage(weightStage(w, M, K, { sRow: K, kIn: 0x7fffffff, sOut: 0, sIn: 1 }), g);
}

/**
 * out[n] [M, HW] = A [M, K] · src[n] [K, HW] for every sample, src[n] copied row-major (K rows of
 * HW floats per sample), samples in groups that fit a texture and a binding; null where src's
 * layout does not allow the copies.
 */
function perSample(
  g: ConvGeometry,
  src: Tensor,
  K: number,
  M: number,
  stageA: () => Staged,
  ep?: ConvEpilogueOperands,
): Tensor | null {
  const HW = g.H * g.W, maxRows = convTextureMaxRows();
  // K whole texels: the bRowMajor texture has K rows per batch, no zero rows to pad with.
  if (K % 4 || K > maxRows || !rowsCopyable(src, src.offset, HW, HW, K)) return null;
  const perOut = M * HW;
  const byBinding = Math.floor((bindingLimit() - 256) / (4 * perOut));
  const group = Math.max(1, Math.min(g.N, Math.floor(maxRows / K), byBinding));
  const out = empty([g.N, M, g.H, g.W]);
  const ta = stageA();
  for (let n0 = 0; n0 < g.N; n0 += group) {
    const nz = Math.min(group, g.N - n0);
    const tb = acquireTexture(HW / 4, nz * K);
    for (let i = 0; i < nz; i++) {
      copyRows(tb, src, src.offset + (n0 + i) * K * HW, HW, HW, K, i * K);
    }
    product(
      ta,
      tb,
      {
        M,
        N: HW,
        K4: K / 4,
        nz,
        aRows: 0,
        bRows: K,
        sc0: perOut,
        ldc: HW,
        bRowMajor: true,
      },
      out,
      out.offset + n0 * perOut,
      ep,
    );
    releaseTexture(tb);
  }
  releaseTexture(ta);
  return out;
}

/** y [N,O,H,W] of dense x and w for a plain 1×1 conv (then `ep`), or null (see the file's doc). */
export function pointwiseForward(
  x: Tensor,
  w: Tensor,
  g: ConvGeometry,
  ep?: ConvEpilogueOperands,
): Tensor | null {
  if (!pointwise(g)) return null;
  return perSample(g, x, g.C, g.O, () => weightRows(w, g.O, g.C, g), ep);
}

/** dx [N,C,H,W] from dense dy and w for a plain 1×1 conv, or null. */
export function pointwiseInputGradient(dy: Tensor, w: Tensor, g: ConvGeometry): Tensor | null {
  if (!pointwise(g)) return null;
  // Row c, k = o: w[o, c] (the general path's staging of the transposed weights).
  return perSample(
    g,
    dy,
    g.O,
    g.C,
    () => stage(weightStage(w, g.C, g.O, { sRow: 1, kIn: 1, sOut: g.C, sIn: 1 }), g),
  );
}

/**
 * dW [O,C,kh,kw] from dense x and dy (groups = 1) with every sample's pixel chunks as the batches
 * of one product, or null. dy's rows are copied; x's side is copied too for a plain 1×1 conv, else
 * packed as im2colᵀ (conv_texture.ts's pack) into the stacked texture, a dispatch per chunk. The
 * chunks and their sums are conv_texture.ts's (`conv2dBackwardWeightTexture`): bitwise its dW.
 */
export function batchedWeightGradient(x: Tensor, dy: Tensor, g: ConvGeometry): Tensor | null {
  if (g.groups !== 1) return null;
  const OHW = g.OH * g.OW, CHW = g.C * g.H * g.W, maxRows = convTextureMaxRows();
  const Kg = g.C * g.kh * g.kw;
  // The general path's chunk length, so that the sums are the same.
  const P = Math.min(WGRAD_PIXELS, 4 * maxRows, OHW);
  if (OHW % P || P % 4 || g.O > maxRows || Kg > maxRows) return null;
  if (!rowsCopyable(dy, dy.offset, OHW, P, g.O)) return null;
  const copyX = pointwise(g) && rowsCopyable(x, x.offset, OHW, P, g.C);
  const per = OHW / P, S = g.N * per, OK = g.O * Kg;
  const group = Math.max(
    1,
    Math.min(
      S,
      Math.floor(maxRows / g.O),
      Math.floor(maxRows / Kg),
      Math.floor(WGRAD_SCRATCH_FLOATS / OK),
      Math.floor((bindingLimit() - 256) / (4 * OK)),
    ),
  );
  const dw = empty([g.O, g.C, g.kh, g.kw]);
  const part = S === 1 ? dw : empty([Math.min(group, S), g.O, Kg]);
  for (let s0 = 0; s0 < S; s0 += group) {
    const nz = Math.min(group, S - s0);
    const ta = acquireTexture(P / 4, nz * g.O), tb = acquireTexture(P / 4, nz * Kg);
    for (let i = 0; i < nz; i++) {
      const n = Math.floor((s0 + i) / per), p0 = ((s0 + i) % per) * P;
      copyRows(ta, dy, dy.offset + n * g.O * OHW + p0, OHW, P, g.O, i * g.O);
      const xl = x.offset + n * CHW;
      if (copyX) copyRows(tb, x, xl + p0, OHW, P, g.C, i * Kg);
      else {
        stage(
          { mode: "im2colT", src: x, lo: xl, hi: xl + CHW - 1, rows: Kg, K: P, k0: p0 },
          g,
          { tex: tb, row: i * Kg },
        );
      }
    }
    product(
      ta,
      tb,
      {
        M: g.O,
        N: Kg,
        K4: P / 4,
        nz,
        aRows: g.O,
        bRows: Kg,
        sc0: OK,
        ldc: Kg,
        bRowMajor: false,
      },
      part,
      part.offset,
    );
    releaseTexture(ta);
    releaseTexture(tb);
    if (part !== dw) {
      // Four weights a thread where the slices are whole vec4s (both bound at offset 0 then).
      const v4 = OK % 4 === 0 && part.offset % 4 === 0 && dw.offset % 4 === 0;
      const n = v4 ? OK / 4 : OK;
      dispatch(
        splitKSumKernel(s0 > 0, v4),
        [part.binding(), dw.binding()],
        SPLITK_SUM_UNIFORMS.pack({ n, S: nz }),
        grid1d(n, SPLITK_SUM_WG),
      );
    }
  }
  if (part !== dw) part.dispose();
  return dw;
}
