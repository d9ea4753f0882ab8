/** Float64 references of the augmentation ops (torchvision tensor formulas), one sample at a time. */
import { type AugmentParams, cosSin } from "../../pipeline/data/augment.ts";

const GW = [0.299, 0.587, 0.114];

/** Round half to even (grid_sample's nearbyint). */
export function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Flips then rotation of one [C,H,W] sample. `ambiguous[p]` marks output pixels whose source
 * coordinate lies within 1e-4 of a rounding tie (f32 on the GPU may pick the other neighbour).
 */
export function geometricRef(
  x: ArrayLike<number>,
  c: number,
  h: number,
  w: number,
  p: AugmentParams,
): { out: Float64Array; ambiguous: Uint8Array } {
  const hw = h * w;
  const out = new Float64Array(c * hw);
  const ambiguous = new Uint8Array(hw);
  const [ct, st] = cosSin(p.angle);
  const cx = (w - 1) / 2, cy = (h - 1) / 2;
  for (let oy = 0; oy < h; oy++) {
    for (let ox = 0; ox < w; ox++) {
      const xc = ox - cx, yc = oy - cy;
      const fx = ct * xc - st * yc + cx, fy = st * xc + ct * yc + cy;
      const near = (v: number) => Math.abs(Math.abs(v - Math.floor(v)) - 0.5) < 1e-4;
      if (near(fx) || near(fy)) ambiguous[oy * w + ox] = 1;
      const sx = roundEven(fx), sy = roundEven(fy);
      if (sx < 0 || sy < 0 || sx > w - 1 || sy > h - 1) continue;
      const ix = p.hflip ? w - 1 - sx : sx, iy = p.vflip ? h - 1 - sy : sy;
      for (let k = 0; k < c; k++) out[k * hw + oy * w + ox] = x[k * hw + iy * w + ix];
    }
  }
  return { out, ambiguous };
}

const clamp01 = (v: number) => Math.min(1, Math.max(0, v));

function hueShift(r: number, g: number, b: number, hf: number): [number, number, number] {
  const maxc = Math.max(r, g, b), minc = Math.min(r, g, b);
  const eqc = maxc === minc;
  const cr = maxc - minc;
  const s = cr / (eqc ? 1 : maxc);
  const d = eqc ? 1 : cr;
  const rc = (maxc - r) / d, gc = (maxc - g) / d, bc = (maxc - b) / d;
  let h = maxc === r ? bc - gc : maxc === g ? 2 + rc - bc : 4 + gc - rc;
  h = (h / 6 + 1) % 1;
  h = h + hf;
  h = h - Math.floor(h);
  const v = maxc;
  const i0 = Math.floor(h * 6), f = h * 6 - i0, i = ((i0 % 6) + 6) % 6;
  const pp = clamp01(v * (1 - s)), q = clamp01(v * (1 - s * f)), t = clamp01(v * (1 - s * (1 - f)));
  return [
    [v, q, pp, pp, t, v][i],
    [t, v, v, q, pp, pp][i],
    [pp, pp, t, v, v, q][i],
  ] as [number, number, number];
}

/** ColorJitter (in `p.order`) then grayscale of one [3,H,W] sample, in place on a copy. */
export function colourRef(x: ArrayLike<number>, hw: number, p: AugmentParams): Float64Array {
  const img = Float64Array.from(x);
  const R = 0, G = hw, B = 2 * hw;
  const gray = (i: number) => GW[0] * img[R + i] + GW[1] * img[G + i] + GW[2] * img[B + i];
  const blendAll = (f: number, other: (i: number) => number) => {
    for (let i = 0; i < hw; i++) {
      const o = other(i);
      for (const c of [R, G, B]) img[c + i] = clamp01(f * img[c + i] + (1 - f) * o);
    }
  };
  if (p.jitter) {
    for (const op of p.order) {
      if (op === 0) blendAll(p.brightness, () => 0);
      else if (op === 1) {
        let m = 0;
        for (let i = 0; i < hw; i++) m += gray(i);
        m /= hw;
        blendAll(p.contrast, () => m);
      } else if (op === 2) blendAll(p.saturation, gray);
      else {
        for (let i = 0; i < hw; i++) {
          const [r, g, b] = hueShift(img[R + i], img[G + i], img[B + i], p.hue);
          img[R + i] = r, img[G + i] = g, img[B + i] = b;
        }
      }
    }
  }
  if (p.grayscale) {
    for (let i = 0; i < hw; i++) {
      const v = gray(i);
      img[R + i] = img[G + i] = img[B + i] = v;
    }
  }
  return img;
}
