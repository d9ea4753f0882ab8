/**
 * EP-SAM's high-pass channel without an FFT. The reference zeroes only the four lowest
 * frequencies {0, −1} × {0, −1} of each channel's spectrum, so |ifft(masked)| = |x − low| where
 * `low` is those four terms' reconstruction: one reduction pass for the four coefficients per
 * (image, channel), one elementwise pass for |x − low| averaged over channels. Exactly the same
 * quantity as the FFT route (engine/ops/fft.ts), at two passes over the data.
 */
import type { Kernel } from "./kernel.ts";
import { uniforms } from "./uniforms.ts";

export const HF_WG = 256;

/**
 * Both kernels take element offsets of their bindings (xOff, cOff, yOff) so a batch over the
 * binding limit runs as several dispatches over runs of images.
 */

/** h×w planes, `slices` (image, channel) pairs; x's and coeff's element offsets. */
export const HF_COEFF_UNIFORMS = uniforms({
  h: "u32",
  w: "u32",
  slices: "u32",
  xOff: "u32",
  cOff: "u32",
  _pad0: "u32",
  _pad1: "u32",
  _pad2: "u32",
});
/** h×w planes of c channels, `total` output pixels; x's, coeff's and y's element offsets. */
export const HF_APPLY_UNIFORMS = uniforms({
  h: "u32",
  w: "u32",
  c: "u32",
  total: "u32",
  xOff: "u32",
  cOff: "u32",
  yOff: "u32",
  _pad: "u32",
});

/** Per (n, c): X[u,v] = mean(x·e^{−iφ}), φ = 2π(u·h/H + v·w/W), for (u,v) ∈ {0,−1}²; 8 floats out. */
export function highFreqCoeffKernel(): Kernel {
  return {
    key: "highfreq/coeff",
    wgsl: () =>
      `${HF_COEFF_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> coeff: array<f32>;
var<workgroup> acc: array<array<f32, 8>, ${HF_WG}>;
const TAU = 6.283185307179586;
@compute @workgroup_size(${HF_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let s = wid.x + wid.y * nwg.x;
  let inRange = s < u.slices;
  var a: array<f32, 8>;
  for (var k = 0u; k < 8u; k++) { a[k] = 0.0; }
  if (inRange) {
    let n = u.h * u.w;
    let base = u.xOff + s * n;
    for (var i = l; i < n; i += ${HF_WG}u) {
      let hh = i / u.w;
      let ww = i % u.w;
      let v = x[base + i];
      // u = −1 and v = −1 angles (forward transform uses e^{−iφ}).
      let ah = -TAU * f32(hh) / f32(u.h);
      let aw = -TAU * f32(ww) / f32(u.w);
      a[0] += v;
      a[2] += v * cos(ah); a[3] -= v * sin(ah);
      a[4] += v * cos(aw); a[5] -= v * sin(aw);
      a[6] += v * cos(ah + aw); a[7] -= v * sin(ah + aw);
    }
  }
  acc[l] = a;
  workgroupBarrier();
  for (var st = ${HF_WG / 2}u; st > 0u; st = st >> 1u) {
    if (l < st) {
      for (var k = 0u; k < 8u; k++) { acc[l][k] += acc[l + st][k]; }
    }
    workgroupBarrier();
  }
  if (l == 0u && inRange) {
    let inv = 1.0 / f32(u.h * u.w);
    for (var k = 0u; k < 8u; k++) { coeff[u.cOff + s * 8u + k] = acc[0][k] * inv; }
  }
}`,
  };
}

/** out[n,0,h,w] = mean_c |x − Re Σ X[u,v]·e^{iφ}| over the distinct (u,v) of an H×W grid. */
export function highFreqApplyKernel(): Kernel {
  return {
    key: "highfreq/apply",
    wgsl: () =>
      `${HF_APPLY_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> coeff: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
const TAU = 6.283185307179586;
@compute @workgroup_size(${HF_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${HF_WG}u;
  if (i >= u.total) { return; }
  let hw = u.h * u.w;
  let n = i / hw;
  let p = i % hw;
  let hh = p / u.w;
  let ww = p % u.w;
  let ah = -TAU * f32(hh) / f32(u.h);
  let aw = -TAU * f32(ww) / f32(u.w);
  // When H (or W) is 1, frequency −1 is frequency 0: count it once.
  let useH = u.h > 1u;
  let useW = u.w > 1u;
  var sum = 0.0;
  for (var c = 0u; c < u.c; c++) {
    let k = u.cOff + (n * u.c + c) * 8u;
    var low = coeff[k];
    if (useH) { low += coeff[k + 2u] * cos(ah) - coeff[k + 3u] * sin(ah); }
    if (useW) { low += coeff[k + 4u] * cos(aw) - coeff[k + 5u] * sin(aw); }
    if (useH && useW) { low += coeff[k + 6u] * cos(ah + aw) - coeff[k + 7u] * sin(ah + aw); }
    sum += abs(x[u.xOff + (n * u.c + c) * hw + p] - low);
  }
  y[u.yOff + i] = sum / f32(u.c);
}`,
  };
}
