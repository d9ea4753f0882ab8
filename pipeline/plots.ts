/**
 * Raster reports as PNG images with no plotting dependency: mask and CAM overlays and labelled
 * side-by-side panels (the example panels of evaluation and inference). Panel titles use a
 * built-in 5×7 bitmap font, drawn into the image itself. Loss curves are SVG (`loss_curves.ts`).
 */
import { type Image8, toRgb } from "../engine/io/png.ts";

export type Rgb = readonly [number, number, number];

// ------------------------------------------------------------------------------ font

/** 5×7 glyphs: 7 rows, bit 4 the leftmost column (HD44780-style shapes). */
const GLYPHS: Record<string, number[]> = {
  "0": [14, 17, 19, 21, 25, 17, 14],
  "1": [4, 12, 4, 4, 4, 4, 14],
  "2": [14, 17, 1, 2, 4, 8, 31],
  "3": [31, 2, 4, 2, 1, 17, 14],
  "4": [2, 6, 10, 18, 31, 2, 2],
  "5": [31, 16, 30, 1, 1, 17, 14],
  "6": [6, 8, 16, 30, 17, 17, 14],
  "7": [31, 1, 2, 4, 8, 8, 8],
  "8": [14, 17, 17, 14, 17, 17, 14],
  "9": [14, 17, 17, 15, 1, 2, 12],
  A: [14, 17, 17, 17, 31, 17, 17],
  B: [30, 17, 17, 30, 17, 17, 30],
  C: [14, 17, 16, 16, 16, 17, 14],
  D: [28, 18, 17, 17, 17, 18, 28],
  E: [31, 16, 16, 30, 16, 16, 31],
  F: [31, 16, 16, 30, 16, 16, 16],
  G: [14, 17, 16, 23, 17, 17, 15],
  H: [17, 17, 17, 31, 17, 17, 17],
  I: [14, 4, 4, 4, 4, 4, 14],
  J: [7, 2, 2, 2, 2, 18, 12],
  K: [17, 18, 20, 24, 20, 18, 17],
  L: [16, 16, 16, 16, 16, 16, 31],
  M: [17, 27, 21, 21, 17, 17, 17],
  N: [17, 17, 25, 21, 19, 17, 17],
  O: [14, 17, 17, 17, 17, 17, 14],
  P: [30, 17, 17, 30, 16, 16, 16],
  Q: [14, 17, 17, 17, 21, 18, 13],
  R: [30, 17, 17, 30, 20, 18, 17],
  S: [15, 16, 16, 14, 1, 1, 30],
  T: [31, 4, 4, 4, 4, 4, 4],
  U: [17, 17, 17, 17, 17, 17, 14],
  V: [17, 17, 17, 17, 17, 10, 4],
  W: [17, 17, 17, 21, 21, 21, 10],
  X: [17, 17, 10, 4, 10, 17, 17],
  Y: [17, 17, 17, 10, 4, 4, 4],
  Z: [31, 1, 2, 4, 8, 16, 31],
  a: [0, 0, 14, 1, 15, 17, 15],
  b: [16, 16, 22, 25, 17, 17, 30],
  c: [0, 0, 14, 16, 16, 17, 14],
  d: [1, 1, 13, 19, 17, 17, 15],
  e: [0, 0, 14, 17, 31, 16, 14],
  f: [6, 9, 8, 28, 8, 8, 8],
  g: [0, 15, 17, 17, 15, 1, 14],
  h: [16, 16, 22, 25, 17, 17, 17],
  i: [4, 0, 12, 4, 4, 4, 14],
  j: [2, 0, 6, 2, 2, 18, 12],
  k: [16, 16, 18, 20, 24, 20, 18],
  l: [12, 4, 4, 4, 4, 4, 14],
  m: [0, 0, 26, 21, 21, 17, 17],
  n: [0, 0, 22, 25, 17, 17, 17],
  o: [0, 0, 14, 17, 17, 17, 14],
  p: [0, 0, 30, 17, 30, 16, 16],
  q: [0, 0, 13, 19, 15, 1, 1],
  r: [0, 0, 22, 25, 16, 16, 16],
  s: [0, 0, 14, 16, 14, 1, 30],
  t: [8, 8, 28, 8, 8, 9, 6],
  u: [0, 0, 17, 17, 17, 19, 13],
  v: [0, 0, 17, 17, 17, 10, 4],
  w: [0, 0, 17, 17, 21, 21, 10],
  x: [0, 0, 17, 10, 4, 10, 17],
  y: [0, 0, 17, 17, 15, 1, 14],
  z: [0, 0, 31, 2, 4, 8, 31],
  " ": [0, 0, 0, 0, 0, 0, 0],
  ".": [0, 0, 0, 0, 0, 12, 12],
  ",": [0, 0, 0, 0, 12, 4, 8],
  "-": [0, 0, 0, 31, 0, 0, 0],
  "+": [0, 4, 4, 31, 4, 4, 0],
  ":": [0, 12, 12, 0, 12, 12, 0],
  "/": [0, 1, 2, 4, 8, 16, 0],
  "(": [2, 4, 8, 8, 8, 4, 2],
  ")": [8, 4, 2, 2, 2, 4, 8],
  "[": [14, 8, 8, 8, 8, 8, 14],
  "]": [14, 2, 2, 2, 2, 2, 14],
  "_": [0, 0, 0, 0, 0, 0, 31],
  "%": [24, 25, 2, 4, 8, 19, 3],
  "=": [0, 0, 31, 0, 31, 0, 0],
  "<": [2, 4, 8, 16, 8, 4, 2],
  ">": [8, 4, 2, 1, 2, 4, 8],
  "*": [0, 4, 21, 14, 21, 4, 0],
  "#": [10, 10, 31, 10, 31, 10, 10],
  "!": [4, 4, 4, 4, 4, 0, 4],
  "?": [14, 17, 1, 2, 4, 0, 4],
  "'": [12, 4, 8, 0, 0, 0, 0],
  "|": [4, 4, 4, 4, 4, 4, 4],
  "×": [0, 17, 10, 4, 10, 17, 0],
  "∧": [0, 4, 10, 17, 0, 0, 0],
};

