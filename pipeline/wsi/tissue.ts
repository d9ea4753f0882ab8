/**
 * Tissue mask as the reference builds it (EP-SAM `tools/wsi_preprocess.py`, `make_tissue_mask`
 * called from `CreateTissueMask`): HSV saturation of a low-resolution level, Otsu threshold,
 * morphological closing with a 7×7 square twice, median filter 15. Each step follows the OpenCV
 * call the reference makes, including its rounding and border rules, so masks agree exactly.
 */
import { morph } from "../../model/morphology.ts";

import { Progress } from "../progress.ts";
import { InputError } from "../../engine/io/errors.ts";

/** Options of {@link tissueMask}; defaults are the reference's. */
export interface TissueOptions {
  /** Side of the square structuring element of the closing (cv2 kernel 7×7). */
  kernel?: number;
  /** Closing iterations (cv2 `iterations=2`: dilate twice, then erode twice). */
  iterations?: number;
  /** Median filter aperture (cv2.medianBlur 15); 0 or 1 disables it. */
  median?: number;
}

/**
 * OpenCV's 8-bit HSV saturation, `S = round(255·(max−min)/max)` in its 12-bit fixed point.
 * Channel order does not matter for S (the reference feeds RGB to a BGR conversion).
 */
export function saturation(pixels: Uint8Array, channels: number, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0, s = 0; i < count; i++, s += channels) {
    const r = pixels[s], g = pixels[s + 1], b = pixels[s + 2];
    const v = r > g ? (r > b ? r : b) : (g > b ? g : b);
    const mn = r < g ? (r < b ? r : b) : (g < b ? g : b);
    out[i] = v === 0 ? 0 : (((v - mn) * SDIV[v] + 2048) >> 12);
  }
  return out;
}

const SDIV = (() => {
  const t = new Int32Array(256);
  for (let v = 1; v < 256; v++) t[v] = Math.round((255 << 12) / v);
  return t;
})();

/** Otsu's threshold as cv2.threshold(THRESH_OTSU) computes it; pixels `> t` are foreground. */
export function otsuThreshold(gray: Uint8Array): number {
  const hist = new Float64Array(256);
  for (let i = 0; i < gray.length; i++) hist[gray[i]]++;
  const scale = 1 / gray.length;
  let mu = 0;
  for (let i = 0; i < 256; i++) mu += i * hist[i];
  mu *= scale;
  let q1 = 0, mu1 = 0, maxSigma = 0, maxVal = 0;
  const eps = 1.1920928955078125e-7; // FLT_EPSILON
  for (let i = 0; i < 256; i++) {
    const p = hist[i] * scale;
    mu1 *= q1;
    q1 += p;
    const q2 = 1 - q1;
    if (Math.min(q1, q2) < eps || Math.max(q1, q2) > 1 - eps) continue;
    mu1 = (mu1 + i * p) / q1;
    const mu2 = (mu - q1 * mu1) / q2;
    const sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
    if (sigma > maxSigma) {
      maxSigma = sigma;
      maxVal = i;
    }
  }
  return maxVal;
}

/**
 * cv2.medianBlur for 8-bit single-channel images (replicated border). Binary images take a
 * counting path (median = majority); others a sliding histogram with a coarse/fine pair.
 */
export function medianBlur(src: Uint8Array, width: number, height: number, k: number): Uint8Array {
  if (k <= 1) return src.slice();
  if (k % 2 === 0) throw new Error(`medianBlur: aperture ${k} must be odd`);
  const r = k >> 1, half = (k * k) >> 1; // median = element #half (0-based) of k² sorted values
  const cx = (x: number) => (x < 0 ? 0 : x >= width ? width - 1 : x);
  const cy = (y: number) => (y < 0 ? 0 : y >= height ? height - 1 : y);
  const out = new Uint8Array(width * height);
  let lo = 255, hi = 0;
  for (let i = 0; i < src.length; i++) {
    if (src[i] < lo) lo = src[i];
    if (src[i] > hi) hi = src[i];
  }
  let binary = true;
  for (let i = 0; i < src.length && binary; i++) binary = src[i] === lo || src[i] === hi;
  if (binary) {
    // Count of "hi" pixels in each window, with border replication, separably.
    const rows = new Int32Array(width * height);
    for (let y = 0; y < height; y++) {
      const base = y * width;
      let c = 0;
      for (let d = -r; d <= r; d++) c += src[base + cx(d)] === hi ? 1 : 0;
      for (let x = 0; x < width; x++) {
        rows[base + x] = c;
        c += (src[base + cx(x + r + 1)] === hi ? 1 : 0) - (src[base + cx(x - r)] === hi ? 1 : 0);
      }
    }
    for (let x = 0; x < width; x++) {
      let c = 0;
      for (let d = -r; d <= r; d++) c += rows[cy(d) * width + x];
      for (let y = 0; y < height; y++) {
        out[y * width + x] = c > half ? hi : lo;
        c += rows[cy(y + r + 1) * width + x] - rows[cy(y - r) * width + x];
      }
    }
    return out;
  }
  const fine = new Int32Array(256), coarse = new Int32Array(16);
  for (let y = 0; y < height; y++) {
    fine.fill(0);
    coarse.fill(0);
    for (let dy = -r; dy <= r; dy++) {
      const row = cy(y + dy) * width;
      for (let dx = -r; dx <= r; dx++) {
        const v = src[row + cx(dx)];
        fine[v]++;
        coarse[v >> 4]++;
      }
    }
    for (let x = 0; x < width; x++) {
      let acc = 0, c = 0;
      while (acc + coarse[c] <= half) acc += coarse[c++];
      let v = c << 4;
      while (acc + fine[v] <= half) acc += fine[v++];
      out[y * width + x] = v;
      if (x + 1 < width) {
        const xo = cx(x - r), xi = cx(x + r + 1);
        for (let dy = -r; dy <= r; dy++) {
          const row = cy(y + dy) * width;
          const a = src[row + xo], b = src[row + xi];
          fine[a]--;
          coarse[a >> 4]--;
          fine[b]++;
          coarse[b >> 4]++;
        }
      }
    }
  }
  return out;
}

