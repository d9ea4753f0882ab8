/**
 * 2-D pooling over NCHW planes, a thread per output element; backward kernels are gathers (a
 * thread per input element collects from the windows that cover it — no atomics).
 *
 * maxPool2d pads with −inf as PyTorch and saves, per output, the flat index h·W + w of its
 * maximum in the input plane (first maximum in scan order; an all-−inf window keeps its first
 * valid pixel, as PyTorch). adaptiveAvgPool2d uses PyTorch's bins
 * [floor(o·In/Out), ceil((o+1)·In/Out)).
 */
import type { Kernel } from "./kernel.ts";
import { planeKernelWgsl, type PlanePixel } from "./planes.ts";
import { flatKernelWgsl } from "./common.ts";
import { uniforms } from "./uniforms.ts";
import { WINDOW_FIELDS } from "./window.ts";

export const POOL_WG = 256;

/**
 * `planes` planes (N·C) of one window geometry (kernels/window.ts `Window2d`); o0..o2, the element offsets of storage bindings
 * 1..3 in their ranges (for batches split over the binding limit).
 */
export const POOL_UNIFORMS = uniforms({
  planes: "u32",
  ...WINDOW_FIELDS,
  _pad: "u32",
  o0: "u32",
  o1: "u32",
  o2: "u32",
  _pad1: "u32",
});
const PARAMS = POOL_UNIFORMS.wgsl("P");

/** Output (oh, ow)'s window, rows [h0, h1) and columns [w0, w1) clipped at H, W (may start < 0). */
const WINDOW = `  let h0 = i32(oh * u.sh) - i32(u.ph);
  let w0 = i32(ow * u.sw) - i32(u.pw);
  let h1 = min(h0 + i32(u.kh), i32(u.H));
  let w1 = min(w0 + i32(u.kw), i32(u.W));
`;

/** Input (h, w)'s windows: oh·sh − ph ≤ h < oh·sh − ph + kh for oh in [oh0, oh1], same for ow. */
const COVERING = `  let oh0 = max((h + i32(u.ph) - i32(u.kh) + i32(u.sh)) / i32(u.sh), 0);
  let oh1 = min((h + i32(u.ph)) / i32(u.sh), i32(u.OH) - 1);
  let ow0 = max((w + i32(u.pw) - i32(u.kw) + i32(u.sw)) / i32(u.sw), 0);
  let ow1 = min((w + i32(u.pw)) / i32(u.sw), i32(u.OW) - 1);
`;

/** A pooling kernel's WGSL: its bindings, which pixel a thread owns, and the body. */
function pool(bindings: string[], pixel: PlanePixel, body: string): string {
  return planeKernelWgsl({ params: PARAMS, wg: POOL_WG, bindings, pixel, body });
}

/** Bindings: x, y, argmax (i32). Grid: planes·OH·OW threads. */
export function maxPool2dKernel(): Kernel {
  return {
    key: "maxpool2d",
    wgsl: () =>
      pool(
        ["read> x", "read_write> y", "read_write> arg: i32"],
        "out",
        `${WINDOW}  let hs = max(h0, 0);
  let ws = max(w0, 0);
  let base = u.o0 + plane * u.H * u.W;
  // Starts below every finite value; an all −inf window keeps its first pixel (read back below).
  var best = -3.402823e38;
  var bi = hs * i32(u.W) + ws;
  for (var h = hs; h < h1; h++) {
    for (var w = ws; w < w1; w++) {
      let k = h * i32(u.W) + w;
      let v = x[base + u32(k)];
      if (v > best || v != v) { best = v; bi = k; }
    }
  }
  y[u.o1 + i] = x[base + u32(bi)];
  arg[u.o2 + i] = bi;`,
      ),
  };
}

/**
 * dx[h, w] = Σ g[oh, ow] over the windows (oh, ow) covering (h, w) whose argmax is h·W + w.
 * Bindings: g, argmax, dx. Grid: planes·H·W threads.
 */
export function maxPool2dBackwardKernel(): Kernel {
  return {
    key: "maxpool2d-bwd",
    wgsl: () =>
      pool(
        ["read> g", "read> arg: i32", "read_write> dx"],
        "in-signed",
        `  let me = h * i32(u.W) + w;
  // Windows with oh·sh − ph ≤ h < oh·sh − ph + kh.
${COVERING}  var acc = 0.0;
  let base = plane * u.OH * u.OW;
  for (var oh = oh0; oh <= oh1; oh++) {
    for (var ow = ow0; ow <= ow1; ow++) {
      let o = base + u32(oh) * u.OW + u32(ow);
      if (arg[u.o1 + o] == me) { acc += g[u.o0 + o]; }
    }
  }
  dx[u.o2 + i] = acc;`,
      ),
  };
}

