/**
 * Batched matrix multiply C = alpha·A·B (+ beta·C) (+ bias over N), for strided operands.
 *
 * A is [M, K] either row-major (K contiguous) or transposed (M contiguous, i.e. a transposed view
 * of [K, M] storage); B likewise [K, N] or transposed. The layout is part of the kernel key so the
 * inner loop reads each operand along its contiguous dimension (as vec4 when aligned). Batches are
 * decomposed over two batch dims with their own strides (stride 0 = broadcast).
 *
 * Two variants:
 * - `register`: no workgroup memory; each thread accumulates a TM×TN block in registers reading
 *   straight from storage. On CPU rasterisers (lavapipe) memory is cache, barriers are expensive
 *   and this is the fastest form.
 * - `tiled`: workgroups stage BK-deep slices of A and B in workgroup memory (the classic GPU
 *   shape), so each global element is read once per workgroup instead of once per thread.
 *
 * Edge tiles: the register variant clamps row/column indices into range (loads stay valid, the
 * extra results are never written) so the inner loop has no branches; the tiled variant
 * zero-fills out-of-range elements of its shared tiles.
 */
import type { Kernel } from "./kernel.ts";
import { LOOP_BUDGET } from "./common.ts";
import { uniforms } from "./uniforms.ts";
import {
  type ChannelEpilogue,
  epilogueChannel,
  epilogueExpr,
  NO_EPILOGUE,
} from "./conv/epilogue.ts";

/** `texture`: operands staged in textures first (kernels/matmul_texture.ts, software adapters). */
export type MatmulVariant = "register" | "tiled" | "texture";

export interface MatmulSpec {
  variant: MatmulVariant;
  /** A is a transposed view: element (m, k) at m + k·lda. */
  transA: boolean;
  /** B is a transposed view: element (k, n) at k + n·ldb. */
  transB: boolean;
  /** Read A / B as vec4 along their contiguous dim (caller checked alignment). */
  vecA: boolean;
  vecB: boolean;
  /** Add bias[biasOff + n]. */
  bias: boolean;
  /** Read C first and add beta·C. */
  beta: boolean;
}

/** Register variant tile: threads per workgroup (WX×WY), outputs per thread (TM×TN). */
export interface RegisterTile {
  wx: number;
  wy: number;
  tm: number;
  tn: number;
}

/**
 * Default register tile, tuned on llvmpipe (see BENCHMARKS.md): there every storage load is a
 * per-lane loop, so outputs per load (TM·TN / (TM + TN)) matter most; spilled accumulators are
 * cheap stack traffic by comparison.
 */
export const REGISTER_TILE: RegisterTile = { wx: 8, wy: 8, tm: 12, tn: 12 };
/** For thin problems (M or N below half a big tile) where a 96-wide tile would mostly idle. */
export const REGISTER_TILE_SMALL: RegisterTile = { wx: 8, wy: 8, tm: 4, tn: 4 };
/** Any variant's tile with its extras (tiled: `bk`; texture: `ku`, `order`), for names. */
export interface AnyMatmulTile extends RegisterTile {
  bk?: number;
  ku?: 1 | 2;
  order?: "k" | "acc";
}

/** A tile's name in kernel keys, cache files and tables: `WXxWYxTMxTN[/bkN][/kuN][/acc]`. */
export function matmulTileName(t: AnyMatmulTile): string {
  return `${t.wx}x${t.wy}x${t.tm}x${t.tn}${t.bk ? `/bk${t.bk}` : ""}${
    (t.ku ?? 1) > 1 ? `/ku${t.ku}` : ""
  }${t.order === "acc" ? "/acc" : ""}`;
}

/** Tiled variant tile: threads WX×WY, outputs TM×TN per thread, BK-deep shared slices. */
export interface TiledTile extends RegisterTile {
  bk: number;
}