/**
 * Tissue mask (0/255) of an RGB(A) image: saturation → Otsu → closing → median.
 * `pixels` holds `width*height` pixels of `channels` (3 or 4; alpha is dropped as the reference).
 */
export function tissueMask(
  pixels: Uint8Array,
  width: number,
  height: number,
  channels = 4,
  opts: TissueOptions = {},
): Uint8Array {
  return tissueMaskFromSaturation(
    saturation(pixels, channels, width * height),
    width,
    height,
    opts,
  );
}

/** The steps after the saturation, for callers that computed it strip by strip. */
function tissueMaskFromSaturation(
  sat: Uint8Array,
  width: number,
  height: number,
  opts: TissueOptions = {},
): Uint8Array {
  const k = opts.kernel ?? 7, it = opts.iterations ?? 2, med = opts.median ?? 15;
  const t = otsuThreshold(sat);
  let m: Uint8Array = new Uint8Array(sat.length);
  for (let i = 0; i < sat.length; i++) m[i] = sat[i] > t ? 255 : 0;
  if (k > 1 && it > 0) {
    // n iterations of a k-square equal one pass of a (n(k-1)+1)-square (cv2 does this too).
    const big = it * (k - 1) + 1;
    m = morph(morph(m, width, height, big, "dilate"), width, height, big, "erode");
  }
  if (med > 1) m = medianBlur(m, width, height, med);
  return m;
}

/** Minimal slide surface used here (matches `pipeline/wsi/slide.ts`). */
export interface TissueSlide {
  /** The file, for error messages. */
  path?: string;
  levels: {
    width: number;
    height: number;
    downsample: number;
    tileWidth?: number;
    tileHeight?: number;
  }[];
  readRegion(level: number, x0: number, y0: number, w: number, h: number): Promise<Uint8Array>;
}

/** Level whose downsample is the largest not above `target` (OpenSlide's rule). */
export function bestLevelForDownsample(
  levels: { downsample: number }[],
  target: number,
): number {
  let best = 0;
  for (let i = 0; i < levels.length; i++) {
    if (levels[i].downsample <= target * (1 + 1e-6)) best = i;
  }
  return best;
}

/** A tissue mask at one slide level with the scale that maps it to level 0. */
export interface SlideTissueMask {
  mask: Uint8Array;
  width: number;
  height: number;
  level: number;
  downsample: number;
}

/**
 * Largest level whose tissue mask is computed at full resolution: 2^27 pixels (every CAMELYON
 * slide's downsample-16 level fits), about 1.2 GB at the limit for the mask steps (saturation,
 * closing, median). A larger level is area-averaged while it streams (see below).
 */
const MAX_TISSUE_LEVEL_PIXELS = 2 ** 27;
/**
 * Most level pixels streamed to build a reduced tissue image: 2^36 (~262144²), three times the
 * largest CAMELYON slide. Beyond it the file is refused (it would take hours, and no scanner
 * writes such a single-level file).
 */
const MAX_TISSUE_STREAM_PIXELS = 2 ** 36;

/**
 * Tissue mask of a slide level (default: the level nearest downsample 16, what the
 * reference's file name `_tissue_mask_ds16` and its `mask_downscale=16` assume). The level is
 * read in strips so only the 1-byte saturation of the whole level is held.
 *
 * A slide without a small level (a single-level 60000² TIFF) has no level near downsample 16:
 * then the chosen level is streamed in tile-aligned bands and area-averaged by an integer factor
 * (to downsample 16, or more if the mask would still exceed {@link MAX_TISSUE_LEVEL_PIXELS}),
 * as a pyramid level would have been, so memory stays bounded by one band and the mask.
 */
