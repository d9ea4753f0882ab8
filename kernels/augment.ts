/**
 * Training-time augmentation of a batch [N,C,H,W] with per-sample parameters read from a small
 * storage buffer (PARAM_STRIDE f32 per sample), so one dispatch serves the whole batch whatever
 * each sample drew. Semantics follow torchvision's tensor transforms (see pipeline/data/augment.ts).
 *
 * Per-sample parameter layout (f32): 0 hflip, 1 vflip, 2 cos θ, 3 sin θ, 4 brightness,
 * 5 contrast, 6 saturation, 7 hue shift, 8 grayscale, 9..12 colour-jitter order (op ids 0..3),
 * 13 jitter on, 14..15 unused.
 */
import type { Kernel } from "./kernel.ts";
import { FLAT_INDEX } from "./common.ts";
import { uniforms } from "./uniforms.ts";

export const PARAM_STRIDE = 16;
export const AUGMENT_WG = 256;
/** Most partial sums per sample in the contrast-mean reduction (one per workgroup). */
export const MAX_MEAN_PARTIALS = 64;

/** Uniforms of {@link geometricKernel} (see its comment). */
export const GEOMETRIC_UNIFORMS = uniforms({
  n: "u32",
  c: "u32",
  h: "u32",
  w: "u32",
  s0: "u32",
  xOff: "u32",
  yOff: "u32",
  _pad: "u32",
});

/**
 * Flips and rotation fused into one gather: output pixel → rotated source (nearest, round half to
 * even as grid_sample) → un-flipped source; outside the image → 0. Uniform: n (samples in this
 * dispatch), c, h, w, s0 (first sample's index in prm), xOff, yOff (element offsets of x and y in
 * their bindings: a batch over the binding limit runs as several dispatches over runs of samples).
 */
export function geometricKernel(): Kernel {
  return {
    key: "augment/geometric",
    wgsl: () =>
      `${GEOMETRIC_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> prm: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${FLAT_INDEX}
@compute @workgroup_size(${AUGMENT_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${AUGMENT_WG}u);
  let hw = u.h * u.w;
  if (i >= u.n * hw) { return; }
  let s = i / hw;
  let p = i % hw;
  let oy = p / u.w;
  let ox = p % u.w;
  let b = (u.s0 + s) * ${PARAM_STRIDE}u;
  let ct = prm[b + 2u];
  let st = prm[b + 3u];
  let cx = (f32(u.w) - 1.0) * 0.5;
  let cy = (f32(u.h) - 1.0) * 0.5;
  let xc = f32(ox) - cx;
  let yc = f32(oy) - cy;
  let sx = round(ct * xc - st * yc + cx);
  let sy = round(st * xc + ct * yc + cy);
  let inside = sx >= 0.0 && sy >= 0.0 && sx <= f32(u.w) - 1.0 && sy <= f32(u.h) - 1.0;
  var ix = u32(max(sx, 0.0));
  var iy = u32(max(sy, 0.0));
  if (prm[b] != 0.0) { ix = u.w - 1u - ix; }
  if (prm[b + 1u] != 0.0) { iy = u.h - 1u - iy; }
  let plane = s * u.c * hw;
  for (var c = 0u; c < u.c; c++) {
    var v = 0.0;
    if (inside) { v = x[u.xOff + plane + c * hw + iy * u.w + ix]; }
    y[u.yOff + plane + c * hw + p] = v;
  }
}`,
  };
}

/** Colour ops shared by the two jitter kernels (torchvision's tensor formulas). */
const COLOUR = /* wgsl */ `
fn gray(c: vec3<f32>) -> f32 { return 0.299 * c.x + 0.587 * c.y + 0.114 * c.z; }
fn blend(a: vec3<f32>, b: vec3<f32>, f: f32) -> vec3<f32> {
  return clamp(f * a + (1.0 - f) * b, vec3<f32>(0.0), vec3<f32>(1.0));
}
fn hue_shift(c: vec3<f32>, hf: f32) -> vec3<f32> {
  let r = c.x; let g = c.y; let bl = c.z;
  let maxc = max(r, max(g, bl));
  let minc = min(r, min(g, bl));
  let eqc = maxc == minc;
  let cr = maxc - minc;
  let s = cr / select(maxc, 1.0, eqc);
  let d = select(cr, 1.0, eqc);
  let rc = (maxc - r) / d;
  let gc = (maxc - g) / d;
  let bc = (maxc - bl) / d;
  var h = 0.0;
  if (maxc == r) { h = bc - gc; }
  else if (maxc == g) { h = 2.0 + rc - bc; }
  else { h = 4.0 + gc - rc; }
  h = fract(h / 6.0 + 1.0);
  h = fract(h + hf);
  let v = maxc;
  let h6 = h * 6.0;
  let fi = floor(h6);
  let f = h6 - fi;
  let i = ((i32(fi) % 6) + 6) % 6;
  let p = clamp(v * (1.0 - s), 0.0, 1.0);
  let q = clamp(v * (1.0 - s * f), 0.0, 1.0);
  let t = clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0);
  switch (i) {
    case 0: { return vec3<f32>(v, t, p); }
    case 1: { return vec3<f32>(q, v, p); }
    case 2: { return vec3<f32>(p, v, t); }
    case 3: { return vec3<f32>(p, q, v); }
    case 4: { return vec3<f32>(t, p, v); }
    default: { return vec3<f32>(v, p, q); }
  }
}
fn apply_op(op: u32, c: vec3<f32>, b: u32, mean: f32) -> vec3<f32> {
  switch (op) {
    case 0u: { return blend(c, vec3<f32>(0.0), prm[b + 4u]); }
    case 1u: { return blend(c, vec3<f32>(mean), prm[b + 5u]); }
    case 2u: { return blend(c, vec3<f32>(gray(c)), prm[b + 6u]); }
    default: { return hue_shift(c, prm[b + 7u]); }
  }
}`;