/** Tiled variant's default: 16×16 threads, 4×4 outputs each, 16-deep slices (a 64×64 tile). */
export const TILED_TILE: TiledTile = { wx: 16, wy: 16, tm: 4, tn: 4, bk: 16 };

/** Throws unless the tiled kernel can be generated for `t` (see {@link tiledWgsl}). */
export function checkTiledTile(t: TiledTile): void {
  const nt = t.wx * t.wy, bm = t.wy * t.tm, bn = t.wx * t.tn;
  const why = t.tm % 4 || t.tn % 4
    ? "TM and TN must be multiples of 4"
    : (bm * t.bk) % nt || (bn * t.bk) % nt
    ? "each thread must load a whole number of elements of each shared slice"
    : nt > 256
    ? "at most 256 threads per workgroup"
    : (bm + bn) * t.bk * 4 > 16384
    ? "shared slices over 16 KiB"
    : "";
  if (why) throw new Error(`matmul: tiled tile ${JSON.stringify(t)}: ${why}`);
}

/**
 * Longest K one dispatch may loop over within the per-invocation loop budget (kernels/common.ts):
 * the register variant runs a header per 4 of K (plus the K % 4 tail), the tiled one
 * 1 + (aLoads + 1) + (bLoads + 1) + (BK + 1) headers per BK of K. A multiple of 256 (the K split
 * step of the op's chunk planner).
 */
export function matmulMaxK(variant: MatmulVariant, tt: TiledTile = TILED_TILE): number {
  const { wx, wy, tm, tn, bk } = tt;
  const perTile = 4 + ((wy * tm + wx * tn) * bk) / (wx * wy) + bk;
  const k = variant === "register" ? 4 * (LOOP_BUDGET - 8) : Math.floor(LOOP_BUDGET / perTile) * bk;
  return Math.floor(k / 256) * 256;
}

/** Rows/columns of C covered by one workgroup with tile `rt` (the tiled default for "tiled"). */
export function matmulTileSize(
  variant: MatmulVariant,
  rt: RegisterTile = variant === "tiled" ? TILED_TILE : REGISTER_TILE,
): { m: number; n: number } {
  return { m: rt.wy * rt.tm, n: rt.wx * rt.tn };
}

/** The tiled tile to use for `rt`: itself when it has a slice depth, else the default. */
export function asTiledTile(rt: RegisterTile | null | undefined): TiledTile {
  return rt && "bk" in rt && typeof rt.bk === "number" ? rt as TiledTile : TILED_TILE;
}

/**
 * Uniform block (20 scalars): sizes, the chunk's first batch index, element offsets relative to
 * each binding, leading dims, the inner batch dim's size, per-operand batch strides, alpha, beta.
 * Offsets are u32 and may wrap: `aOff + batch offset` is exact modulo 2^32.
 */
/**
 * An M×N×K chunk from batch zBase on; A, B, C element offsets and leading dims, the bias offset;
 * nb1 and the two batch strides of each operand (sa0, sa1, ...); alpha, beta.
 */
export const MATMUL_UNIFORMS = uniforms({
  M: "u32",
  N: "u32",
  K: "u32",
  zBase: "u32",
  aOff: "u32",
  lda: "u32",
  bOff: "u32",
  ldb: "u32",
  cOff: "u32",
  ldc: "u32",
  biasOff: "u32",
  nb1: "u32",
  sa0: "u32",
  sa1: "u32",
  sb0: "u32",
  sb1: "u32",
  sc0: "u32",
  sc1: "u32",
  alpha: "f32",
  beta: "f32",
});
const PARAMS = MATMUL_UNIFORMS.wgsl("P");