/** Width in pixels of `s` drawn at `scale`. */
export function textWidth(s: string, scale = 1): number {
  const n = [...s].length;
  return n ? (n * 6 - 1) * scale : 0;
}

/** Height of one text line at `scale`. */
const textHeight = (scale = 1): number => 7 * scale;

// ------------------------------------------------------------------------------ canvas

/** An RGB raster with the few drawing primitives the plots need. */
export class Canvas {
  readonly data: Uint8Array;
  constructor(readonly width: number, readonly height: number, bg: Rgb = [255, 255, 255]) {
    this.data = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.data.set(bg, i * 3);
  }

  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x), y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.data.set(c, (y * this.width + x) * 3);
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    for (let j = Math.max(0, y); j < Math.min(this.height, y + h); j++) {
      for (let i = Math.max(0, x); i < Math.min(this.width, x + w); i++) {
        this.data.set(c, (j * this.width + i) * 3);
      }
    }
  }

  /** Draws `s` with its top-left corner at (x, y); unknown characters show as '?'. */
  text(x: number, y: number, s: string, c: Rgb = [0, 0, 0], scale = 1): void {
    let cx = x;
    for (const ch of s) {
      const glyph = GLYPHS[ch] ?? GLYPHS["?"];
      for (let r = 0; r < 7; r++) {
        for (let col = 0; col < 5; col++) {
          if (glyph[r] & (16 >> col)) {
            this.fillRect(cx + col * scale, y + r * scale, scale, scale, c);
          }
        }
      }
      cx += 6 * scale;
    }
  }

  /** Copies an image (any channel count) with its top-left corner at (x, y). */
  blit(img: Image8, x: number, y: number): void {
    const rgb = toRgb(img);
    for (let j = 0; j < rgb.height; j++) {
      const ty = y + j;
      if (ty < 0 || ty >= this.height) continue;
      for (let i = 0; i < rgb.width; i++) {
        const tx = x + i;
        if (tx < 0 || tx >= this.width) continue;
        const s = (j * rgb.width + i) * 3;
        this.data.set(rgb.data.subarray(s, s + 3), (ty * this.width + tx) * 3);
      }
    }
  }

  image(): Image8 {
    return { data: this.data, width: this.width, height: this.height, channels: 3 };
  }
}

// ------------------------------------------------------------------------------ overlays

function checkMap(what: string, img: Image8, n: number) {
  if (n !== img.width * img.height) {
    throw new Error(`${what}: ${n} values for a ${img.width}×${img.height} image`);
  }
}

/**
 * Tints the pixels where `mask` is non-zero with `colour` at `alpha`, and draws the mask's
 * outline in full colour so thin regions stay visible.
 */
