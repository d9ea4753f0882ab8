/**
 * Matmul through read-only storage textures, for software adapters.
 *
 * On llvmpipe a storage-buffer load is a per-lane loop with a branch per component, while a
 * storage-texture load is a branch-free gather: ~2.7× more loads per second (measured in
 * BENCHMARKS.md). A register-blocked matmul there is bound by its loads, so it runs faster when
 * both operands are first staged ("packed") into rgba32float textures, one row per matrix row (of
 * A) or column (of B), four consecutive k per texel, zero-padded past K. Packing reads each
 * element once; the product then reads only textures.
 *
 * - `matmulPackKernel`: writes rows × ⌈K/4⌉ texels of a strided operand (any strides, batches
 *   stacked as row blocks) into a texture.
 * - `matmulTextureKernel`: C = alpha·A·B (+ beta·C) (+ bias) with TM×TN outputs per thread and the
 *   epilogue of kernels/matmul.ts; rows of A (columns of B) are clamped into range so the loop has
 *   no branches.
 */
import type { Kernel } from "./kernel.ts";
import { bandedBlock, matmulTileName, type RegisterTile, storeBlock } from "./matmul.ts";
import { uniforms } from "./uniforms.ts";
import {
  type ChannelEpilogue,
  epilogueBindingCount,
  epilogueDecls,
  epilogueKey,
  NO_EPILOGUE,
} from "./conv/epilogue.ts";

/**
 * Product uniforms: an M×N chunk over K4 texels from batch zBase on; texture rows per batch of A
 * and B (0: shared by every batch); C's offset and leading dim; the bias offset; nb1 and C's batch
 * strides; alpha, beta.
 */
export const MATMUL_TEXTURE_UNIFORMS = uniforms({
  M: "u32",
  N: "u32",
  K4: "u32",
  zBase: "u32",
  aRows: "u32",
  bRows: "u32",
  cOff: "u32",
  ldc: "u32",
  biasOff: "u32",
  nb1: "u32",
  sc0: "u32",
  sc1: "u32",
  alpha: "f32",
  beta: "f32",
});

/** Threads per workgroup of the pack kernel: 16 texels across, 4 rows down. */
export const PACK_WG = { x: 16, y: 4 } as const;

/**
 * Pack uniforms: texture rows per batch, K, texels per row, first batch, element offset, row and
 * k strides, inner batch dim size, batch strides, texture height; `kRows`: only for the row-major
 * pack ({@link matmulPackRowMajorKernel}), where `rows` is the padded K, `K` the column count, `si`
 * the stride along k, `sj` along the columns and `kRows` the valid k.
 */
export const MATMUL_PACK_UNIFORMS = uniforms({
  rows: "u32",
  K: "u32",
  width: "u32",
  zBase: "u32",
  off: "u32",
  si: "u32",
  sj: "u32",
  nb1: "u32",
  s0: "u32",
  s1: "u32",
  height: "u32",
  kRows: "u32",
});

/** How every matmul pack kernel opens: uniforms, the operand X, the texture T, the entry point. */
function packHead(): string {
  return `${MATMUL_PACK_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var T: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(${PACK_WG.x}, ${PACK_WG.y})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {`;
}

/**
 * Which way a pack workgroup's lanes run: along k (`"k"`, texels of one row) or along the rows
 * (`"rows"`). On llvmpipe the lanes of a storage-buffer load fetch one after another, so lanes that
 * walk the operand's contiguous dim read one cache line where the other way reads one line each:
 * rows when the row stride is the smaller (B's columns of a row-major B), k otherwise.
 */
export type PackLanes = "k" | "rows";

/**
 * Packs operand rows into a texture (uniforms: {@link MATMUL_PACK_UNIFORMS}). `batched`: the
 * texture stacks one block of `rows` per batch (batch strides applied); without it the operand is
 * one matrix (the texture's height is its row count) and the kernel skips the four integer
 * divisions by uniforms per texel that locate a batch (scalarised per lane on CPU rasterisers).
 */
export function matmulPackKernel(lanes: PackLanes = "k", batched = true): Kernel {
  const [j, r] = lanes === "rows" ? ["gid.y", "gid.x"] : ["gid.x", "gid.y"];
  const base = batched
    ? `let z = u.zBase + r / u.rows;
  let base = u.off + (z / u.nb1) * u.s0 + (z % u.nb1) * u.s1 + (r % u.rows) * u.si;`
    : `let base = u.off + r * u.si;`;
  return {
    key: `matmul/pack-texture${lanes === "rows" ? "/rows" : ""}${batched ? "" : "/flat"}`,
    wgsl: () =>
      /* wgsl */ `${packHead()}
  let j = ${j};
  let r = ${r};
  if (j >= u.width || r >= u.height) { return; }
  ${base}
  let k = 4u * j;
  var v = vec4<f32>(0.0);
  if (k < u.K) { v.x = X[base + k * u.sj]; }
  if (k + 1u < u.K) { v.y = X[base + (k + 1u) * u.sj]; }
  if (k + 2u < u.K) { v.z = X[base + (k + 2u) * u.sj]; }
  if (k + 3u < u.K) { v.w = X[base + (k + 3u) * u.sj]; }
  textureStore(T, vec2<u32>(j, r), v);
}`,
  };
}

