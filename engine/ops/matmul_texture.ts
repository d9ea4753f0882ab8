/**
 * Matmul's texture launch (software adapters, engine/routing.ts): per chunk of the plan
 * (matmul_plan.ts), pack A's rows and B's columns into rgba32float textures
 * (kernels/matmul_texture.ts), then one product dispatch that reads only textures.
 */
import { type Binding, copyBufferToTexture, dispatch } from "../dispatch.ts";
import type { Tensor } from "../tensor.ts";
import { acquireTexture, releaseTexture } from "../texture_pool.ts";
import { gpu } from "../device.ts";
import {
  MATMUL_PACK_UNIFORMS,
  MATMUL_TEXTURE_UNIFORMS,
  matmulPackGrid,
  matmulPackKernel,
  matmulPackRowMajorKernel,
  matmulTextureKernel,
  PACK_WG,
  type PackLanes,
  type TextureTile,
} from "../../kernels/matmul_texture.ts";
import {
  type BatchDim,
  bindRange,
  chunkExtents,
  type ElementRange,
  type MatmulChunk,
  type MatmulProblem,
  type MatrixOperand,
  planMatmulChunks,
} from "./matmul_plan.ts";

export interface TextureLaunch {
  a: Tensor;
  b: Tensor;
  c: Tensor;
  bias: Tensor | undefined;
  A: MatrixOperand;
  B: MatrixOperand;
  alpha: number;
  beta: number;
  rt: TextureTile;
  d0: BatchDim;
  d1: BatchDim;
}

/**
 * How operands are staged: "auto" (a buffer-to-texture copy where the operand's bytes already are
 * the texture's, see {@link copyable}; else the pack kernel with lanes along the operand's smaller
 * stride and batch arithmetic only for batched operands), one lane direction forced (always the
 * kernel), or "before" (always the kernel, lanes along k, batch arithmetic always: the staging
 * before these choices existed). Every form stages the same texels.
 */
export type PackForm = "auto" | PackLanes | "before";
let packForm: PackForm = "auto";
/** Forces the pack form (benchmarks comparing them, tests covering each); returns the old one. */
export function setMatmulPackForm(form: PackForm): PackForm {
  const old = packForm;
  packForm = form;
  return old;
}

/**
 * Whether an operand's rows already are its texture's bytes, so a copy can stage it instead of the
 * pack kernel (same texels, so the same products bit for bit): k contiguous (stride 1), K a
 * multiple of 4 (no zero padding), rows a multiple of 256 bytes apart (WebGPU's copy pitch) and
 * not overlapping, every batch starting on a texel (16 bytes). Row-major A of a linear layer and
 * its transposed weight qualify whenever K is a multiple of 64; a row-major B does not (its
 * texture rows are B's columns).
 */
export function copyable(
  kc: number,
  sK: number,
  sRow: number,
  rows: number,
  bytesPerRow: number,
  starts: number[],
): boolean {
  return sK === 1 && kc % 4 === 0 && bytesPerRow % 256 === 0 &&
    (rows === 1 || sRow >= kc) && sRow > 0 && starts.every((b) => b % 16 === 0);
}

/**
 * Copies slice i (`rows` rows of `width` texels from `starts[i]`, `bytesPerRow` apart) to the
 * texture's rows i·rows..: one copy per run of slices that lie end to end in the buffer (the
 * next starting `rows` rows after this one: batches of a dense tensor, the windows of one head of
 * SAM's qkv taken head-major), instead of one per slice — the same bytes in the same texels.
 */
export function copyRowsToTexture(
  buffer: GPUBuffer,
  starts: number[],
  bytesPerRow: number,
  texture: GPUTexture,
  width: number,
  rows: number,
): void {
  for (let i = 0; i < starts.length;) {
    let j = i + 1;
    while (j < starts.length && starts[j] === starts[j - 1] + rows * bytesPerRow) j++;
    copyBufferToTexture(buffer, starts[i], bytesPerRow, texture, width, (j - i) * rows, i * rows);
    i = j;
  }
}

/**
 * Stages a chunk's row-major B (n contiguous) by copies in the bRowMajor layout (texel (n/4, k):
 * B[k, n..n+3]; K rows per batch) when {@link copyable} allows it (N and K of the chunk multiples
 * of 4, rows of B 256-byte multiples apart, 16-byte aligned starts) and the texture fits the
 * adapter; null otherwise.
 */