/** Largest stride per axis that {@link maxPool2dBackwardBlockKernel} is generated for. */
export const MAXPOOL_BLOCK_MAX_STRIDE = 4;

/**
 * maxPool2dBackwardKernel's gather with a thread per block of sh×sw input pixels (sh, sw baked in,
 * at most {@link MAXPOOL_BLOCK_MAX_STRIDE}): the windows covering a block (two per axis for a 3×3
 * stride-2 pool, against up to two per pixel) are read once for the whole block, so the storage
 * loads, a per-lane loop each on CPU rasterisers, drop by sh·sw; each pixel still adds its matching
 * windows in (oh, ow) order, so the sums are the per-pixel kernel's bit for bit. Bindings: g,
 * argmax, dx. Grid: planes·⌈H/sh⌉·⌈W/sw⌉ threads.
 */
export function maxPool2dBackwardBlockKernel(sh: number, sw: number): Kernel {
  if (![sh, sw].every((s) => Number.isInteger(s) && s >= 1 && s <= MAXPOOL_BLOCK_MAX_STRIDE)) {
    throw new Error(`maxPool2d backward: block strides must be 1..4, got ${sh}×${sw}`);
  }
  const cells = [...Array(sh).keys()].flatMap((a) => [...Array(sw).keys()].map((b) => [a, b]));
  const acc = cells.map(([a, b]) => `  var a${a}_${b} = 0.0;`).join("\n");
  const add = cells.map(([a, b]) =>
    `      if (d == ${a}i * i32(u.W) + ${b}i) { a${a}_${b} += gv; }`
  ).join("\n");
  const store = cells.map(([a, b]) =>
    `  if (h + ${a}i < i32(u.H) && w + ${b}i < i32(u.W)) { dx[u.o2 + pb + u32(h + ${a}i) * u.W + u32(w + ${b}i)] = a${a}_${b}; }`
  ).join("\n");
  return {
    key: `maxpool2d-bwd/block${sh}x${sw}`,
    wgsl: () =>
      flatKernelWgsl({
        params: PARAMS,
        wg: POOL_WG,
        bindings: ["read> g", "read> arg: i32", "read_write> dx"],
        body: `  let BW = (u.W + ${sw - 1}u) / ${sw}u;
  let BH = (u.H + ${sh - 1}u) / ${sh}u;
  if (i >= u.planes * BH * BW) { return; }
  let w = i32((i % BW) * ${sw}u);
  let h = i32(((i / BW) % BH) * ${sh}u);
  let plane = i / (BW * BH);
  // Windows with oh·sh − ph ≤ y < oh·sh − ph + kh for some row y of the block.
  let oh0 = max((h + i32(u.ph) - i32(u.kh) + i32(u.sh)) / i32(u.sh), 0);
  let oh1 = min((h + ${sh - 1}i + i32(u.ph)) / i32(u.sh), i32(u.OH) - 1);
  let ow0 = max((w + i32(u.pw) - i32(u.kw) + i32(u.sw)) / i32(u.sw), 0);
  let ow1 = min((w + ${sw - 1}i + i32(u.pw)) / i32(u.sw), i32(u.OW) - 1);
  let me = h * i32(u.W) + w;
${acc}
  let base = plane * u.OH * u.OW;
  for (var oh = oh0; oh <= oh1; oh++) {
    for (var ow = ow0; ow <= ow1; ow++) {
      let o = base + u32(oh) * u.OW + u32(ow);
      let d = arg[u.o1 + o] - me;
      let gv = g[u.o0 + o];
${add}
    }
  }
  let pb = plane * u.H * u.W;
${store}`,
      }),
  };
}

/** Adaptive average pooling. Bindings: x, y. Grid: planes·OH·OW threads. */
export function adaptiveAvgPool2dKernel(): Kernel {
  return {
    key: "adaptive-avgpool2d",
    wgsl: () =>
      pool(
        ["read> x", "read_write> y"],
        "out",
        `  let h0 = (oh * u.H) / u.OH;
  let h1 = ((oh + 1u) * u.H + u.OH - 1u) / u.OH;
  let w0 = (ow * u.W) / u.OW;
  let w1 = ((ow + 1u) * u.W + u.OW - 1u) / u.OW;
  let base = u.o0 + plane * u.H * u.W;
  var acc = 0.0;
  for (var h = h0; h < h1; h++) {
    for (var w = w0; w < w1; w++) { acc += x[base + h * u.W + w]; }
  }
  y[u.o1 + i] = acc / f32((h1 - h0) * (w1 - w0));`,
      ),
  };
}

