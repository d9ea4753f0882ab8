/**
 * softmax(scale·s + relH ⊕ relW) along the last axis, where s is [rows, KH·KW] attention scores and the
 * bias of element k = kh·KW + kw is relH[row, kh] + relW[row, kw] (SAM's decomposed
 * relative-position bias). One kernel instead of building the bias (a strided add), adding it (a
 * flat add) and a three-pass softmax: a thread per row, each row read twice (online max and
 * sum-exp per KW-long run, then the write), the row's KW relW values held in registers.
 *
 * KW is baked in (the inner run is unrolled, as vec4 loads when KW and so the row are multiples
 * of 4), KH is a uniform. On llvmpipe, where this path runs, a thread per row beats a workgroup
 * per row: no barriers and one loop trip per vec4.
 */
import type { Kernel } from "./kernel.ts";
import { FLAT_INDEX } from "./common.ts";
import { uniforms } from "./uniforms.ts";

/** Longest KW the kernel unrolls. */
export const RELBIAS_MAX_KW = 128;
export const RELBIAS_WG = 64;

/**
 * `rows` score rows; KH, the height of the relative-position grid; `scale` multiplies the scores
 * (attention's d^-1/2, so q need not be scaled in a pass of its own).
 */
export const SOFTMAX_RELBIAS_UNIFORMS = uniforms({
  rows: "u32",
  KH: "u32",
  scale: "f32",
  _pad0: "u32",
});

/** Uniforms: rows, KH, scale. Bindings: s, relH [rows, KH], relW [rows, KW], out. */
export function softmaxRelBiasKernel(kw: number): Kernel {
  if (kw < 1 || kw > RELBIAS_MAX_KW) {
    throw new Error(`softmaxRelBias: KW must be 1..${RELBIAS_MAX_KW}, got ${kw}`);
  }
  const vec = kw % 4 === 0;
  return {
    key: `softmax/relbias/${kw}`,
    wgsl: () => {
      const n = vec ? kw / 4 : kw;
      const T = vec ? "vec4<f32>" : "f32";
      const idx = [...Array(n).keys()];
      const rw = idx.map((j) =>
        vec
          ? `  let w${j} = vec4<f32>(relW[wb + ${4 * j}u], relW[wb + ${4 * j + 1}u], relW[wb + ${
            4 * j + 2
          }u], relW[wb + ${4 * j + 3}u]);`
          : `  let w${j} = relW[wb + ${j}u];`
      ).join("\n");
      // v_j: the biased scores of run kh (base offset sb, in units of T).
      const loadRun = idx.map((j) => `    let v${j} = s[sb + ${j}u] * sc + w${j} + h;`).join("\n");
      const mx = vec
        ? idx.map((j) => `max(max(v${j}.x, v${j}.y), max(v${j}.z, v${j}.w))`)
        : idx.map(
          (j) => `v${j}`,
        );
      let runMax = mx[0];
      for (let j = 1; j < n; j++) runMax = `max(${runMax}, ${mx[j]})`;
      const sumExp = idx.map((j) =>
        vec ? `dot(exp(v${j} - ${T}(nm)), vec4<f32>(1.0))` : `exp(v${j} - nm)`
      ).join(" + ");
      const write = idx.map((j) => `    o[sb + ${j}u] = exp(v${j} - ${T}(m)) * inv;`).join("\n");
      return `${SOFTMAX_RELBIAS_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> s: array<${T}>;
@group(0) @binding(2) var<storage, read> relH: array<f32>;
@group(0) @binding(3) var<storage, read> relW: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<${T}>;
${FLAT_INDEX}
@compute @workgroup_size(${RELBIAS_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = flat_index(gid, nwg, ${RELBIAS_WG}u);
  if (row >= u.rows) { return; }
  let wb = row * ${kw}u;
  let sc = u.scale;
${rw}
  let rowBase = row * u.KH * ${n}u;
  var m = -3.402823e38;
  var l = 0.0;
  for (var kh = 0u; kh < u.KH; kh++) {
    let h = relH[row * u.KH + kh];
    let sb = rowBase + kh * ${n}u;
${loadRun}
    let nm = max(m, ${runMax});
    l = l * exp(m - nm) + ${sumExp};
    m = nm;
  }
  let inv = 1.0 / l;
  for (var kh = 0u; kh < u.KH; kh++) {
    let h = relH[row * u.KH + kh];
    let sb = rowBase + kh * ${n}u;
${loadRun}
${write}
  }
}`;
    },
  };
}