export async function slideTissueMask(
  slide: TissueSlide,
  level?: number,
  opts: TissueOptions = {},
): Promise<SlideTissueMask> {
  const lv = level ?? bestLevelForDownsample(slide.levels, 16);
  const L = slide.levels[lv];
  const name = slide.path ?? "slide";
  if (!L) {
    throw new Error(`${name}: slide has no level ${lv} (levels 0..${slide.levels.length - 1})`);
  }
  const { width, height, downsample } = L;
  if (width * height > MAX_TISSUE_LEVEL_PIXELS) {
    return await reducedTissueMask(slide, lv, name, opts);
  }
  const sat = new Uint8Array(width * height);
  const strip = Math.max(1, Math.floor((16 << 20) / (4 * Math.max(1, width))));
  for (let y = 0; y < height; y += strip) {
    const h = Math.min(strip, height - y);
    const rgba = await slide.readRegion(lv, 0, Math.round(y * downsample), width, h);
    sat.set(saturation(rgba, 4, width * h), y * width);
  }
  return {
    mask: tissueMaskFromSaturation(sat, width, height, opts),
    width,
    height,
    level: lv,
    downsample,
  };
}

/** The integer reduction of a level to reach downsample 16 and fit the mask limit. */
function tissueReduction(width: number, height: number, downsample: number): number {
  let f = Math.max(1, Math.round(16 / downsample));
  while (Math.ceil(width / f) * Math.ceil(height / f) > MAX_TISSUE_LEVEL_PIXELS) f++;
  return f;
}

/** Mean RGB of each f×f block of output row `r` of an RGBA region `w`×`h` (clipped blocks). */
function blockMeans(rgba: Uint8Array, w: number, h: number, f: number, r: number, out: Uint8Array) {
  const ya = r * f, yb = Math.min(ya + f, h), nOut = Math.ceil(w / f);
  for (let i = 0; i < nOut; i++) {
    const xa = i * f, xb = Math.min(xa + f, w);
    let R = 0, G = 0, B = 0;
    for (let y = ya; y < yb; y++) {
      for (let p = (y * w + xa) * 4, e = (y * w + xb) * 4; p < e; p += 4) {
        R += rgba[p];
        G += rgba[p + 1];
        B += rgba[p + 2];
      }
    }
    const n = (yb - ya) * (xb - xa);
    out[i * 3] = Math.round(R / n);
    out[i * 3 + 1] = Math.round(G / n);
    out[i * 3 + 2] = Math.round(B / n);
  }
}

/** {@link slideTissueMask} of a level too large to hold: streamed and area-averaged by f. */
async function reducedTissueMask(
  slide: TissueSlide,
  lv: number,
  name: string,
  opts: TissueOptions,
): Promise<SlideTissueMask> {
  const L = slide.levels[lv];
  const { width: W, height: H, downsample: ds } = L;
  if (W * H > MAX_TISSUE_STREAM_PIXELS) {
    throw new InputError(
      `${name}: cannot build a tissue mask: level ${lv} is ${W}x${H} (${W * H} pixels) and the ` +
        `file has no smaller level; streaming more than ${MAX_TISSUE_STREAM_PIXELS} pixels is ` +
        `refused (add pyramid levels, e.g. with vips tiffsave --pyramid)`,
    );
  }
  const f = tissueReduction(W, H, ds);
  const ow = Math.ceil(W / f), oh = Math.ceil(H / f);
  const sat = new Uint8Array(ow * oh);
  // Bands of whole output rows, tile-aligned when possible so each tile is decoded once; column
  // chunks keep one read at most ~4 Mpx (16 MiB RGBA).
  const th = L.tileHeight ?? f, tw = L.tileWidth ?? f;
  const bandRows = Math.max(1, Math.ceil(th / f)); // output rows per band
  const bh = bandRows * f;
  const chunkOut = Math.max(Math.ceil(tw / f), Math.floor((1 << 22) / (bh * f)));
  const cw = chunkOut * f;
  const rgb = new Uint8Array(chunkOut * 3);
  // Streaming a level of billions of pixels takes minutes: show it (level rows read).
  const progress = new Progress(
    `tissue mask of ${name.split("/").pop()} (level ${lv} ${W}x${H}, /${f})`,
    H,
    {
      unit: "row",
    },
  );
  for (let y0 = 0; y0 < H; y0 += bh) {
    progress.set(y0);
    const h = Math.min(bh, H - y0);
    for (let x0 = 0; x0 < W; x0 += cw) {
      const w = Math.min(cw, W - x0);
      const rgba = await slide.readRegion(lv, Math.round(x0 * ds), Math.round(y0 * ds), w, h);
      const nOut = Math.ceil(w / f), rows = Math.ceil(h / f), ox0 = x0 / f;
      for (let r = 0; r < rows; r++) {
        blockMeans(rgba, w, h, f, r, rgb);
        sat.set(saturation(rgb, 3, nOut), (y0 / f + r) * ow + ox0);
      }
    }
  }
  progress.finish();
  return {
    mask: tissueMaskFromSaturation(sat, ow, oh, opts),
    width: ow,
    height: oh,
    level: lv,
    downsample: ds * f,
  };
}
