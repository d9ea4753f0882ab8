/**
 * SAM's attention with the decomposed relative-position bias, composed through textures, for
 * software adapters and passes without gradients (the frozen image encoder: pseudo-labels,
 * embeddings, inference). Opt-in (`SAM_ATTENTION=texture`, engine/routing.ts): since the texture
 * matmul copies a dense operand into its texture instead of packing it, the composed path is
 * cheaper on llvmpipe (BENCHMARKS.md "SAM attention through textures"). Per group of slices
 * (batch·heads):
 *
 * 1. q, k and v are packed into textures (the texture matmul's pack kernel, strided views of the
 *    qkv projection read in place);
 * 2. the scores q·kᵀ are computed from those textures and stored as vec4s, a row per query
 *    (kernels/attention/scores_texture.ts);
 * 3. the bias softmax reads them and writes the probabilities to a texture in the layout the
 *    texture matmul reads its A operand in (kernels/softmax_relbias.ts,
 *    `softmaxRelBiasTextureKernel`);
 * 4. the texture matmul's product kernel multiplies them with v and writes each head's output
 *    straight into its place in the merged-heads layout [B, Nq, H, d].
 *
 * The composed path (model/sam/attention.ts) wrote 64 MiB of scores and of probabilities per
 * 4096-token head to buffers and then packed the probabilities into a texture for the product with
 * v: a 64 MiB read and texture write more per head. Here each probability is written once, into
 * the texture the product reads, and the heads are never concatenated. Where each lives was
 * measured on llvmpipe (BENCHMARKS.md "SAM attention through textures"): a texel store costs
 * more than a vec4 buffer store, so the scores go to a buffer; the product reads its A operand
 * from a texture at half the CPU time of a buffer, so the probabilities go to a texture.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import { gpu } from "../device.ts";
import { isGradEnabled } from "../autograd.ts";
import { bindingLimit } from "../routing.ts";
import { empty, type Tensor } from "../tensor.ts";
import { acquireTexture, hasReadonlyStorageTextures, releaseTexture } from "../texture_pool.ts";
import { matmulTile } from "../autotune.ts";
import { bindRange } from "./matmul_plan.ts";
import { copyable, copyRowsToTexture } from "./matmul_texture.ts";
import { permute } from "./view.ts";
import {
  MATMUL_PACK_UNIFORMS,
  MATMUL_TEXTURE_UNIFORMS,
  matmulPackGrid,
  matmulPackKernel,
  matmulTextureKernel,
  type PackLanes,
  type TextureTile,
} from "../../kernels/matmul_texture.ts";
import {
  SCORES_TEXTURE_UNIFORMS,
  scoresTextureKernel,
  scoresTileFor,
} from "../../kernels/attention/scores_texture.ts";
import {
  RELBIAS_WG,
  relBiasTexturePeriod,
  SOFTMAX_RELBIAS_TEXTURE_UNIFORMS,
  softmaxRelBiasTextureKernel,
} from "../../kernels/softmax_relbias.ts";
import { assertLoopLimit } from "../../kernels/common.ts";

const NAME = "attentionTexture";

/** Element range [lo, hi] a strided tensor reads (non-negative strides). */
function extent(t: Tensor): { lo: number; hi: number } {
  let hi = t.offset;
  t.shape.forEach((s, i) => hi += (s - 1) * t.strides[i]);
  return { lo: t.offset, hi };
}

/** Slices of the group per pass: texture heights and the score texture's bytes bounded. */
function slicesPerPass(g: number, nq: number, nk: number, d: number): number {
  const maxRows = gpu().limits.maxTextureDimension2D;
  const byRows = Math.floor(maxRows / Math.max(nq, nk, d));
  // Scores and probabilities live at once: each within half the binding limit, as on the
  // composed path (one 64 MiB head of ViT-B's global attention).
  const byBytes = Math.floor(bindingLimit() / 2 / (nq * nk * 4));
  return Math.min(g, byRows, byBytes);
}

/** The range of `t`'s buffer its elements span, bound. */
function bindWhole(t: Tensor) {
  const e = extent(t);
  return bindRange(t, e.lo, e.hi);
}
type Bound = ReturnType<typeof bindWhole>;