/** Longest period (lcm(KW, 4) keys) the texture variant unrolls. */
export const RELBIAS_TEXTURE_MAX_PERIOD = 256;

/**
 * Keys per unrolled period of {@link softmaxRelBiasTextureKernel}: lcm(KW, 4), so a period is
 * whole texels and whole KW-long runs; null when a row of KH·KW keys is not whole periods or the
 * period is longer than {@link RELBIAS_TEXTURE_MAX_PERIOD}.
 */
export function relBiasTexturePeriod(kh: number, kw: number): number | null {
  if (kw < 1 || kh < 1 || kw > RELBIAS_MAX_KW) return null;
  const p = kw % 4 === 0 ? kw : kw % 2 === 0 ? 2 * kw : 4 * kw;
  return p <= RELBIAS_TEXTURE_MAX_PERIOD && (kh * kw) % p === 0 ? p : null;
}

/**
 * Rows of this chunk; KH; the scale; the chunk's first row in relH/relW (row r of the textures is
 * row r0 + r of the bias terms); relH's and relW's element offsets in their bindings; vec4s
 * between output rows (the buffer sink: rows may be padded, e.g. to 256-byte multiples so a
 * texture matmul copies them; unused by the texture sink).
 */
export const SOFTMAX_RELBIAS_TEXTURE_UNIFORMS = uniforms({
  rows: "u32",
  KH: "u32",
  scale: "f32",
  r0: "u32",
  hOff: "u32",
  wOff: "u32",
  oRow: "u32",
});

/**
 * The bias softmax from scores (vec4s, a row per query, four keys each: `scoresTextureKernel`'s
 * output) into a probability texture, a row per query and four keys per texel: the layout of the
 * texture matmul's A operand (kernels/matmul_texture.ts), so the product with V needs no packing
 * pass. A thread per row, like {@link softmaxRelBiasKernel}; the loop runs over periods of
 * lcm(KW, 4) keys ({@link relBiasTexturePeriod}), unrolled, so any KW works whose row is whole
 * periods (ViT-B: 64, and 14 in the windows). Bindings: S (array<vec4<f32>>), relH [rows, KH] and
 * relW [rows, KW] (dense, at the element offsets in the uniforms), P (write texture).
 */
export function softmaxRelBiasTextureKernel(kh: number, kw: number): Kernel {
  return periodKernel(kh, kw, "texture");
}

/**
 * The bias softmax over periods of lcm(KW, 4) keys ({@link relBiasTexturePeriod}) from scores
 * into probabilities, both vec4 buffers (a row per query): for a KW that is not a multiple of 4
 * (SAM's 14×14 windows), where {@link softmaxRelBiasKernel} loads and stores scalars. Uniforms
 * {@link SOFTMAX_RELBIAS_TEXTURE_UNIFORMS} (r0, hOff, wOff: 0 for dense operands of the whole
 * range). Bindings: S, relH, relW, O (array<vec4<f32>>).
 */
export function softmaxRelBiasPeriodKernel(kh: number, kw: number): Kernel {
  return periodKernel(kh, kw, "buffer");
}

