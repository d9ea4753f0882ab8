/**
 * Class activation maps as EP-SAM computes them (`generate_cam_masks`), NaN-safe: raw CAM
 * (fc weight · layer4[0] features) → ReLU → min-max → uint8, averaged over the input rotated by
 * 0/90/180/270° (each CAM rotated back), thresholded at a percentile of its non-zero values,
 * opened with a square, resized to the patch. The small per-patch maps stay on the CPU: they are
 * 32×32 at most before the final resize.
 *
 * Faithful details of the reference: the uint8 casts truncate; the percentile is taken on the
 * feature-resolution average; its `cv2.resize(..., cv2.INTER_LANCZOS4)` passes the flag as `dst`,
 * so the resize is bilinear (half-pixel centres, as here).
 */
import { openSquare } from "./morphology.ts";

export type CamDataset = "camelyon16" | "camelyon17";

export interface CamOptions {
  /** Percentile of non-zero CAM values used as threshold (10 for camelyon16, 30 for camelyon17). */
  percentile?: number;
  /** Side of the square structuring element of the opening (21 / 5). */
  openKernel?: number;
  /** Open after resizing to the patch size (camelyon16) or before (camelyon17). */
  openAfterResize?: boolean;
}

export function camDefaults(dataset: CamDataset): Required<CamOptions> {
  return dataset === "camelyon16"
    ? { percentile: 10, openKernel: 21, openAfterResize: true }
    : { percentile: 30, openKernel: 5, openAfterResize: false };
}

/** ReLU, min-max and uint8 truncation of one raw CAM; `empty` when it is all zero. */
function camToU8(raw: ArrayLike<number>): { u8: Uint8Array; empty: boolean } {
  const n = raw.length;
  const v = new Float64Array(n);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    v[i] = Math.max(raw[i], 0);
    lo = Math.min(lo, v[i]);
    hi = Math.max(hi, v[i]);
  }
  const u8 = new Uint8Array(n);
  const range = hi - lo;
  if (!(range > 0)) return { u8, empty: true };
  for (let i = 0; i < n; i++) u8[i] = Math.floor((255 * (v[i] - lo)) / range);
  return { u8, empty: false };
}

/**
 * A row-major h×w image of `c` interleaved channels turned by k·90° counter-clockwise (the result
 * is w×h for odd k; np.rot90 for c = 1); always a new array.
 */
function rotateQuarterTurns<T extends Uint8Array | Float32Array | Float64Array>(
  a: T,
  h: number,
  w: number,
  c: number,
  k: number,
): { data: T; h: number; w: number } {
  const kk = ((k % 4) + 4) % 4;
  if (kk === 0) return { data: a.slice() as T, h, w };
  const ctor = a.constructor as new (n: number) => T;
  const out = new ctor(a.length);
  const [oh, ow] = kk % 2 ? [w, h] : [h, w];
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let sy: number, sx: number;
      if (kk === 1) [sy, sx] = [x, w - 1 - y];
      else if (kk === 2) [sy, sx] = [h - 1 - y, w - 1 - x];
      else [sy, sx] = [h - 1 - x, y];
      for (let ch = 0; ch < c; ch++) out[(y * ow + x) * c + ch] = a[(sy * w + sx) * c + ch];
    }
  }
  return { data: out, h: oh, w: ow };
}

