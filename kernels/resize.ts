/**
 * Bilinear resize of NCHW planes as torch.nn.functional.interpolate(mode="bilinear"), a thread per
 * output element. Source coordinate (PyTorch's area_pixel_compute_source_index):
 *   align_corners=False: src = max((dst + 0.5)·scale − 0.5, 0), scale = in/out;
 *   align_corners=True:  src = dst·scale, scale = (in − 1)/(out − 1) (0 when out = 1);
 * i0 = floor(src), i1 = min(i0 + 1, in − 1), λ = src − i0.
 *
 * Backward is a gather (WGSL has no float atomics): each input pixel walks the output rows and
 * columns whose source coordinate lies in [h − 1, h + 1) — a range found by inverting the map,
 * widened by one on each side — and adds g·weight where its 2×2 stencil includes the pixel.
 */
import type { Kernel } from "./kernel.ts";
import { planeKernelWgsl, type PlanePixel } from "./planes.ts";
import { uniforms } from "./uniforms.ts";

export const RESIZE_WG = 256;

/** `planes` planes of H×W resized to OH×OW; sh, sw: the source-per-output scales. */
export const RESIZE_UNIFORMS = uniforms({
  planes: "u32",
  H: "u32",
  W: "u32",
  OH: "u32",
  OW: "u32",
  sh: "f32",
  sw: "f32",
  _pad: "u32",
});
const PARAMS = RESIZE_UNIFORMS.wgsl("P");

/** A resize kernel's WGSL: bindings, helpers (the taps), which pixel a thread owns, the body. */
function resize(bindings: string[], helpers: string, pixel: PlanePixel, body: string): string {
  return planeKernelWgsl({ params: PARAMS, wg: RESIZE_WG, bindings, helpers, pixel, body });
}

/** WGSL helpers: `tap(dst, n, scale)` → (i0, i1, λ), its inverse range and per-index weight. */
function tapFn(alignCorners: boolean): string {
  const src = alignCorners ? "f32(dst) * scale" : "max((f32(dst) + 0.5) * scale - 0.5, 0.0)";
  return `
struct Tap { i0: u32, i1: u32, lam: f32 }
fn tap(dst: u32, n: u32, scale: f32) -> Tap {
  let r = ${src};
  let i0 = min(u32(r), n - 1u);
  let i1 = min(i0 + 1u, n - 1u);
  return Tap(i0, i1, r - f32(i0));
}
/** Weight of input index h in output dst's two taps. */
fn weight_of(h: u32, dst: u32, n: u32, scale: f32) -> f32 {
  let t = tap(dst, n, scale);
  var w = 0.0;
  if (t.i0 == h) { w += 1.0 - t.lam; }
  if (t.i1 == h) { w += t.lam; }
  return w;
}
/** Output indices [lo, hi] whose taps may include input index h. */
fn out_range(h: u32, outN: u32, scale: f32) -> vec2<i32> {
  if (scale == 0.0) { return vec2<i32>(0, i32(outN) - 1); }
  let hf = f32(h);
  ${
    alignCorners
      ? `let lo = floor((hf - 1.0) / scale) - 1.0;
  let hi = ceil((hf + 1.0) / scale) + 1.0;`
      : `let lo = floor((hf - 0.5) / scale - 0.5) - 1.0;
  let hi = ceil((hf + 1.5) / scale - 0.5) + 1.0;`
  }
  return vec2<i32>(i32(max(lo, 0.0)), i32(min(hi, f32(outN) - 1.0)));
}`;
}

/** Forward. Bindings: x, y. Grid: planes·OH·OW threads. */
export function bilinearKernel(alignCorners: boolean): Kernel {
  return {
    key: `bilinear/${alignCorners ? "ac" : "noac"}`,
    wgsl: () =>
      resize(
        ["read> x", "read_write> y"],
        tapFn(alignCorners),
        "out",
        `  let th = tap(oh, u.H, u.sh);
  let tw = tap(ow, u.W, u.sw);
  let base = plane * u.H * u.W;
  let r0 = base + th.i0 * u.W;
  let r1 = base + th.i1 * u.W;
  let top = (1.0 - tw.lam) * x[r0 + tw.i0] + tw.lam * x[r0 + tw.i1];
  let bot = (1.0 - tw.lam) * x[r1 + tw.i0] + tw.lam * x[r1 + tw.i1];
  y[i] = (1.0 - th.lam) * top + th.lam * bot;`,
      ),
  };
}