/**
 * Slices g0..g0+nz of a strided [B, H, ·, ·] operand `t` as texture rows, `rows` each: sRow along
 * them, sK along the texels (K values a row). Packed by the kernel, lanes along the operand's
 * contiguous dim (kernels/matmul_texture.ts, PackLanes: along k for q and k, along the rows for
 * v); with `tryCopy`, copied instead where the rows already are texture bytes (the same texels).
 */
function stageRows(
  t: Tensor,
  b: Bound,
  s: { g0: number; nz: number; rows: number; K: number; sRow: number; sK: number },
  tryCopy: boolean,
): ReturnType<typeof acquireTexture> {
  const { g0, nz, rows, K, sRow, sK } = s;
  const width = Math.ceil(K / 4);
  const tex = acquireTexture(width, nz * rows);
  const H = t.shape[1], [s0, s1] = t.strides;
  if (tryCopy) {
    const starts = [...Array(nz).keys()].map((i) => {
      const z = g0 + i;
      return t.storage.offset + 4 * (t.offset + Math.floor(z / H) * s0 + (z % H) * s1);
    });
    if (copyable(K, sK, sRow, rows, 4 * sRow, starts)) {
      copyRowsToTexture(t.storage.buffer, starts, 4 * sRow, tex.texture, width, rows);
      return tex;
    }
  }
  const lanes: PackLanes = sRow < sK ? "rows" : "k";
  dispatch(
    matmulPackKernel(lanes),
    [b.binding, { view: tex.view }],
    MATMUL_PACK_UNIFORMS.pack({
      rows,
      K,
      width,
      zBase: g0,
      off: t.offset - b.start,
      si: sRow,
      sj: sK,
      nb1: H,
      s0,
      s1,
      height: tex.texture.height,
      kRows: 0,
    }),
    matmulPackGrid(lanes, width, tex.texture.height),
  );
  return tex;
}

/**
 * Why the texture path cannot take this attention (null: it can). q [B, H, Nq, d], k and v
 * [B, H, Nk, d] (any strides), relH [B·H, Nq, KH] and relW [B·H, Nq, KW] with KH·KW = Nk.
 */
export function attentionTextureRefusal(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  relH: Tensor,
  relW: Tensor,
): string | null {
  if (!hasReadonlyStorageTextures()) return "no read-only storage textures";
  if (isGradEnabled() && [q, k, v, relH, relW].some((t) => t.requiresGrad)) {
    return "gradients are recorded (the texture path has no backward)";
  }
  if ([q, k, v, relH, relW].some((t) => t.dtype !== "f32")) return "not f32";
  if (!relH.isContiguous() || !relW.isContiguous()) return "relH and relW must be dense";
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4 || relH.rank !== 3 || relW.rank !== 3) {
    return "ranks";
  }
  const [B, H, nq, d] = q.shape, nk = k.shape[2];
  const kh = relH.shape[2], kw = relW.shape[2];
  if (
    k.shape.join() !== v.shape.join() || k.shape[0] !== B || k.shape[1] !== H ||
    k.shape[3] !== d || relH.shape[0] !== B * H || relH.shape[1] !== nq ||
    relW.shape[0] !== B * H || relW.shape[1] !== nq || kh * kw !== nk
  ) return "shapes";
  if (B * H === 0 || nq === 0 || d === 0) return "empty";
  if (relBiasTexturePeriod(kh, kw) === null) return `key grid ${kh}×${kw} is not whole periods`;
  if (slicesPerPass(B * H, nq, nk, d) < 1) return "one slice's scores do not fit";
  const limit = gpu().limits.maxStorageBufferBindingSize;
  for (const t of [q, k, v, relH, relW]) {
    if (t.strides.some((s) => s < 0)) return "negative strides";
    const e = extent(t);
    if ((e.hi - e.lo + 1) * 4 + 256 > limit) return "an operand exceeds the binding limit";
  }
  if (B * nq * H * d * 4 > limit) return "the output exceeds the binding limit";
  return null;
}

/**
 * softmax(scale·q·kᵀ + relH[·, ·, j / KW] + relW[·, ·, j % KW])·v for q [B, H, Nq, d], k and v
 * [B, H, Nk, d] (strided views read in place) and dense relH [B·H, Nq, KH], relW [B·H, Nq, KW]:
 * [B, H, Nq, d] as a view of a dense [B, Nq, H, d] (heads merged: the encoder's output
 * projection reads it without a copy). No autograd: throws where {@link attentionTextureRefusal}
 * refuses.
 */