function header(s: MatmulSpec): string {
  let b = `${PARAMS}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> A: array<${s.vecA ? "vec4<f32>" : "f32"}>;
@group(0) @binding(2) var<storage, read> B: array<${s.vecB ? "vec4<f32>" : "f32"}>;
`;
  let n = 3;
  if (s.bias) b += `@group(0) @binding(${n++}) var<storage, read> bias: array<f32>;\n`;
  b += `@group(0) @binding(${n}) var<storage, read_write> C: array<f32>;
fn ldA(i: u32) -> f32 { ${s.vecA ? "return A[i >> 2u][i & 3u];" : "return A[i];"} }
fn ldB(i: u32) -> f32 { ${s.vecB ? "return B[i >> 2u][i & 3u];" : "return B[i];"} }
`;
  return b;
}

/**
 * Epilogue for one output element `v` at (row, col): alpha, beta, bias, then the per-channel
 * epilogue `ep` (kernels/conv/epilogue.ts) with channel `ch`.
 */
function store(
  s: Pick<MatmulSpec, "bias" | "beta">,
  v: string,
  ep: ChannelEpilogue = NO_EPILOGUE,
  pre = "",
): string {
  let e = `u.alpha * ${v}`;
  if (s.beta) e += ` + u.beta * C[ci]`;
  if (s.bias) e += ` + bias[u.biasOff + col]`;
  return `C[ci] = ${epilogueExpr(ep, e, "", "ci", pre)};`;
}

/** Key of a spec and its tile. */
function matmulKey(s: MatmulSpec, rt: RegisterTile): string {
  const tile = `${rt.wx}x${rt.wy}x${rt.tm}x${rt.tn}` +
    (s.variant === "tiled" ? `x${asTiledTile(rt).bk}` : "");
  return `matmul/${s.variant}/${tile}/${s.transA ? "t" : "n"}${s.transB ? "t" : "n"}/` +
    `${s.vecA ? "v" : "s"}${s.vecB ? "v" : "s"}/${s.bias ? "bias" : ""}${s.beta ? "beta" : ""}`;
}

/**
 * The kernel of a spec. `rt`: the register tile (register variant, default {@link REGISTER_TILE})
 * or the tiled tile (tiled variant: a {@link TiledTile}, else {@link TILED_TILE}).
 */
export function matmulKernel(s: MatmulSpec, rt?: RegisterTile): Kernel {
  if (s.variant === "tiled") {
    const tt = asTiledTile(rt);
    checkTiledTile(tt);
    return { key: matmulKey(s, tt), wgsl: () => tiledWgsl(s, tt) };
  }
  const reg = rt ?? REGISTER_TILE;
  if (reg.tn % 4 || reg.tm % 4) {
    throw new Error(`matmul: register tile ${JSON.stringify(reg)} needs TM, TN multiples of 4`);
  }
  return { key: matmulKey(s, reg), wgsl: () => registerWgsl(s, reg) };
}

/** Tile rows per band in the register variant's workgroup order. */
const SWIZZLE = 8;

const BATCH = /* wgsl */ `
  let zz = u.zBase + wg.z;
  let z0 = zz / u.nb1;
  let z1 = zz % u.nb1;
  let aB = u.aOff + z0 * u.sa0 + z1 * u.sa1;
  let bB = u.bOff + z0 * u.sb0 + z1 * u.sb1;
  let cB = u.cOff + z0 * u.sc0 + z1 * u.sc1;`;

/**
 * WGSL binding `row0`/`col0`, this thread's first output row and column, returning early past the
 * edge. Tiles are visited in bands of SWIZZLE tile rows, column by column: workgroups that run
 * close in time share A rows and B columns in cache. Needs `wg`, `lid`, `nwg` and `u.M`, `u.N`.
 */
export function bandedBlock(rt: RegisterTile): string {
  const { wx, wy, tm, tn } = rt;
  return `  let lin = wg.y * nwg.x + wg.x;
  let band = lin / (${SWIZZLE}u * nwg.x);
  let bh = min(${SWIZZLE}u, nwg.y - band * ${SWIZZLE}u);
  let inBand = lin - band * ${SWIZZLE}u * nwg.x;
  let ty = band * ${SWIZZLE}u + inBand % bh;
  let tx = inBand / bh;
  let row0 = (ty * ${wy}u + lid.y) * ${tm}u;
  let col0 = (tx * ${wx}u + lid.x) * ${tn}u;
  if (row0 >= u.M || col0 >= u.N) { return; }`;
}