/**
 * Packs B row-major for the bRowMajor product kernels (see `TextureMatmulSpec.bRowMajor`): texel
 * (n/4, k) holds B[k, n..n+3], zero past the columns and past K (`rows` = K padded to 4 per batch
 * block). Lanes walk the columns, so a lane group reads contiguous memory where B's rows are.
 * `batched` as in {@link matmulPackKernel}. Uniforms: {@link MATMUL_PACK_UNIFORMS}.
 */
export function matmulPackRowMajorKernel(batched = true): Kernel {
  const base = batched
    ? `let z = u.zBase + y / u.rows;
  let k = y % u.rows;
  let base = u.off + (z / u.nb1) * u.s0 + (z % u.nb1) * u.s1 + k * u.si;`
    : `let k = y;
  let base = u.off + k * u.si;`;
  return {
    key: `matmul/pack-texture-row-major${batched ? "" : "/flat"}`,
    wgsl: () =>
      /* wgsl */ `${packHead()}
  let x = gid.x;
  let y = gid.y;
  if (x >= u.width || y >= u.height) { return; }
  ${base}
  let n = 4u * x;
  var v = vec4<f32>(0.0);
  if (k < u.kRows) {
    if (n < u.K) { v.x = X[base + n * u.sj]; }
    if (n + 1u < u.K) { v.y = X[base + (n + 1u) * u.sj]; }
    if (n + 2u < u.K) { v.z = X[base + (n + 2u) * u.sj]; }
    if (n + 3u < u.K) { v.w = X[base + (n + 3u) * u.sj]; }
  }
  textureStore(T, vec2<u32>(x, y), v);
}`,
  };
}

/** The pack grid: texels × rows, or rows × texels with lanes along the rows. */
export function matmulPackGrid(lanes: PackLanes, width: number, height: number): [number, number] {
  return lanes === "rows"
    ? [Math.ceil(height / PACK_WG.x), Math.ceil(width / PACK_WG.y)]
    : [Math.ceil(width / PACK_WG.x), Math.ceil(height / PACK_WG.y)];
}

/**
 * A texture-matmul tile: threads WX×WY, outputs TM×TN per thread, plus the loop shape. `ku`: texels
 * of K (4 k each) per loop iteration (1 or 2); `order`: "k" issues the multiply-adds k-major (every
 * accumulator once per k, the original form), "acc" accumulator-major (each accumulator's 4·ku
 * multiply-adds in a row, so a spilled accumulator is presumably reloaded once per iteration, not
 * once per k: 12–25% less CPU time on llvmpipe). Every form adds each output's products in the same
 * k order, so all tiles give bitwise the same result (tests/ops/matmul_test.ts checks every
 * candidate).
 */
export interface TextureTile extends RegisterTile {
  ku?: 1 | 2;
  order?: "k" | "acc";
}

/**
 * Default tile (threads WX×WY, outputs TM×TN, accumulator-major), measured on llvmpipe
 * (BENCHMARKS.md "Autotuning": 12–25% less CPU time per product than 12×12 k-major at 1024³,
 * 2048³, ViT qkv and [4096, 256, 1024]); the autotuner may choose another per shape class.
 */
export const TEXTURE_TILE: TextureTile = { wx: 8, wy: 8, tm: 16, tn: 16, order: "acc" };
/**
 * For products whose N fits half the default tile's width (64, e.g. attention's probabilities ×
 * values with 64-wide heads): 128×64 tiles waste no columns (2 × [4096, 64, 4096] on llvmpipe:
 * 560 ms CPU against 770 for the default tile; BENCHMARKS.md "Autotuning").
 */
export const TEXTURE_TILE_NARROW: TextureTile = { wx: 8, wy: 8, tm: 16, tn: 8, order: "acc" };
/** For thin problems (M or N below half a big tile). */
export const TEXTURE_TILE_SMALL: TextureTile = { wx: 8, wy: 8, tm: 4, tn: 4 };

export interface TextureMatmulSpec {
  bias: boolean;
  beta: boolean;
  /**
   * B staged row-major: texel (n/4, k) holds B[k, n..n+3] (a row-major B copied as it is,
   * engine/ops/matmul_texture.ts), K rows per batch, instead of one texture row per column of B.
   * The multiply-adds and their order are the same, so the results are bitwise the same.
   */
  bRowMajor?: boolean;
}

