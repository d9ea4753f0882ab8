/**
 * Attention scores q·kᵀ from textures, stored as vec4s, for software adapters (the composed
 * attention of engine/ops/attention_texture.ts).
 *
 * q and k are staged the way the texture matmul stages its operands (kernels/matmul_texture.ts:
 * one texture row per token, four consecutive head-dim values per texel, zero past d), so the
 * product reads only textures. The scores go to a buffer of vec4s, a row of N/4 per query (four
 * consecutive keys each): the layout the bias softmax (kernels/softmax_relbias.ts,
 * `softmaxRelBiasTextureKernel`) reads. With K = 64 only (a ViT-B head), the stores weigh: on
 * llvmpipe one vec4 buffer store per four scores cost 130 ms of CPU for a 4096² head where a
 * texel store cost 210 and one store in all 105 (BENCHMARKS.md "SAM attention through textures"),
 * and the texture matmul's store writes a scalar with a range check each.
 *
 * Slices (batch·heads, or windows·heads) are stacked: slice z's query rows start at texture row
 * z·M of q and score row z·M, its key rows at texture row z·N of k.
 */
import type { Kernel } from "../kernel.ts";
import { uniforms } from "../uniforms.ts";

/**
 * Queries M and keys N per slice, texels of the head dim; the first score's offset in S's
 * binding, in vec4s.
 */
export const SCORES_TEXTURE_UNIFORMS = uniforms({
  M: "u32",
  N: "u32",
  K4: "u32",
  sOff: "u32",
});

/** Threads wx × wy, each computing tm queries × tn keys (tn a multiple of 4). */
export interface ScoresTile {
  wx: number;
  wy: number;
  tm: number;
  tn: number;
}

/**
 * For 4096-token heads: 32×256 scores per workgroup, 8×16 per thread. A 4096² head on llvmpipe,
 * interleaved, load 12 (medians of 7, ms): 16×4 threads of 8×16 1284, 8×8 of 8×16 1443, 16×8 of
 * 8×8 1367, 8×8 of 16×16 1592, 8×8 of 16×8 1771, 8×8 of 8×8 1752 (noisy).
 */
export const SCORES_TILE_BIG: ScoresTile = { wx: 16, wy: 4, tm: 8, tn: 16 };
/** For short sequences (e.g. 14×14 windows): 32×32 per workgroup wastes less past N. */
export const SCORES_TILE_SMALL: ScoresTile = { wx: 8, wy: 8, tm: 4, tn: 4 };

/** The scores tile for M queries and N keys per slice. */
export function scoresTileFor(m: number, n: number): ScoresTile {
  return m >= 1024 && n >= 1024 ? SCORES_TILE_BIG : SCORES_TILE_SMALL;
}

/**
 * S[z·M + i, j] = Σ_c q[z, i, c]·k[z, j, c] (uniforms {@link SCORES_TEXTURE_UNIFORMS}; grid
 * [⌈N/(wx·tn)⌉, ⌈M/(wy·tm)⌉, slices]). Bindings: TQ, TK (read textures), S (array<vec4<f32>>,
 * N/4 a row). N must be a multiple of 4; rows of q and k past the slice are clamped, so the loop
 * has no branch, and only in-range scores are stored.
 */
export function scoresTextureKernel(t: ScoresTile): Kernel {
  const { wx, wy, tm, tn } = t;
  if (tn % 4 || tn < 4 || tm < 1 || wx < 1 || wy < 1) {
    throw new Error(`attention scores (texture): bad tile ${JSON.stringify(t)}`);
  }
  const rows = [...Array(tm).keys()], cols = [...Array(tn).keys()];
  const groups = [...Array(tn / 4).keys()], lanes = [0, 1, 2, 3];
  const body: string[] = [];
  for (const i of rows) body.push(`    let a${i} = textureLoad(TQ, vec2<u32>(k, ra${i}));`);
  for (const j of cols) body.push(`    let b${j} = textureLoad(TK, vec2<u32>(k, rb${j}));`);
  // bt<c>_<g>: component c of keys 4g..4g+3, so each accumulator takes a vec4 multiply-add.
  for (const c of lanes) {
    for (const g of groups) {
      body.push(
        `    let bt${c}_${g} = vec4<f32>(${lanes.map((l) => `b${4 * g + l}[${c}]`).join(", ")});`,
      );
    }
  }
  for (const i of rows) {
    for (const g of groups) {
      for (const c of lanes) body.push(`    s${i}_${g} += a${i}[${c}] * bt${c}_${g};`);
    }
  }
  const store = rows.map((i) =>
    `  if (row0 + ${i}u < u.M) {\n    let srow${i} = u.sOff + (sB + row0 + ${i}u) * n4 + col0 / 4u;\n${
      groups.map((g) => `    if (col0 + ${4 * g}u < u.N) { S[srow${i} + ${g}u] = s${i}_${g}; }`)
        .join("\n")
    }\n  }`
  ).join("\n");
  return {
    key: `attention/scores-texture/vec4-out-off/${wx}x${wy}x${tm}x${tn}`,
    wgsl: () =>
      /* wgsl */ `${SCORES_TEXTURE_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var TQ: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var TK: texture_storage_2d<rgba32float, read>;
@group(0) @binding(3) var<storage, read_write> S: array<vec4<f32>>;

@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row0 = gid.y * ${tm}u;
  let col0 = gid.x * ${tn}u;
  if (row0 >= u.M || col0 >= u.N) { return; }
  let sB = gid.z * u.M;
  let kB = gid.z * u.N;
  let n4 = u.N / 4u;
${rows.map((i) => `  let ra${i} = sB + min(row0 + ${i}u, u.M - 1u);`).join("\n")}
${cols.map((j) => `  let rb${j} = kB + min(col0 + ${j}u, u.N - 1u);`).join("\n")}
${rows.flatMap((i) => groups.map((g) => `  var s${i}_${g} = vec4<f32>(0.0);`)).join("\n")}
  for (var k = 0u; k < u.K4; k++) {
${body.join("\n")}
  }
${store}
}`,
  };
}