/**
 * WGSL storing a thread's TM×TN block (vec4 accumulators `c<i>_<g>`) at `cB` + row·ldc + col, in
 * range only, through the epilogue (alpha, beta, bias, then `ep` with the channel along the rows:
 * a conv forward GEMM's rows are its output channels; the residual is read at the same index `ci`
 * of its own binding).
 */
export function storeBlock(
  s: Pick<MatmulSpec, "bias" | "beta">,
  TM: number,
  TN: number,
  ep: ChannelEpilogue = NO_EPILOGUE,
): string {
  const W: string[] = [];
  for (let i = 0; i < TM; i++) {
    W.push(`  if (row0 + ${i}u < u.M) {`);
    W.push(`    let crow = cB + (row0 + ${i}u) * u.ldc;`);
    const chan = epilogueChannel(ep, `row0 + ${i}u`, `ep${i}`);
    if (chan) W.push(`    ${chan}`);
    for (let g = 0; g < TN / 4; g++) {
      for (let l = 0; l < 4; l++) {
        const j = 4 * g + l;
        W.push(
          `    if (col0 + ${j}u < u.N) { let col = col0 + ${j}u; let ci = crow + col; ${
            store(s, `c${i}_${g}[${l}]`, ep, `ep${i}`)
          } }`,
        );
      }
    }
    W.push(`  }`);
  }
  return W.join("\n");
}