function copyRowMajorB(
  b: Tensor,
  ch: MatmulChunk,
  nr: number,
  kc: number,
  off: number,
  B: MatrixOperand,
  batched: boolean,
  d0: BatchDim,
  d1: BatchDim,
): ReturnType<typeof acquireTexture> | null {
  const nz = ch.z1 - ch.z0;
  const height = kc * (batched ? nz : 1), max = gpu().limits.maxTextureDimension2D;
  if (kc % 4 !== 0 || nr % 4 !== 0 || nr / 4 > max || height > max) return null;
  const zs = batched ? [...Array(nz).keys()].map((i) => ch.z0 + i) : [0];
  const starts = zs.map((z) =>
    b.storage.offset + 4 * (off + Math.floor(z / d1.n) * d0.sb + (z % d1.n) * d1.sb)
  );
  const bytesPerRow = kc === 1 ? Math.ceil(nr * 4 / 256) * 256 : 4 * B.si;
  if (!copyable(nr, B.sj, B.si, kc, bytesPerRow, starts)) return null;
  const tex = acquireTexture(nr / 4, height);
  copyRowsToTexture(b.storage.buffer, starts, bytesPerRow, tex.texture, nr / 4, kc);
  return tex;
}

/**
 * Packs a chunk's B in the bRowMajor layout (matmulPackRowMajorKernel: texel (n/4, k), K padded
 * to 4 rows, one block per batch when B is batched) when the texture fits the adapter; null
 * otherwise.
 */
function packRowMajorB(
  b: Tensor,
  ext: ElementRange,
  ch: MatmulChunk,
  nr: number,
  kc: number,
  off: number,
  B: MatrixOperand,
  batched: boolean,
  d0: BatchDim,
  d1: BatchDim,
): ReturnType<typeof acquireTexture> | null {
  const nz = ch.z1 - ch.z0;
  const width = Math.ceil(nr / 4), rows = 4 * Math.ceil(kc / 4);
  const height = rows * (batched ? nz : 1), max = gpu().limits.maxTextureDimension2D;
  if (width > max || height > max) return null;
  const tex = acquireTexture(width, height);
  const src = bindRange(b, ext.lo, ext.hi);
  dispatch(
    matmulPackRowMajorKernel(batched),
    [src.binding, { view: tex.view }],
    MATMUL_PACK_UNIFORMS.pack({
      rows,
      K: nr,
      width,
      zBase: batched ? ch.z0 : 0,
      off: off - src.start,
      si: B.si,
      sj: B.sj,
      nb1: d1.n,
      s0: d0.sb,
      s1: d1.sb,
      height,
      kRows: kc,
    }),
    [Math.ceil(width / PACK_WG.x), Math.ceil(height / PACK_WG.y)],
  );
  return tex;
}

/**
 * The texture variant over one outer batch index: per chunk, pack A's rows and B's columns (K
 * range of the chunk) into scratch textures, then one product dispatch reading only textures.
 */