/** numpy.percentile with linear interpolation. */
export function percentile(values: ArrayLike<number>, q: number): number {
  const s = Float64Array.from(values).sort();
  if (!s.length) return NaN;
  const pos = (q / 100) * (s.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/** Bilinear resize with half-pixel centres (cv2 INTER_LINEAR / torch align_corners=False). */
export function resizeBilinear(
  src: ArrayLike<number>,
  sh: number,
  sw: number,
  dh: number,
  dw: number,
): Float64Array {
  const out = new Float64Array(dh * dw);
  const sy = sh / dh, sx = sw / dw;
  const xs0 = new Int32Array(dw), xs1 = new Int32Array(dw), fxs = new Float64Array(dw);
  for (let x = 0; x < dw; x++) {
    let fx = (x + 0.5) * sx - 0.5;
    if (fx < 0) fx = 0;
    const x0 = Math.min(Math.floor(fx), sw - 1);
    xs0[x] = x0;
    xs1[x] = Math.min(x0 + 1, sw - 1);
    fxs[x] = x0 >= sw - 1 ? 0 : fx - x0;
  }
  for (let y = 0; y < dh; y++) {
    let fy = (y + 0.5) * sy - 0.5;
    if (fy < 0) fy = 0;
    const y0 = Math.min(Math.floor(fy), sh - 1);
    const y1 = Math.min(y0 + 1, sh - 1);
    const wy = y0 >= sh - 1 ? 0 : fy - y0;
    for (let x = 0; x < dw; x++) {
      const a = src[y0 * sw + xs0[x]], b = src[y0 * sw + xs1[x]];
      const c = src[y1 * sw + xs0[x]], d = src[y1 * sw + xs1[x]];
      const top = a + (b - a) * fxs[x], bot = c + (d - c) * fxs[x];
      out[y * dw + x] = top + (bot - top) * wy;
    }
  }
  return out;
}

export interface CamResult {
  /** Binary tumour mask at patch size (0/1). */
  mask: Uint8Array;
  /** Min-max-normalised average CAM at patch size (float in [0,1]), used to sample prompts. */
  norm: Float32Array;
  /** Rotation-averaged uint8 CAM at feature resolution. */
  avgU8: Uint8Array;
  /** True when the CAM was all zero (the reference would produce NaN): the mask is empty. */
  empty: boolean;
}

/**
 * Post-processes raw CAMs of the rotated inputs. `raws[k]` is the raw CAM (h×w, row-major) of the
 * image rotated by k·90° counter-clockwise; each is rotated back before averaging.
 */
function camMasksFromRaw(
  raws: ArrayLike<number>[],
  h: number,
  w: number,
  outH: number,
  outW: number,
  opts: Required<CamOptions>,
): CamResult {
  const sum = new Float64Array(h * w);
  let allEmpty = true;
  raws.forEach((raw, k) => {
    // A CAM of a k-rotated square image is rotated back by −k quarter turns.
    const hk = k % 2 ? w : h, wk = k % 2 ? h : w;
    const { u8, empty } = camToU8(raw);
    if (!empty) allEmpty = false;
    const back = rotateQuarterTurns(u8, hk, wk, 1, -k);
    for (let i = 0; i < sum.length; i++) sum[i] += back.data[i];
  });
  const avgU8 = new Uint8Array(h * w);
  for (let i = 0; i < avgU8.length; i++) avgU8[i] = Math.floor(sum[i] / raws.length);
  let lo = 255, hi = 0;
  for (const v of avgU8) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const normSmall = Float64Array.from(avgU8, (v) => (v - lo) / (hi - lo + 1e-8));
  const norm = Float32Array.from(resizeBilinear(normSmall, h, w, outH, outW));
  const nonZero = avgU8.filter((v) => v !== 0);
  let mask: Uint8Array;
  if (!nonZero.length) {
    mask = new Uint8Array(outH * outW);
  } else {
    const thr = percentile(nonZero, opts.percentile);
    if (opts.openAfterResize) {
      const big = resizeBilinear(avgU8, h, w, outH, outW);
      const bin = Uint8Array.from(big, (v) => (Math.min(255, Math.floor(v + 0.5)) > thr ? 1 : 0));
      mask = openSquare(bin, outW, outH, opts.openKernel);
    } else {
      const bin = Uint8Array.from(avgU8, (v) => (v > thr ? 1 : 0));
      const opened = openSquare(bin, w, h, opts.openKernel);
      const big = resizeBilinear(opened, h, w, outH, outW);
      mask = Uint8Array.from(big, (v) => (Math.floor(v + 0.5) !== 0 ? 1 : 0));
    }
  }
  return { mask, norm, avgU8, empty: allEmpty || !nonZero.length };
}

/** Rotates an HWC uint8 image by k·90° counter-clockwise (PIL's rotate(90k, expand=True)). */
export function rotateImage(
  img: Uint8Array,
  h: number,
  w: number,
  c: number,
  k: number,
): { data: Uint8Array; h: number; w: number } {
  return rotateQuarterTurns(img, h, w, c, k);
}

/** What {@link generateCamMasks} needs of the classifier. */
export interface CamModel {
  camRaw(x: import("../engine/tensor.ts").Tensor): import("../engine/tensor.ts").Tensor;
}

/**
 * EP-SAM's `generate_cam_masks` for one RGB uint8 patch (HWC): the four rotations run as one batch
 * (square patches), then {@link camMasksFromRaw}. Set `rotations: 1` for the "no rotation
 * averaging" ablation.
 */
export async function generateCamMasks(
  model: CamModel,
  image: Uint8Array,
  h: number,
  w: number,
  opts: Required<CamOptions> & { rotations?: 1 | 4 },
): Promise<CamResult & { rawRot0: Float32Array; featH: number; featW: number }> {
  const { tensor, tidy, noGrad } = await import("../engine/mod.ts");
  const n = h === w ? (opts.rotations ?? 4) : 1;
  const batch = new Float32Array(n * 3 * h * w);
  for (let k = 0; k < n; k++) {
    const r = rotateImage(image, h, w, 3, k);
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < h * w; i++) batch[((k * 3 + c) * h * w) + i] = r.data[i * 3 + c] / 255;
    }
  }
  const cam = tidy(() => noGrad(() => model.camRaw(tensor(batch, [n, 3, h, w]))));
  const [, fh, fw] = cam.shape;
  const data = await cam.data() as Float32Array;
  cam.dispose();
  const raws: Float32Array[] = [];
  for (let k = 0; k < n; k++) raws.push(data.subarray(k * fh * fw, (k + 1) * fh * fw));
  const res = camMasksFromRaw(raws, fh, fw, h, w, opts);
  return { ...res, rawRot0: raws[0].slice(), featH: fh, featW: fw };
}