/** Backward gather. Bindings: g, dx. Grid: planes·H·W threads. */
export function bilinearBackwardKernel(alignCorners: boolean): Kernel {
  return {
    key: `bilinear-bwd/${alignCorners ? "ac" : "noac"}`,
    wgsl: () =>
      resize(
        ["read> g", "read_write> dx"],
        tapFn(alignCorners),
        "in",
        `  let rh = out_range(h, u.OH, u.sh);
  let rw = out_range(w, u.OW, u.sw);
  let base = plane * u.OH * u.OW;
  var acc = 0.0;
  for (var oh = rh.x; oh <= rh.y; oh++) {
    let wy = weight_of(h, u32(oh), u.H, u.sh);
    if (wy == 0.0) { continue; }
    var row = 0.0;
    for (var ow = rw.x; ow <= rw.y; ow++) {
      let wx = weight_of(w, u32(ow), u.W, u.sw);
      row += wx * g[base + u32(oh) * u.OW + u32(ow)];
    }
    acc += wy * row;
  }
  dx[i] = acc;`,
      ),
  };
}

/**
 * Antialiased bilinear (torch's antialias=True, align_corners=False): a triangle filter whose
 * support widens with the scale when downsampling, weights normalised per output
 * (PyTorch's _compute_indices_min_size_weights_aa):
 *   center = scale·(i + 0.5), support = scale ≥ 1 ? scale : 1, invscale = scale ≥ 1 ? 1/scale : 1,
 *   xmin = max(trunc(center − support + 0.5), 0), xmax = min(trunc(center + support + 0.5), in),
 *   w_j = max(0, 1 − |(j − center + 0.5)·invscale|) / Σ w.
 */
const AA_FNS = /* wgsl */ `
struct AA { xmin: i32, xmax: i32, center: f32, invscale: f32, total: f32 }
fn filt(v: f32) -> f32 { return max(0.0, 1.0 - abs(v)); }
fn aa(i: u32, n: u32, scale: f32) -> AA {
  let support = select(1.0, scale, scale >= 1.0);
  let invscale = select(1.0, 1.0 / scale, scale >= 1.0);
  let center = scale * (f32(i) + 0.5);
  let xmin = max(i32(center - support + 0.5), 0);
  let xmax = min(i32(center + support + 0.5), i32(n));
  var total = 0.0;
  for (var j = xmin; j < xmax; j++) { total += filt((f32(j) - center + 0.5) * invscale); }
  return AA(xmin, xmax, center, invscale, total);
}
fn aa_w(a: AA, j: i32) -> f32 {
  if (j < a.xmin || j >= a.xmax || a.total == 0.0) { return 0.0; }
  return filt((f32(j) - a.center + 0.5) * a.invscale) / a.total;
}
/** Output indices [lo, hi] whose window may include input index h. */
fn aa_range(h: u32, outN: u32, scale: f32) -> vec2<i32> {
  let support = select(1.0, scale, scale >= 1.0);
  let lo = floor((f32(h) - support - 0.5) / scale - 1.5);
  let hi = ceil((f32(h) + support + 0.5) / scale + 0.5);
  return vec2<i32>(i32(max(lo, 0.0)), i32(min(hi, f32(outN) - 1.0)));
}`;

/** Antialiased forward. Bindings: x, y. Grid: planes·OH·OW threads. */
export function bilinearAAKernel(): Kernel {
  return {
    key: "bilinear-aa",
    wgsl: () =>
      resize(
        ["read> x", "read_write> y"],
        AA_FNS,
        "out",
        `  let ah = aa(oh, u.H, u.sh);
  let aw = aa(ow, u.W, u.sw);
  let base = plane * u.H * u.W;
  var acc = 0.0;
  for (var h = ah.xmin; h < ah.xmax; h++) {
    var row = 0.0;
    for (var w = aw.xmin; w < aw.xmax; w++) { row += aa_w(aw, w) * x[base + u32(h) * u.W + u32(w)]; }
    acc += aa_w(ah, h) * row;
  }
  y[i] = acc;`,
      ),
  };
}

/** Antialiased backward gather. Bindings: g, dx. Grid: planes·H·W threads. */
export function bilinearAABackwardKernel(): Kernel {
  return {
    key: "bilinear-aa-bwd",
    wgsl: () =>
      resize(
        ["read> g", "read_write> dx"],
        AA_FNS,
        "in",
        `  let rh = aa_range(h, u.OH, u.sh);
  let rw = aa_range(w, u.OW, u.sw);
  let base = plane * u.OH * u.OW;
  var acc = 0.0;
  for (var oh = rh.x; oh <= rh.y; oh++) {
    let wy = aa_w(aa(u32(oh), u.H, u.sh), i32(h));
    if (wy == 0.0) { continue; }
    var row = 0.0;
    for (var ow = rw.x; ow <= rw.y; ow++) {
      row += aa_w(aa(u32(ow), u.W, u.sw), i32(w)) * g[base + u32(oh) * u.OW + u32(ow)];
    }
    acc += wy * row;
  }
  dx[i] = acc;`,
      ),
  };
}