/**
 * dx[h, w] = Σ g[oh, ow] / |bin(oh, ow)| over the bins containing (h, w): oh ∈
 * [floor(h·OH/H), ceil((h+1)·OH/H)). Bindings: g, dx. Grid: planes·H·W threads.
 */
export function adaptiveAvgPool2dBackwardKernel(): Kernel {
  return {
    key: "adaptive-avgpool2d-bwd",
    wgsl: () =>
      pool(
        ["read> g", "read_write> dx"],
        "in",
        `  let oh0 = (h * u.OH) / u.H;
  let oh1 = min(((h + 1u) * u.OH + u.H - 1u) / u.H, u.OH);
  let ow0 = (w * u.OW) / u.W;
  let ow1 = min(((w + 1u) * u.OW + u.W - 1u) / u.W, u.OW);
  let base = u.o0 + plane * u.OH * u.OW;
  var acc = 0.0;
  for (var oh = oh0; oh < oh1; oh++) {
    let h0 = (oh * u.H) / u.OH;
    let h1 = ((oh + 1u) * u.H + u.OH - 1u) / u.OH;
    if (h < h0 || h >= h1) { continue; }
    for (var ow = ow0; ow < ow1; ow++) {
      let w0 = (ow * u.W) / u.OW;
      let w1 = ((ow + 1u) * u.W + u.OW - 1u) / u.OW;
      if (w < w0 || w >= w1) { continue; }
      acc += g[base + oh * u.OW + ow] / f32((h1 - h0) * (w1 - w0));
    }
  }
  dx[u.o1 + i] = acc;`,
      ),
  };
}

/**
 * adaptiveAvgPool2dBackwardKernel for a global pool (OH = OW = 1, H·W a multiple of 4): dx[plane,
 * :] = g[plane] / (H·W), a vec4 store per thread (the general gather pays its bin arithmetic per
 * pixel; same value bit for bit). dx's element offset o1 must be a multiple of 4. Bindings: g, dx.
 * Grid: planes·H·W/4 threads.
 */
export function globalAvgPool2dBackwardKernel(): Kernel {
  return {
    key: "adaptive-avgpool2d-bwd/global4",
    wgsl: () =>
      flatKernelWgsl({
        params: PARAMS,
        wg: POOL_WG,
        bindings: ["read> g", "read_write> dx: vec4<f32>"],
        body: `  let HW4 = u.H * u.W / 4u;
  if (i >= u.planes * HW4) { return; }
  let v = g[u.o0 + i / HW4] / f32(u.H * u.W);
  dx[u.o1 / 4u + i] = vec4<f32>(v);`,
      }),
  };
}

/**
 * avg_pool2d (count_include_pad=True, as torch's default): Σ window / (kh·kw), zero padding.
 * Bindings: x, y. Grid: planes·OH·OW threads.
 */
export function avgPool2dKernel(): Kernel {
  return {
    key: "avgpool2d",
    wgsl: () =>
      pool(
        ["read> x", "read_write> y"],
        "out",
        `${WINDOW}  let base = u.o0 + plane * u.H * u.W;
  var acc = 0.0;
  for (var h = max(h0, 0); h < h1; h++) {
    for (var w = max(w0, 0); w < w1; w++) { acc += x[base + u32(h) * u.W + u32(w)]; }
  }
  y[u.o1 + i] = acc / f32(u.kh * u.kw);`,
      ),
  };
}

/** avg_pool2d backward gather. Bindings: g, dx. Grid: planes·H·W threads. */
export function avgPool2dBackwardKernel(): Kernel {
  return {
    key: "avgpool2d-bwd",
    wgsl: () =>
      pool(
        ["read> g", "read_write> dx"],
        "in-signed",
        `${COVERING}  var acc = 0.0;
  let base = u.o0 + plane * u.OH * u.OW;
  for (var oh = oh0; oh <= oh1; oh++) {
    for (var ow = ow0; ow <= ow1; ow++) { acc += g[base + u32(oh) * u.OW + u32(ow)]; }
  }
  dx[u.o1 + i] = acc / f32(u.kh * u.kw);`,
      ),
  };
}
