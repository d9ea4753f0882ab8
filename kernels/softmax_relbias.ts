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