function registerWgsl(s: MatmulSpec, rt: RegisterTile): string {
  const { wx, wy, tm: TM, tn: TN } = rt;
  const G = TN / 4; // vec4 accumulators per row
  const rows = [...Array(TM).keys()], groups = [...Array(G).keys()], kks = [0, 1, 2, 3];
  // Base addresses, clamped into range: per row / column, or per vec4 group along a contiguous
  // dim (the dim is a multiple of 4 then, so a group is wholly in range or wholly out).
  const P: string[] = [];
  for (const i of rows) P.push(`  let r${i} = min(row0 + ${i}u, u.M - 1u);`);
  if (!s.transA) { for (const i of rows) P.push(`  let ra${i} = aB + r${i} * u.lda;`); }
  else if (s.vecA) {
    for (let g = 0; g < TM / 4; g++) {
      P.push(`  let ga${g} = aB + min(row0 + ${4 * g}u, u.M - 4u);`);
    }
  } else for (const i of rows) P.push(`  let ra${i} = aB + r${i};`);
  for (let j = 0; j < TN; j++) P.push(`  let n${j} = min(col0 + ${j}u, u.N - 1u);`);
  if (s.transB) { for (let j = 0; j < TN; j++) P.push(`  let cb${j} = bB + n${j} * u.ldb;`); }
  else if (s.vecB) {
    for (const g of groups) P.push(`  let gb${g} = bB + min(col0 + ${4 * g}u, u.N - 4u);`);
  } else for (let j = 0; j < TN; j++) P.push(`  let cb${j} = bB + n${j};`);

  // Main loop body over 4 k values: a(i, kk) scalars and b(kk, g) vec4 rows.
  const B: string[] = [];
  const a: string[][] = rows.map(() => []);
  if (!s.transA && s.vecA) {
    for (const i of rows) {
      B.push(`    let va${i} = A[(ra${i} + k) >> 2u];`);
      for (const kk of kks) a[i][kk] = `va${i}[${kk}]`;
    }
  } else if (!s.transA) {
    for (const i of rows) {
      for (const kk of kks) {
        B.push(`    let a${i}_${kk} = A[ra${i} + k + ${kk}u];`);
        a[i][kk] = `a${i}_${kk}`;
      }
    }
  } else {
    for (const kk of kks) {
      B.push(`    let pa${kk} = (k + ${kk}u) * u.lda;`);
      if (s.vecA) {
        for (let g = 0; g < TM / 4; g++) {
          B.push(`    let va${kk}_${g} = A[(ga${g} + pa${kk}) >> 2u];`);
        }
        for (const i of rows) a[i][kk] = `va${kk}_${Math.floor(i / 4)}[${i % 4}]`;
      } else {
        for (const i of rows) {
          B.push(`    let a${i}_${kk} = A[ra${i} + pa${kk}];`);
          a[i][kk] = `a${i}_${kk}`;
        }
      }
    }
  }
  const b: string[][] = kks.map(() => []);
  if (!s.transB) {
    for (const kk of kks) {
      B.push(`    let pb${kk} = (k + ${kk}u) * u.ldb;`);
      for (const g of groups) {
        const e = s.vecB
          ? `B[(gb${g} + pb${kk}) >> 2u]`
          : `vec4<f32>(${[0, 1, 2, 3].map((l) => `B[cb${4 * g + l} + pb${kk}]`).join(", ")})`;
        B.push(`    let b${kk}_${g} = ${e};`);
        b[kk][g] = `b${kk}_${g}`;
      }
    }
  } else {
    for (let j = 0; j < TN; j++) {
      B.push(
        s.vecB
          ? `    let vb${j} = B[(cb${j} + k) >> 2u];`
          : `    let vb${j} = vec4<f32>(B[cb${j} + k], B[cb${j} + k + 1u], B[cb${j} + k + 2u], B[cb${j} + k + 3u]);`,
      );
    }
    for (const kk of kks) {
      for (const g of groups) {
        B.push(
          `    let b${kk}_${g} = vec4<f32>(${
            [0, 1, 2, 3].map((l) => `vb${4 * g + l}[${kk}]`).join(", ")
          });`,
        );
        b[kk][g] = `b${kk}_${g}`;
      }
    }
  }
  for (const kk of kks) {
    for (const i of rows) {
      for (const g of groups) B.push(`    c${i}_${g} += ${a[i][kk]} * ${b[kk][g]};`);
    }
  }

  // Tail (K % 4) with scalar loads at the clamped indices.
  const T: string[] = [];
  for (const i of rows) {
    T.push(`    let ta${i} = ldA(aB + ${s.transA ? `k * u.lda + r${i}` : `r${i} * u.lda + k`});`);
  }
  for (let j = 0; j < TN; j++) {
    T.push(`    let tb${j} = ldB(bB + ${s.transB ? `n${j} * u.ldb + k` : `k * u.ldb + n${j}`});`);
  }
  for (const g of groups) {
    T.push(`    let tv${g} = vec4<f32>(${[0, 1, 2, 3].map((l) => `tb${4 * g + l}`).join(", ")});`);
  }
  for (const i of rows) for (const g of groups) T.push(`    c${i}_${g} += ta${i} * tv${g};`);

  const acc = rows.flatMap((i) => groups.map((g) => `  var c${i}_${g} = vec4<f32>(0.0);`)).join(
    "\n",
  );
  return `${header(s)}
@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  ${BATCH}
${bandedBlock(rt)}
${P.join("\n")}
${acc}
  let K4 = u.K & ~3u;
  for (var k = 0u; k < K4; k += 4u) {
${B.join("\n")}
  }
  for (var k = K4; k < u.K; k++) {
${T.join("\n")}
  }
${storeBlock(s, TM, TN)}
}`;
}