export function launchTexture(p: MatmulProblem, t: TextureLaunch): void {
  const { A, B, d0, d1, rt } = t;
  const N = p.N;
  const tileM = rt.wy * rt.tm, tileN = rt.wx * rt.tn;
  const aBatched = d0.sa !== 0 || d1.sa !== 0, bBatched = d0.sb !== 0 || d1.sb !== 0;
  for (const ch of planMatmulChunks(p)) {
    const e = chunkExtents(p, ch);
    const isFirst = ch.k0 === 0;
    const nz = ch.z1 - ch.z0, mr = ch.m1 - ch.m0, nr = ch.n1 - ch.n0, kc = ch.k1 - ch.k0;
    const width = Math.ceil(kc / 4);
    // Texture rows: A's rows of the chunk (si along them, sj along k); B's columns (sj, si).
    const stage = (
      x: Tensor,
      ext: ElementRange,
      batched: boolean,
      rows: number,
      off: number,
      sRow: number,
      sK: number,
      s0: number,
      s1: number,
      copyOnly = false,
    ): ReturnType<typeof acquireTexture> | null => {
      const lanes: PackLanes = packForm === "before"
        ? "k"
        : packForm !== "auto"
        ? packForm
        : Math.abs(sRow) < Math.abs(sK)
        ? "rows"
        : "k";
      if (packForm === "auto") {
        const zs = batched ? [...Array(nz).keys()].map((i) => ch.z0 + i) : [0];
        const starts = zs.map((z) =>
          x.storage.offset + 4 * (off + Math.floor(z / d1.n) * s0 + (z % d1.n) * s1)
        );
        const bytesPerRow = rows === 1 ? Math.ceil(kc * 4 / 256) * 256 : 4 * sRow;
        if (copyable(kc, sK, sRow, rows, bytesPerRow, starts)) {
          const tex = acquireTexture(width, (batched ? nz : 1) * rows);
          copyRowsToTexture(x.storage.buffer, starts, bytesPerRow, tex.texture, width, rows);
          return tex;
        }
      }
      if (copyOnly) return null;
      const tex = acquireTexture(width, (batched ? nz : 1) * rows);
      const src = bindRange(x, ext.lo, ext.hi);
      const height = tex.texture.height;
      dispatch(
        matmulPackKernel(lanes, batched || packForm === "before"),
        [src.binding, { view: tex.view }],
        MATMUL_PACK_UNIFORMS.pack({
          rows,
          K: kc,
          width,
          zBase: batched ? ch.z0 : 0,
          off: off - src.start,
          si: sRow,
          sj: sK,
          nb1: d1.n,
          s0,
          s1,
          height,
          kRows: 0,
        }),
        matmulPackGrid(lanes, width, height),
      );
      return tex;
    };
    const ta = stage(
      t.a,
      e.a,
      aBatched,
      mr,
      p.a.off + ch.m0 * A.si + ch.k0 * A.sj,
      A.si,
      A.sj,
      d0.sa,
      d1.sa,
    )!;
    const bOff = p.b.off + ch.k0 * B.si + ch.n0 * B.sj;
    // A row-major B (n contiguous) is copied as it is, a texel per 4 columns and K rows per batch,
    // when its layout allows (bRowMajor kernels). Else it is still staged that way, by a pack,
    // unless B is stored column by column (a linear layer's weight: copied or packed a texture
    // row per column) or the texture would not fit: the product's lanes then read neighbouring
    // texels (1.1-1.3× faster products, BENCHMARKS.md).
    const stageB = (copyOnly: boolean) =>
      stage(t.b, e.b, bBatched, nr, bOff, B.sj, B.si, d0.sb, d1.sb, copyOnly);
    let tbRows = packForm === "auto"
      ? copyRowMajorB(t.b, ch, nr, kc, bOff, B, bBatched, d0, d1)
      : null;
    let tbCols = tbRows ? null : stageB(true);
    if (!tbRows && !tbCols && packForm === "auto" && Math.abs(B.sj) <= Math.abs(B.si)) {
      tbRows = packRowMajorB(t.b, e.b, ch, nr, kc, bOff, B, bBatched, d0, d1);
    }
    if (!tbRows && !tbCols) tbCols = stageB(false);
    const tb = (tbRows ?? tbCols)!;
    const bRowMajor = tbRows !== null;
    const bc = bindRange(t.c, e.c.lo, e.c.hi);
    const bindings: Binding[] = [{ view: ta.view }, { view: tb.view }];
    let biasOff = 0;
    if (t.bias && isFirst) {
      const bx = bindRange(t.bias, t.bias.offset + ch.n0, t.bias.offset + ch.n1 - 1);
      biasOff = t.bias.offset + ch.n0 - bx.start;
      bindings.push(bx.binding);
    }
    bindings.push(bc.binding);
    dispatch(
      matmulTextureKernel(
        isFirst
          ? { bias: !!t.bias, beta: t.beta !== 0, bRowMajor }
          : { bias: false, beta: true, bRowMajor },
        rt,
      ),
      bindings,
      MATMUL_TEXTURE_UNIFORMS.pack({
        M: mr,
        N: nr,
        K4: width,
        zBase: ch.z0,
        aRows: aBatched ? mr : 0,
        bRows: bBatched ? (bRowMajor ? 4 * width : nr) : 0,
        cOff: p.c.off + ch.m0 * N + ch.n0 - bc.start,
        ldc: N,
        biasOff,
        nb1: d1.n,
        sc0: d0.sc,
        sc1: d1.sc,
        alpha: t.alpha,
        beta: isFirst ? t.beta : 1,
      }),
      [Math.ceil(nr / tileN), Math.ceil(mr / tileM), nz],
    );
    releaseTexture(ta);
    releaseTexture(tb);
  }
}
