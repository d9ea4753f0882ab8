/**
 * SAM's ResizeLongestSide and input preprocessing, as the official predictor applies them.
 *
 * The official `apply_image` resizes through torchvision on a PIL image, so the pixels the encoder
 * sees are PIL's: a separable triangle (bilinear) filter whose support widens when shrinking
 * (antialiasing), 8-bit fixed-point coefficients, and a uint8 image between the horizontal and the
 * vertical pass. {@link resizeBilinearPil} reproduces Pillow's `Resample.c` bit for bit, since an
 * off-by-one pixel shifts every embedding downstream.
 */

// Sam's pixel_mean / pixel_std buffers (same values as sam.ts; kept here so this host-only module
// does not pull in the model and its GPU ops).
const PIXEL_MEAN = [123.675, 116.28, 103.53];
const PIXEL_STD = [58.395, 57.12, 57.375];

/** (newH, newW) with the long side equal to `long`: int(side·scale + 0.5), as the Python code. */
export function getPreprocessShape(h: number, w: number, long: number): [number, number] {
  const scale = long / Math.max(h, w);
  return [Math.trunc(h * scale + 0.5), Math.trunc(w * scale + 0.5)];
}

/** Pillow's fixed-point precision for 8-bit images (32 − 8 − 2). */
const PRECISION_BITS = 22;

/** Per output pixel: first input index, tap count and fixed-point weights (`Resample.c`). */
interface Coeffs {
  ksize: number;
  bounds: Int32Array;
  kk: Int32Array;
}

function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 1 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1 ? 1 - t : 0;
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      const v = x < xmax ? (ww !== 0 ? k[x] / ww : k[x]) : 0;
      kk[xx * ksize + x] = Math.trunc(
        v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS),
      );
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(v: number): number {
  if (v >= 1 << PRECISION_BITS << 8) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS;
}

/**
 * Resizes an interleaved 8-bit image (HWC, `c` channels) to newH×newW exactly as
 * `PIL.Image.resize(..., Resample.BILINEAR)`: horizontal pass into a uint8 image, then vertical.
 */
export function resizeBilinearPil(
  src: Uint8Array,
  h: number,
  w: number,
  c: number,
  newH: number,
  newW: number,
): Uint8Array {
  if (src.length !== h * w * c) {
    throw new Error(`resizeBilinearPil: ${src.length} bytes for a ${h}x${w}x${c} image`);
  }
  if (!(newH >= 1 && newW >= 1)) {
    throw new Error(`resizeBilinearPil: bad target size ${newH}x${newW}`);
  }
  const half = 1 << (PRECISION_BITS - 1);
  let cur = src, curW = w;
  if (newW !== w) {
    const { ksize, bounds, kk } = precomputeCoeffs(w, newW);
    const out = new Uint8Array(h * newW * c);
    for (let y = 0; y < h; y++) {
      const row = y * w * c;
      for (let xx = 0; xx < newW; xx++) {
        const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], k0 = xx * ksize;
        for (let ch = 0; ch < c; ch++) {
          let ss = half;
          for (let x = 0; x < xmax; x++) ss += src[row + (x + xmin) * c + ch] * kk[k0 + x];
          out[(y * newW + xx) * c + ch] = clip8(ss);
        }
      }
    }
    cur = out;
    curW = newW;
  }
  if (newH !== h) {
    const { ksize, bounds, kk } = precomputeCoeffs(h, newH);
    const out = new Uint8Array(newH * curW * c);
    const stride = curW * c;
    for (let yy = 0; yy < newH; yy++) {
      const ymin = bounds[yy * 2], ymax = bounds[yy * 2 + 1], k0 = yy * ksize;
      for (let i = 0; i < stride; i++) {
        let ss = half;
        for (let y = 0; y < ymax; y++) ss += cur[(y + ymin) * stride + i] * kk[k0 + y];
        out[yy * stride + i] = clip8(ss);
      }
    }
    cur = out;
  }
  return cur === src ? src.slice() : cur;
}

/** An 8-bit HWC image with its size. */
export interface ResizedImage {
  data: Uint8Array;
  height: number;
  width: number;
}

/** ResizeLongestSide.apply_image: RGB uint8 HWC → long side `long`, PIL bilinear. */
export function applyImage(
  img: Uint8Array,
  h: number,
  w: number,
  long: number,
  channels = 3,
): ResizedImage {
  const [nh, nw] = getPreprocessShape(h, w, long);
  return { data: resizeBilinearPil(img, h, w, channels, nh, nw), height: nh, width: nw };
}

/** ResizeLongestSide.apply_coords: (x, y) pairs from original-image to model-input pixels. */
export function applyCoords(
  xy: ArrayLike<number>,
  origHw: [number, number],
  long: number,
): Float32Array {
  if (xy.length % 2 !== 0) {
    throw new Error(`applyCoords: ${xy.length} values is not a list of (x, y) pairs`);
  }
  const [oh, ow] = origHw;
  const [nh, nw] = getPreprocessShape(oh, ow, long);
  const out = new Float32Array(xy.length);
  for (let i = 0; i < xy.length; i += 2) {
    // Float64 products, then f32, as numpy float64 → torch.float.
    out[i] = xy[i] * (nw / ow);
    out[i + 1] = xy[i + 1] * (nh / oh);
  }
  return out;
}

/** ResizeLongestSide.apply_boxes: (x0, y0, x1, y1) boxes, corners transformed as points. */
export function applyBoxes(
  boxes: ArrayLike<number>,
  origHw: [number, number],
  long: number,
): Float32Array {
  if (boxes.length % 4 !== 0) {
    throw new Error(`applyBoxes: ${boxes.length} values is not a list of (x0, y0, x1, y1) boxes`);
  }
  return applyCoords(boxes, origHw, long);
}

/**
 * Sam.preprocess on the host: (x − mean)/std per channel, CHW, zero-padded bottom/right to
 * S×S → [1, 3, S, S] values.
 */
export function preprocess(img: ResizedImage, imgSize: number): Float32Array {
  const { data, height: h, width: w } = img;
  if (data.length !== h * w * 3) {
    throw new Error(`preprocess: ${data.length} bytes for a ${h}x${w}x3 image`);
  }
  if (h > imgSize || w > imgSize) {
    throw new Error(`preprocess: ${h}x${w} image is larger than the ${imgSize} model input`);
  }
  const s = imgSize;
  const out = new Float32Array(3 * s * s);
  for (let ch = 0; ch < 3; ch++) {
    // f32 buffers and f32 arithmetic, as torch does it.
    const m = Math.fround(PIXEL_MEAN[ch]), sd = Math.fround(PIXEL_STD[ch]), base = ch * s * s;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        out[base + y * s + x] = Math.fround(data[(y * w + x) * 3 + ch] - m) / sd;
      }
    }
  }
  return out;
}