export function overlay(
  image: Image8,
  mask: ArrayLike<number>,
  colour: Rgb = [0, 255, 0],
  alpha = 0.4,
  outline = true,
): Image8 {
  const img = toRgb(image), { width: w, height: h } = img;
  checkMap("overlay mask", img, mask.length);
  const out = img.data.slice();
  const on = (x: number, y: number) => x >= 0 && y >= 0 && x < w && y < h && mask[y * w + x] !== 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!on(x, y)) continue;
      const edge = outline && (!on(x - 1, y) || !on(x + 1, y) || !on(x, y - 1) || !on(x, y + 1));
      const a = edge ? 1 : alpha, i = (y * w + x) * 3;
      for (let k = 0; k < 3; k++) out[i + k] = Math.round((1 - a) * out[i + k] + a * colour[k]);
    }
  }
  return { data: out, width: w, height: h, channels: 3 };
}

/** Jet-like colormap of v in [0, 1] (blue → cyan → yellow → red). */
export function jet(v: number): Rgb {
  const t = Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0));
  const ch = (o: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - o))));
  return [ch(3), ch(2), ch(1)];
}

/** A map of any resolution, upsampled bilinearly (half-pixel centres) to the image's size. */
export interface ValueMap {
  data: ArrayLike<number>;
  width: number;
  height: number;
}

function sampleMap(m: ValueMap, w: number, h: number): Float64Array {
  const out = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    const fy = Math.min(m.height - 1, Math.max(0, ((y + 0.5) * m.height) / h - 0.5));
    const y0 = Math.floor(fy), y1 = Math.min(m.height - 1, y0 + 1), ty = fy - y0;
    for (let x = 0; x < w; x++) {
      const fx = Math.min(m.width - 1, Math.max(0, ((x + 0.5) * m.width) / w - 0.5));
      const x0 = Math.floor(fx), x1 = Math.min(m.width - 1, x0 + 1), tx = fx - x0;
      const v = (a: number, b: number) => m.data[a * m.width + b];
      out[y * w + x] = (1 - ty) * ((1 - tx) * v(y0, x0) + tx * v(y0, x1)) +
        ty * ((1 - tx) * v(y1, x0) + tx * v(y1, x1));
    }
  }
  return out;
}

/** The map alone through {@link jet}, at its own size or resampled to w×h. */
export function heatmap(map: ValueMap, w = map.width, h = map.height): Image8 {
  const v = w === map.width && h === map.height
    ? Float64Array.from(map.data)
    : sampleMap(map, w, h);
  const out = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) out.set(jet(v[i]), i * 3);
  return { data: out, width: w, height: h, channels: 3 };
}

/** Blends {@link heatmap} of `map` (values in [0, 1], e.g. a CAM) over `image` at `alpha`. */
export function heatmapOverlay(
  image: Image8,
  map: ValueMap | ArrayLike<number>,
  alpha = 0.5,
): Image8 {
  const img = toRgb(image);
  const m: ValueMap = "width" in map && "data" in map
    ? map as ValueMap
    : { data: map as ArrayLike<number>, width: img.width, height: img.height };
  checkMap("heatmapOverlay map", { ...img, width: m.width, height: m.height }, m.data.length);
  const hm = heatmap(m, img.width, img.height);
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = Math.round((1 - alpha) * img.data[i] + alpha * hm.data[i]);
  }
  return { data: out, width: img.width, height: img.height, channels: 3 };
}

/** A binary mask (non-zero on) as a white-on-black image, for a panel. */
export function maskImage(mask: ArrayLike<number>, width: number, height: number): Image8 {
  if (mask.length !== width * height) {
    throw new Error(`maskImage: ${mask.length} values for ${width}×${height}`);
  }
  return { data: Uint8Array.from(mask, (v) => (v !== 0 ? 255 : 0)), width, height, channels: 1 };
}

/** Panels in a row, each with its title above (image, CAM, pseudo-label, prediction, truth…). */
export function sideBySide(
  panels: { title: string; image: Image8 }[],
  opts: { gap?: number; scale?: number } = {},
): Image8 {
  if (!panels.length) throw new Error("sideBySide: no panels");
  const gap = opts.gap ?? 8,
    scale = opts.scale ?? (Math.min(...panels.map((p) => p.image.width)) >= 200 ? 2 : 1);
  const titleH = textHeight(scale) + 2 * gap;
  const W = panels.reduce((a, p) => a + p.image.width, 0) + gap * (panels.length + 1);
  const H = titleH + Math.max(...panels.map((p) => p.image.height)) + gap;
  const c = new Canvas(W, H);
  let x = gap;
  for (const p of panels) {
    let t = p.title;
    while (t.length > 1 && textWidth(t, scale) > p.image.width) t = t.slice(0, -2) + ".";
    c.text(Math.round(x + (p.image.width - textWidth(t, scale)) / 2), gap, t, [0, 0, 0], scale);
    c.blit(p.image, x, titleH);
    x += p.image.width + gap;
  }
  return c.image();
}