export function attentionTextureRaw(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  relH: Tensor,
  relW: Tensor,
  scale: number,
): Tensor {
  for (const t of [q, k, v, relH, relW]) t.assertAlive();
  const why = attentionTextureRefusal(q, k, v, relH, relW);
  if (why) {
    throw new Error(
      `${NAME}: cannot run q [${q.shape}], k [${k.shape}], v [${v.shape}], relH [${relH.shape}], ` +
        `relW [${relW.shape}]: ${why}`,
    );
  }
  if (!Number.isFinite(scale)) throw new Error(`${NAME}: scale must be finite, got ${scale}`);
  const [B, H, nq, d] = q.shape, nk = k.shape[2];
  const kh = relH.shape[2], kw = relW.shape[2];
  const G = B * H, d4 = Math.ceil(d / 4), nk4 = nk / 4;
  if (gpu().isSoftware) {
    // Per invocation: the product's loop over Nk/4 texels (the softmax's two passes over
    // periods of at least 4 keys are no longer).
    assertLoopLimit(NAME, nk4 + 1, `Nk = ${nk}`);
  }
  const out = empty([B, nq, H, d]);
  const [bq, bk, bv, bh, bw] = [q, k, v, relH, relW].map(bindWhole);
  const bo = bindWhole(out);
  const st = scoresTileFor(nq, nk);
  const scores = scoresTextureKernel(st);
  const soft = softmaxRelBiasTextureKernel(kh, kw);
  const rt = matmulTile("texture", nq, d, nk, G) as TextureTile;
  const product = matmulTextureKernel({ bias: false, beta: false }, rt);
  const step = slicesPerPass(G, nq, nk, d);
  // Rows of a strided [B, H, n, d] operand as texture rows (sRow along them, sK along the texels).
  const stage = (
    t: Tensor,
    b: Bound,
    g0: number,
    nz: number,
    rows: number,
    K: number,
    sRow: number,
    sK: number,
  ) => stageRows(t, b, { g0, nz, rows, K, sRow, sK }, false);
  for (let g0 = 0; g0 < G; g0 += step) {
    const nz = Math.min(step, G - g0);
    const tq = stage(q, bq, g0, nz, nq, d, q.strides[2], q.strides[3]);
    const tk = stage(k, bk, g0, nz, nk, d, k.strides[2], k.strides[3]);
    const sc = empty([nz * nq, nk]);
    dispatch(
      scores,
      [{ view: tq.view }, { view: tk.view }, sc.binding()],
      SCORES_TEXTURE_UNIFORMS.pack({ M: nq, N: nk, K4: d4, sOff: 0 }),
      [Math.ceil(nk / (st.wx * st.tn)), Math.ceil(nq / (st.wy * st.tm)), nz],
    );
    releaseTexture(tq);
    releaseTexture(tk);
    const tp = acquireTexture(nk4, nz * nq);
    const rows = nz * nq;
    dispatch(
      soft,
      [sc.binding(), bh.binding, bw.binding, { view: tp.view }],
      SOFTMAX_RELBIAS_TEXTURE_UNIFORMS.pack({
        rows,
        KH: kh,
        scale,
        r0: g0 * nq,
        hOff: relH.offset - bh.start,
        wOff: relW.offset - bw.start,
        oRow: 0,
      }),
      grid1d(rows, RELBIAS_WG),
    );
    sc.dispose();
    // v as the product's B operand: a texture row per head-dim column, keys along the texels.
    const tv = stage(v, bv, g0, nz, d, nk, v.strides[3], v.strides[2]);
    dispatch(
      product,
      [{ view: tp.view }, { view: tv.view }, bo.binding],
      MATMUL_TEXTURE_UNIFORMS.pack({
        M: nq,
        N: d,
        K4: nk4,
        zBase: g0,
        aRows: nq,
        bRows: d,
        cOff: out.offset - bo.start,
        ldc: H * d,
        biasOff: 0,
        nb1: H,
        sc0: nq * H * d,
        sc1: d,
        alpha: 1,
        beta: 0,
      }),
      [Math.ceil(d / (rt.wx * rt.tn)), Math.ceil(nq / (rt.wy * rt.tm)), nz],
    );
    releaseTexture(tp);
    releaseTexture(tv);
  }
  return permute(out, [0, 2, 1, 3]);
}