/** WGSL of one loop iteration over `ku` texels starting at texel `k` (see {@link TextureTile}). */
function productBody(rt: TextureTile, ku: number, bRowMajor = false): string {
  const { tm: TM, tn: TN } = rt;
  const rows = [...Array(TM).keys()], cols = [...Array(TN).keys()];
  const groups = [...Array(TN / 4).keys()], texels = [...Array(ku).keys()];
  const body: string[] = [];
  for (const t of texels) {
    const k = t ? `k + ${t}u` : "k";
    for (const i of rows) {
      body.push(`    let va${t}_${i} = textureLoad(TA, vec2<u32>(${k}, ra${i}));`);
    }
    if (bRowMajor) continue;
    for (const j of cols) {
      body.push(`    let vb${t}_${j} = textureLoad(TB, vec2<u32>(${k}, rb${j}));`);
    }
  }
  const a = (t: number, i: number, kk: number) => `va${t}_${i}[${kk}]`;
  const b = (t: number, kk: number, g: number) => `b${t}_${kk}_${g}`;
  for (const t of texels) {
    for (const kk of [0, 1, 2, 3]) {
      for (const g of groups) {
        if (bRowMajor) {
          const k = t ? `k + ${t}u` : "k";
          body.push(
            `    let ${
              b(t, kk, g)
            } = textureLoad(TB, vec2<u32>(gb${g}, bB + 4u * (${k}) + ${kk}u));`,
          );
          continue;
        }
        body.push(
          `    let ${b(t, kk, g)} = vec4<f32>(${
            [0, 1, 2, 3].map((l) => `vb${t}_${4 * g + l}[${kk}]`).join(", ")
          });`,
        );
      }
    }
  }
  const steps = texels.flatMap((t) => [0, 1, 2, 3].map((kk) => [t, kk]));
  if (rt.order === "acc") {
    for (const i of rows) {
      for (const g of groups) {
        for (const [t, kk] of steps) {
          body.push(`    c${i}_${g} += ${a(t, i, kk)} * ${b(t, kk, g)};`);
        }
      }
    }
  } else {
    for (const [t, kk] of steps) {
      for (const i of rows) {
        for (const g of groups) body.push(`    c${i}_${g} += ${a(t, i, kk)} * ${b(t, kk, g)};`);
      }
    }
  }
  return body.join("\n");
}

/**
 * Uniform block: M, N (of the chunk), texels along K, first batch; texture rows per batch of A
 * and B (0: one copy shared by every batch); C's offset and leading dim, the bias offset, inner
 * batch size, C's batch strides, alpha, beta. `ep`: a per-row-channel epilogue after the bias
 * (kernels/conv/epilogue.ts; the conv forward GEMM's rows are output channels), its bindings
 * between the bias and C.
 */
export function matmulTextureKernel(
  s: TextureMatmulSpec,
  rt: TextureTile,
  ep: ChannelEpilogue = NO_EPILOGUE,
): Kernel {
  const { wx, wy, tm: TM, tn: TN } = rt;
  const ku = rt.ku ?? 1;
  if (TN % 4) throw new Error(`matmul (texture): TN must be a multiple of 4, got ${TN}`);
  if (ku !== 1 && ku !== 2) throw new Error(`matmul (texture): ku must be 1 or 2, got ${ku}`);
  const rows = [...Array(TM).keys()], cols = [...Array(TN).keys()];
  const groups = [...Array(TN / 4).keys()];
  // With two texels per iteration, an odd last texel runs through the one-texel body.
  const bRM = !!s.bRowMajor;
  const loop = ku === 1
    ? `  for (var k = 0u; k < u.K4; k++) {\n${productBody(rt, 1, bRM)}\n  }`
    : `  let K8 = u.K4 & ~1u;
  for (var k = 0u; k < K8; k += 2u) {\n${productBody(rt, 2, bRM)}\n  }
  for (var k = K8; k < u.K4; k++) {\n${productBody(rt, 1, bRM)}\n  }`;
  // Row-major B: a texel per 4 columns (TN is a multiple of 4, so col0 is), clamped into range;
  // else a texture row per column.
  const bCols = bRM
    ? groups.map((g) => `  let gb${g} = min(col0 / 4u + ${g}u, (u.N + 3u) / 4u - 1u);`)
    : cols.map((j) => `  let rb${j} = bB + min(col0 + ${j}u, u.N - 1u);`);
  let n = 3;
  const biasDecl = s.bias
    ? `@group(0) @binding(${n++}) var<storage, read> bias: array<f32>;\n`
    : "";
  const epDecl = epilogueDecls(ep, n);
  n += epilogueBindingCount(ep);
  return {
    key: `matmul/texture/${matmulTileName(rt)}/${s.bias ? "bias" : ""}${s.beta ? "beta" : ""}${
      bRM ? "/brows" : ""
    }${epilogueKey(ep)}`,
    wgsl: () =>
      /* wgsl */ `${MATMUL_TEXTURE_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var TA: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var TB: texture_storage_2d<rgba32float, read>;
${biasDecl}${epDecl}@group(0) @binding(${n}) var<storage, read_write> C: array<f32>;

@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let z = u.zBase + wg.z;
  let cB = u.cOff + (z / u.nb1) * u.sc0 + (z % u.nb1) * u.sc1;
  let aB = wg.z * u.aRows;
  let bB = wg.z * u.bRows;
${bandedBlock(rt)}
${rows.map((i) => `  let ra${i} = aB + min(row0 + ${i}u, u.M - 1u);`).join("\n")}
${bCols.join("\n")}
${rows.flatMap((i) => groups.map((g) => `  var c${i}_${g} = vec4<f32>(0.0);`)).join("\n")}
${loop}
${storeBlock(s, TM, TN, ep)}
}`,
  };
}
