/**
 * Counter-based random numbers: Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy
 * as 1, 2, 3", SC 2011; the Random123 constants). Element i of a draw comes from lane i mod 4 of
 * the block with counter (floor(i/4), 0, stream.lo, stream.hi) under key (seed.lo, seed.hi), so it
 * depends only on (seed, stream, i) — never on the workgroup size or dispatch order. The CPU
 * mirror lives in engine/rng.ts and must stay in step with the conversions here.
 *
 * Conversions (shared with the mirror): u = (x >> 8) · 2^-24 in [0, 1) (exact in f32);
 * uniform = lo + (hi − lo)·u; bernoulli = u < p; normal = Box–Muller on the lane pairs (0,1),
 * (2,3) with u1 = ((x0 >> 8) + 1)·2^-24 in (0, 1]: r = sqrt(−2 ln u1), z0 = r cos(2π u2),
 * z1 = r sin(2π u2).
 */
import type { Kernel } from "./kernel.ts";
import { FLAT_INDEX } from "./common.ts";
import { uniforms } from "./uniforms.ts";

export type RngMode = "bits" | "uniform" | "normal" | "bernoulli";

export const RNG_WORKGROUP = 128;
const WG = RNG_WORKGROUP;

/** n draws; the Philox key and stream (counter words 2, 3); the mode's parameters a, b. */
export const RNG_UNIFORMS = uniforms({
  n: "u32",
  key0: "u32",
  key1: "u32",
  s0: "u32",
  s1: "u32",
  _pad: "u32",
  a: "f32",
  b: "f32",
});

const PHILOX_WGSL = /* wgsl */ `
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let t = al * bl; let m1 = ah * bl; let m2 = al * bh;
  let mid = (t >> 16u) + (m1 & 0xffffu) + (m2 & 0xffffu);
  let hi = ah * bh + (m1 >> 16u) + (m2 >> 16u) + (mid >> 16u);
  return vec2<u32>(hi, a * b);
}
fn philox4x32_10(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = ctr; var k = key;
  for (var r = 0u; r < 10u; r++) {
    let p0 = mulhilo(0xD2511F53u, c.x);
    let p1 = mulhilo(0xCD9E8D57u, c.z);
    c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
  }
  return c;
}`;

/**
 * One thread per 4-element block. Uniforms: n, key0, key1, stream0, stream1, pad, a, b
 * (uniform: lo, hi; normal: mean, std; bernoulli: p).
 */
export function rngKernel(mode: RngMode): Kernel {
  const outType = mode === "bits" ? "u32" : "f32";
  let body: string;
  switch (mode) {
    case "bits":
      body = "let v = x;";
      break;
    case "uniform":
      body =
        "let uf = vec4<f32>(x >> vec4<u32>(8u)) * 5.9604644775390625e-8;\n  let v = u.a + (u.b - u.a) * uf;";
      break;
    case "bernoulli":
      body =
        "let uf = vec4<f32>(x >> vec4<u32>(8u)) * 5.9604644775390625e-8;\n  let v = select(vec4<f32>(0.0), vec4<f32>(1.0), uf < vec4<f32>(u.a));";
      break;
    case "normal":
      body = `let u1 = (vec2<f32>(x.xz >> vec2<u32>(8u)) + 1.0) * 5.9604644775390625e-8;
  let u2 = vec2<f32>(x.yw >> vec2<u32>(8u)) * 5.9604644775390625e-8;
  let r = sqrt(-2.0 * log(u1));
  let th = 6.283185307179586 * u2;
  let v = u.a + u.b * vec4<f32>(r.x * cos(th.x), r.x * sin(th.x), r.y * cos(th.y), r.y * sin(th.y));`;
      break;
  }
  return {
    key: `rng/philox/${mode}`,
    wgsl: () =>
      `${RNG_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> y: array<${outType}>;
${FLAT_INDEX}
${PHILOX_WGSL}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = flat_index(gid, nwg, ${WG}u);
  let i0 = b * 4u;
  if (i0 >= u.n) { return; }
  let x = philox4x32_10(vec4<u32>(b, 0u, u.s0, u.s1), vec2<u32>(u.key0, u.key1));
  ${body}
  for (var l = 0u; l < 4u; l++) {
    if (i0 + l < u.n) { y[i0 + l] = v[l]; }
  }
}`,
  };
}