/**
 * Why {@link attentionScoresRaw} cannot take these operands (null: it can): q [B, H, Nq, d] and
 * k [B, H, Nk, d], f32, any non-negative strides, Nk a multiple of 4, no gradient recorded.
 */
export function attentionScoresRefusal(q: Tensor, k: Tensor): string | null {
  if (!hasReadonlyStorageTextures()) return "no read-only storage textures";
  if (isGradEnabled() && (q.requiresGrad || k.requiresGrad)) return "gradients are recorded";
  if (q.dtype !== "f32" || k.dtype !== "f32") return "not f32";
  if (q.rank !== 4 || k.rank !== 4) return "ranks";
  const [B, H, nq, d] = q.shape, nk = k.shape[2];
  if (k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== d) return "shapes";
  if (B * H * nq * nk === 0 || d === 0) return "empty";
  if (nk % 4 !== 0) return "Nk is not a multiple of 4";
  const max = gpu().limits.maxTextureDimension2D;
  if (Math.max(nq, nk) > max || Math.ceil(d / 4) > max) return "a slice exceeds a texture";
  const limit = gpu().limits.maxStorageBufferBindingSize;
  for (const t of [q, k]) {
    if (t.strides.some((s) => s < 0)) return "negative strides";
    const e = extent(t);
    if ((e.hi - e.lo + 1) * 4 + 256 > limit) return "an operand exceeds the binding limit";
  }
  if (B * H * nq * nk * 4 + 256 > limit) return "the scores exceed the binding limit";
  return null;
}

/**
 * Attention scores q·kᵀ for q [B, H, Nq, d] and k [B, H, Nk, d] (strided views, e.g. heads of a
 * qkv projection): dense [B, H, Nq, Nk]. q and k are staged in textures by copies where their
 * rows already are the texture's bytes (else by the pack kernel) and the scores stored as vec4s
 * (kernels/attention/scores_texture.ts): with K = d = 64, a store-bound product, where the
 * texture matmul stores a scalar with a range check each. The same products as the texture
 * matmul's, summed in the same order. No autograd: throws where {@link attentionScoresRefusal}
 * refuses.
 */
export function attentionScoresRaw(q: Tensor, k: Tensor): Tensor {
  q.assertAlive();
  k.assertAlive();
  const why = attentionScoresRefusal(q, k);
  if (why) {
    throw new Error(`attentionScores: cannot run q [${q.shape}], k [${k.shape}]: ${why}`);
  }
  const [B, H, nq, d] = q.shape, nk = k.shape[2];
  const G = B * H, d4 = Math.ceil(d / 4);
  const out = empty([B, H, nq, nk]);
  const st = scoresTileFor(nq, nk);
  const kernel = scoresTextureKernel(st);
  const step = Math.min(G, Math.floor(gpu().limits.maxTextureDimension2D / Math.max(nq, nk)));
  const [bq, bk] = [q, k].map(bindWhole);
  // Slices g0.. of t ([B, H, rows, d]) as texture rows: copies where allowed, else the pack.
  const stage = (t: Tensor, b: Bound, g0: number, nz: number, rows: number) =>
    stageRows(t, b, { g0, nz, rows, K: d, sRow: t.strides[2], sK: t.strides[3] }, true);
  for (let g0 = 0; g0 < G; g0 += step) {
    const nz = Math.min(step, G - g0);
    const tq = stage(q, bq, g0, nz, nq);
    const tk = stage(k, bk, g0, nz, nk);
    const first = out.offset + g0 * nq * nk;
    const bo = bindRange(out, first, first + nz * nq * nk - 1);
    dispatch(
      kernel,
      [{ view: tq.view }, { view: tk.view }, bo.binding],
      SCORES_TEXTURE_UNIFORMS.pack({ M: nq, N: nk, K4: d4, sOff: (first - bo.start) / 4 }),
      [Math.ceil(nk / (st.wx * st.tn)), Math.ceil(nq / (st.wy * st.tm)), nz],
    );
    releaseTexture(tq);
    releaseTexture(tk);
  }
  return out;
}
