/** WGSL snippets shared by kernels: strided indexing over up to 8 dims and 2-D grid folding. */

/** Maximum tensor rank for strided kernels (shapes travel as two vec4<u32> in uniforms). */
export const MAX_RANK = 8;

/** Flat invocation index from a grid folded into x/y (see dispatch.grid1d). */
export const FLAT_INDEX = /* wgsl */ `
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
  return gid.x + gid.y * nwg.x * wg;
}`;

/** `dim(a, i)`: the i-th entry of a uniform array<vec4<u32>, 2>. */
export const DIM = /* wgsl */ `
fn dim(a: array<vec4<u32>, 2>, i: u32) -> u32 { return a[i / 4u][i % 4u]; }`;

/** Packs up to 8 dims (padded with `pad`) as the u32s of two vec4s. */
export function dims8(v: readonly number[], pad = 1): number[] {
  if (v.length > MAX_RANK) throw new Error(`rank ${v.length} exceeds the kernels' maximum of ${MAX_RANK}`);
  const out = v.slice();
  while (out.length < MAX_RANK) out.push(pad);
  return out;
}

/** Exact-enough erf for f32 (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7). */
export const ERF = /* wgsl */ `
fn erf_f32(x: f32) -> f32 {
  let s = sign(x);
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return s * y;
}`;