function periodKernel(kh: number, kw: number, sink: "texture" | "buffer"): Kernel {
  const period = relBiasTexturePeriod(kh, kw);
  if (period === null) {
    throw new Error(
      `softmaxRelBias (texture): a row of ${kh}·${kw} keys is not whole periods of lcm(${kw}, 4) ` +
        `keys (at most ${RELBIAS_TEXTURE_MAX_PERIOD})`,
    );
  }
  const T = period / 4, R = period / kw;
  const texels = [...Array(T).keys()];
  // Per texel: the KW-index and the run (within the period) of each of its four keys.
  const wOf = (t: number) => [0, 1, 2, 3].map((c) => (4 * t + c) % kw);
  const rOf = (t: number) => [0, 1, 2, 3].map((c) => Math.floor((4 * t + c) / kw));
  const wDecl = [...Array(kw).keys()].map((j) => `  let w${j} = relW[wb + ${j}u];`).join("\n");
  const wv = texels.map((t) =>
    `  let wv${t} = vec4<f32>(${wOf(t).map((j) => `w${j}`).join(", ")});`
  )
    .join("\n");
  const hDecl = [...Array(R).keys()].map((r) => `    let h${r} = relH[hb + ${r}u];`).join("\n");
  const hv = (t: number) => {
    const r = rOf(t);
    return r.every((x) => x === r[0])
      ? `h${r[0]}`
      : `vec4<f32>(${r.map((x) => `h${x}`).join(", ")})`;
  };
  const load = texels.map((t) => `    let v${t} = S[sRow + tb + ${t}u] * sc + wv${t} + ${hv(t)};`)
    .join("\n");
  let runMax = "";
  for (const t of texels) {
    const m = `max(max(v${t}.x, v${t}.y), max(v${t}.z, v${t}.w))`;
    runMax = t === 0 ? m : `max(${runMax}, ${m})`;
  }
  const sumExp = texels.map((t) => `dot(exp(v${t} - vec4<f32>(nm)), vec4<f32>(1.0))`).join(" + ");
  const write = texels.map((t) =>
    sink === "texture"
      ? `    textureStore(P, vec2<u32>(tb + ${t}u, row), exp(v${t} - vec4<f32>(m)) * inv);`
      : `    O[row * u.oRow + tb + ${t}u] = exp(v${t} - vec4<f32>(m)) * inv;`
  ).join("\n");
  const periodHead = `    let hb = u.hOff + (u.r0 + row) * u.KH + p * ${R}u;
    let tb = p * ${T}u;
${hDecl}
${load}`;
  return {
    key: sink === "texture"
      ? `softmax/relbias-texture/vec4-in/${kw}/${period}`
      : `softmax/relbias-period/vec4/${kw}/${period}`,
    wgsl: () =>
      /* wgsl */ `${SOFTMAX_RELBIAS_TEXTURE_UNIFORMS.wgsl("P_")}
@group(0) @binding(0) var<uniform> u: P_;
@group(0) @binding(1) var<storage, read> S: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> relH: array<f32>;
@group(0) @binding(3) var<storage, read> relW: array<f32>;
${
        sink === "texture"
          ? "@group(0) @binding(4) var P: texture_storage_2d<rgba32float, write>;"
          : "@group(0) @binding(4) var<storage, read_write> O: array<vec4<f32>>;"
      }
${FLAT_INDEX}
@compute @workgroup_size(${RELBIAS_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = flat_index(gid, nwg, ${RELBIAS_WG}u);
  if (row >= u.rows) { return; }
  let wb = u.wOff + (u.r0 + row) * ${kw}u;
  let sc = u.scale;
${wDecl}
${wv}
  let periods = u.KH / ${R}u;
  let sRow = row * periods * ${T}u;
  var m = -3.402823e38;
  var l = 0.0;
  for (var p = 0u; p < periods; p++) {
${periodHead}
    let nm = max(m, ${runMax});
    l = l * exp(m - nm) + ${sumExp};
    m = nm;
  }
  let inv = 1.0 / l;
  for (var p = 0u; p < periods; p++) {
${periodHead}
${write}
  }
}`,
  };
}