/**
 * Uniforms: n (samples in this dispatch), hw, parts, s0 (first sample's index in prm and partial),
 * xOff, yOff (element offsets of x and y in their bindings), pads.
 */
export const JITTER_UNIFORMS = uniforms({
  n: "u32",
  hw: "u32",
  parts: "u32",
  s0: "u32",
  xOff: "u32",
  yOff: "u32",
  _pad0: "u32",
  _pad1: "u32",
});
const JITTER_HEAD = `${JITTER_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> prm: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;`;

/**
 * Contrast needs the grayscale mean of the image as it is when contrast runs (after the ops that
 * precede it in that sample's order), so this pass replays those ops and reduces. Grid (parts, N);
 * writes parts partial sums per sample.
 */
export function jitterMeanKernel(): Kernel {
  return {
    key: "augment/jitter_mean",
    wgsl: () =>
      `${JITTER_HEAD}
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
${COLOUR}
var<workgroup> red: array<f32, ${AUGMENT_WG}>;
@compute @workgroup_size(${AUGMENT_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wid.y;
  let b = (u.s0 + s) * ${PARAM_STRIDE}u;
  let base = u.xOff + s * 3u * u.hw;
  var acc = 0.0;
  for (var p = wid.x * ${AUGMENT_WG}u + lid; p < u.hw; p += u.parts * ${AUGMENT_WG}u) {
    var c = vec3<f32>(x[base + p], x[base + u.hw + p], x[base + 2u * u.hw + p]);
    for (var k = 0u; k < 4u; k++) {
      let op = u32(prm[b + 9u + k]);
      if (op == 1u) { break; }
      c = apply_op(op, c, b, 0.0);
    }
    acc += gray(c);
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var w = ${AUGMENT_WG / 2}u; w > 0u; w = w / 2u) {
    if (lid < w) { red[lid] += red[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partial[(u.s0 + s) * u.parts + wid.x] = red[0]; }
}`,
  };
}

/** ColorJitter in each sample's order, then RandomGrayscale. Grid (ceil(hw/WG), N). */
export function jitterApplyKernel(): Kernel {
  return {
    key: "augment/jitter_apply",
    wgsl: () =>
      `${JITTER_HEAD}
@group(0) @binding(3) var<storage, read> partial: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
${COLOUR}
var<workgroup> parts: array<f32, ${MAX_MEAN_PARTIALS}>;
var<workgroup> mean_sh: f32;
@compute @workgroup_size(${AUGMENT_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let s = wid.y;
  let b = (u.s0 + s) * ${PARAM_STRIDE}u;
  if (lid < u.parts) { parts[lid] = partial[(u.s0 + s) * u.parts + lid]; }
  workgroupBarrier();
  if (lid == 0u) {
    var t = 0.0;
    for (var k = 0u; k < u.parts; k++) { t += parts[k]; }
    mean_sh = t / f32(u.hw);
  }
  workgroupBarrier();
  let mean = mean_sh;
  let p = wid.x * ${AUGMENT_WG}u + lid;
  if (p >= u.hw) { return; }
  let base = u.xOff + s * 3u * u.hw;
  var c = vec3<f32>(x[base + p], x[base + u.hw + p], x[base + 2u * u.hw + p]);
  if (prm[b + 13u] != 0.0) {
    for (var k = 0u; k < 4u; k++) { c = apply_op(u32(prm[b + 9u + k]), c, b, mean); }
  }
  if (prm[b + 8u] != 0.0) { c = vec3<f32>(gray(c)); }
  let yb = u.yOff + s * 3u * u.hw;
  y[yb + p] = c.x;
  y[yb + u.hw + p] = c.y;
  y[yb + 2u * u.hw + p] = c.z;
}`,
  };
}