function tiledWgsl(s: MatmulSpec, tt: TiledTile): string {
  const { wx, wy, tm, tn, bk } = tt;
  const G = tn / 4; // vec4 accumulators per output row
  const BM = wy * tm, BN = wx * tn, NT = wx * wy;
  // Shared tiles, k-major, as vec4 of 4 consecutive rows (A) / columns (B).
  const aLoads = (BM * bk) / NT; // elements per thread
  const bLoads = (BN * bk) / NT;
  const aIdx = s.transA ? "aB + gk * u.lda + gm" : "aB + gm * u.lda + gk";
  const bIdx = s.transB ? "bB + gn * u.ldb + gk" : "bB + gk * u.ldb + gn";
  // Thread t loads elements e = t + NT·q of the tile; the order makes consecutive threads read
  // consecutive addresses along the operand's contiguous dim.
  const loadA = s.transA
    ? `let e = t + ${NT}u * q; let lm = e % ${BM}u; let lk = e / ${BM}u;`
    : `let e = t + ${NT}u * q; let lk = e % ${bk}u; let lm = e / ${bk}u;`;
  const loadB = s.transB
    ? `let e = t + ${NT}u * q; let lk = e % ${bk}u; let ln = e / ${bk}u;`
    : `let e = t + ${NT}u * q; let ln = e % ${BN}u; let lk = e / ${BN}u;`;
  // Per kk: TM values of A (vec4 groups of 4 rows), TN of B (vec4 groups of 4 columns).
  const inner: string[] = [];
  const q4 = (arr: string, base: string, o: number) =>
    `vec4<f32>(${[0, 1, 2, 3].map((l) => `${arr}[${base} + ${o + l}u]`).join(", ")})`;
  for (let g = 0; g < tm / 4; g++) inner.push(`      let a${g} = ${q4("As", "ab", 4 * g)};`);
  for (let g = 0; g < G; g++) inner.push(`      let b${g} = ${q4("Bs", "bb", 4 * g)};`);
  for (let i = 0; i < tm; i++) {
    for (let g = 0; g < G; g++) {
      inner.push(`      acc[${i * G + g}] += a${Math.floor(i / 4)}[${i % 4}] * b${g};`);
    }
  }
  const W: string[] = [];
  for (let i = 0; i < tm; i++) {
    W.push(`  if (row0 + ${i}u < u.M) {`);
    W.push(`    let crow = cB + (row0 + ${i}u) * u.ldc;`);
    for (let l = 0; l < tn; l++) {
      W.push(
        `    { let col = col0 + ${l}u; if (col < u.N) { let ci = crow + col; ${
          store(s, `acc[${i * G + Math.floor(l / 4)}][${l % 4}]`)
        } } }`,
      );
    }
    W.push(`  }`);
  }
  return `${header(s)}
var<workgroup> As: array<f32, ${BM * bk}>;
var<workgroup> Bs: array<f32, ${BN * bk}>;
@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${BATCH}
  let t = lid.y * ${wx}u + lid.x;
  let m0 = wg.y * ${BM}u;
  let n0 = wg.x * ${BN}u;
  let row0 = m0 + lid.y * ${tm}u;
  let col0 = n0 + lid.x * ${tn}u;
  var acc: array<vec4<f32>, ${tm * G}>;
  for (var kt = 0u; kt < u.K; kt += ${bk}u) {
    for (var q = 0u; q < ${aLoads}u; q++) {
      ${loadA}
      let gm = m0 + lm; let gk = kt + lk;
      var v = 0.0;
      if (gm < u.M && gk < u.K) { v = ldA(${aIdx}); }
      As[lk * ${BM}u + lm] = v;
    }
    for (var q = 0u; q < ${bLoads}u; q++) {
      ${loadB}
      let gn = n0 + ln; let gk = kt + lk;
      var v = 0.0;
      if (gn < u.N && gk < u.K) { v = ldB(${bIdx}); }
      Bs[lk * ${BN}u + ln] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${bk}u; kk++) {
      let ab = kk * ${BM}u + lid.y * ${tm}u;
      let bb = kk * ${BN}u + lid.x * ${tn}u;
${inner.join("\n")}
    }
    workgroupBarrier();
  }
${W.join("\n")}
}`;
}
