/**
 * Deep-zoom geometry (OpenSeadragon's level numbering) and tile cutting from a slide pyramid.
 *
 * Deep-zoom level `L` of an image W×H shows it at scale 2^(L − maxLevel), maxLevel =
 * ceil(log2(max(W, H))), cut into `tileSize` squares (edge tiles are smaller). A tile is cut from
 * the slide level with the largest downsample not above the tile's (the nearest finer level, as
 * OpenSlide's `get_best_level_for_downsample`) and box-averaged down to the tile's size, so a level
 * the file lacks is made from the next finer one.
 */
import { bestLevelForDownsample } from "../wsi/tissue.ts";

/** Deep-zoom description of one image, as the page's OpenSeadragon tile source takes it. */
export interface DeepZoomInfo {
  width: number;
  height: number;
  tileSize: number;
  minLevel: number;
  maxLevel: number;
}

/** Most source pixels one tile may read (bounds the coarsest levels of huge slides). */
const MAX_SOURCE_PIXELS = 4096 * 4096;

/** Deep-zoom levels of an image whose coarsest stored level has downsample `coarsest`. */
export function deepZoomInfo(
  width: number,
  height: number,
  coarsest: number,
  tileSize = 256,
): DeepZoomInfo {
  const maxLevel = Math.ceil(Math.log2(Math.max(width, height, 1)));
  // Levels coarser than the coarsest stored one read (ds / coarsest)² source pixels per output
  // pixel: stop where a tile would need more than MAX_SOURCE_PIXELS.
  const extra = Math.floor(Math.log2(Math.sqrt(MAX_SOURCE_PIXELS) / tileSize));
  const minLevel = Math.max(0, maxLevel - Math.floor(Math.log2(Math.max(1, coarsest))) - extra);
  return { width, height, tileSize, minLevel, maxLevel };
}

/** Where one deep-zoom tile lies: level-0 origin, downsample, and output size. */
export interface TileGeometry {
  /** Level-0 pixels per tile pixel. */
  downsample: number;
  x0: number;
  y0: number;
  /** Tile size in pixels (edge tiles are smaller). */
  width: number;
  height: number;
}

/**
 * Validates a tile address and returns its geometry, or an error message (a 400) when the level
 * or the indices are not integers within the pyramid.
 */
export function tileGeometry(
  info: DeepZoomInfo,
  level: number,
  tx: number,
  ty: number,
): TileGeometry | string {
  for (const [k, v] of [["level", level], ["x", tx], ["y", ty]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) return `${k} must be a non-negative integer`;
  }
  if (level < info.minLevel || level > info.maxLevel) {
    return `level must be in [${info.minLevel}, ${info.maxLevel}], got ${level}`;
  }
  const ds = 2 ** (info.maxLevel - level);
  const lw = Math.ceil(info.width / ds), lh = Math.ceil(info.height / ds);
  const nx = Math.ceil(lw / info.tileSize), ny = Math.ceil(lh / info.tileSize);
  if (tx >= nx || ty >= ny) return `tile (${tx}, ${ty}) is outside level ${level} (${nx}x${ny})`;
  const T = info.tileSize;
  return {
    downsample: ds,
    x0: tx * T * ds,
    y0: ty * T * ds,
    width: Math.min(T, lw - tx * T),
    height: Math.min(T, lh - ty * T),
  };
}

/** The reader side a tile needs (pipeline/wsi/slide.ts's Slide satisfies it). */
export interface PyramidSource {
  levels: { width: number; height: number; downsample: number }[];
  readRegion(level: number, x0: number, y0: number, w: number, h: number): Promise<Uint8Array>;
}

/**
 * RGBA pixels of a tile (w·h·4) from the nearest finer level, box-averaged. Pixels outside the
 * slide come back with alpha 0, as the reader gives them. `signal` aborts between the read and the
 * resampling (a client that went away costs no resampling or encoding).
 */
export async function cutTile(
  src: PyramidSource,
  g: TileGeometry,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const lv = bestLevelForDownsample(src.levels, g.downsample);
  const lds = src.levels[lv].downsample;
  const r = g.downsample / lds; // source pixels per output pixel (>= 1 up to rounding)
  // One extra source pixel when enlarging covers the sub-pixel offset of the tile's origin.
  const pad = r < 1 ? 1 : 0;
  const sw = Math.max(1, Math.ceil(g.width * r) + pad),
    sh = Math.max(1, Math.ceil(g.height * r) + pad);
  if (sw * sh > MAX_SOURCE_PIXELS * 1.1) {
    throw new Error(`tile needs ${sw}x${sh} source pixels (limit ${MAX_SOURCE_PIXELS})`);
  }
  const px = await src.readRegion(lv, g.x0, g.y0, sw, sh);
  signal?.throwIfAborted();
  if (sw === g.width && sh === g.height) return px;
  if (r < 1) {
    // A level coarser than the tile (overlay maps): nearest source pixel of each tile pixel centre.
    const frac = g.x0 / lds - Math.floor(g.x0 / lds), fracY = g.y0 / lds - Math.floor(g.y0 / lds);
    return nearestUpsample(px, sw, sh, g.width, g.height, r, frac, fracY);
  }
  return boxDownsample(px, sw, sh, g.width, g.height, r);
}

/** Nearest-neighbour enlargement: tile pixel x reads source floor((x + 0.5)·r + offset). */
export function nearestUpsample(
  px: Uint8Array,
  sw: number,
  sh: number,
  w: number,
  h: number,
  r: number,
  offX: number,
  offY: number,
): Uint8Array {
  const out = new Uint8Array(w * h * 4);
  const src32 = new Uint32Array(px.buffer, px.byteOffset, sw * sh);
  const out32 = new Uint32Array(out.buffer);
  const xs = Int32Array.from(
    { length: w },
    (_, x) => Math.min(sw - 1, Math.floor((x + 0.5) * r + offX)),
  );
  for (let y = 0; y < h; y++) {
    const sy = Math.min(sh - 1, Math.floor((y + 0.5) * r + offY));
    for (let x = 0; x < w; x++) out32[y * w + x] = src32[sy * sw + xs[x]];
  }
  return out;
}

/** Averages `r`×`r` source boxes (fractional edges rounded to whole pixels) into each output pixel. */
export function boxDownsample(
  px: Uint8Array,
  sw: number,
  sh: number,
  w: number,
  h: number,
  r: number,
): Uint8Array {
  const out = new Uint8Array(w * h * 4);
  const xs = new Int32Array(w + 1);
  for (let x = 0; x <= w; x++) xs[x] = Math.min(sw, Math.round(x * r));
  for (let x = 0; x < w; x++) if (xs[x + 1] <= xs[x]) xs[x + 1] = Math.min(sw, xs[x] + 1);
  const acc = new Float64Array(w * 4);
  for (let y = 0; y < h; y++) {
    let y0 = Math.round(y * r), y1 = Math.round((y + 1) * r);
    y0 = Math.min(y0, sh - 1);
    y1 = Math.min(Math.max(y1, y0 + 1), sh);
    acc.fill(0);
    for (let sy = y0; sy < y1; sy++) {
      const row = sy * sw * 4;
      for (let x = 0; x < w; x++) {
        const a = xs[x], b = Math.max(xs[x + 1], a + 1);
        let r0 = 0, g0 = 0, b0 = 0, a0 = 0;
        for (let sx = Math.min(a, sw - 1); sx < Math.min(b, sw); sx++) {
          const o = row + sx * 4;
          r0 += px[o];
          g0 += px[o + 1];
          b0 += px[o + 2];
          a0 += px[o + 3];
        }
        acc[x * 4] += r0;
        acc[x * 4 + 1] += g0;
        acc[x * 4 + 2] += b0;
        acc[x * 4 + 3] += a0;
      }
    }
    for (let x = 0; x < w; x++) {
      const a = Math.min(xs[x], sw - 1), b = Math.min(Math.max(xs[x + 1], a + 1), sw);
      const n = (b - a) * (y1 - y0);
      const o = (y * w + x) * 4;
      for (let c = 0; c < 4; c++) out[o + c] = Math.round(acc[x * 4 + c] / n);
    }
  }
  return out;
}

/** RGBA composited over white glass, as RGBA with alpha 255 (what the JPEG tile shows). */
export function overWhite(rgba: Uint8Array): Uint8Array {
  const out = new Uint8Array(rgba.length);
  for (let i = 0; i < rgba.length; i += 4) {
    const a = rgba[i + 3];
    for (let c = 0; c < 3; c++) {
      out[i + c] = a === 255 ? rgba[i + c] : Math.round((rgba[i + c] * a + 255 * (255 - a)) / 255);
    }
    out[i + 3] = 255;
  }
  return out;
}
