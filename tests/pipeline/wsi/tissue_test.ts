import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import {
  bestLevelForDownsample,
  medianBlur,
  otsuThreshold,
  saturation,
  slideTissueMask,
  tissueMask,
} from "../../../pipeline/wsi/tissue.ts";
import { mulberry32 } from "../../../engine/mulberry32.ts";
import { morph } from "../../../model/morphology.ts";
import { maskIou } from "../../util/masks.ts";

function bruteMorph(src: Uint8Array, w: number, h: number, k: number, max: boolean): Uint8Array {
  const r = k >> 1, out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = max ? 0 : 255;
      for (let dy = -r; dy <= r; dy++) {
        for (let dx = -r; dx <= r; dx++) {
          const yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const s = src[yy * w + xx];
          v = max ? Math.max(v, s) : Math.min(v, s);
        }
      }
      out[y * w + x] = v;
    }
  }
  return out;
}

function bruteMedian(src: Uint8Array, w: number, h: number, k: number): Uint8Array {
  const r = k >> 1, out = new Uint8Array(w * h), win: number[] = [];
  const c = (v: number, n: number) => Math.min(n - 1, Math.max(0, v));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      win.length = 0;
      for (let dy = -r; dy <= r; dy++) {
        for (let dx = -r; dx <= r; dx++) win.push(src[c(y + dy, h) * w + c(x + dx, w)]);
      }
      win.sort((a, b) => a - b);
      out[y * w + x] = win[(k * k) >> 1];
    }
  }
  return out;
}

Deno.test("tissue: morphology and median equal brute force (OpenCV border rules)", () => {
  const rnd = mulberry32(3);
  for (const [w, h] of [[23, 17], [5, 40], [1, 9]]) {
    const gray = Uint8Array.from({ length: w * h }, () => Math.floor(rnd() * 256));
    const bin = Uint8Array.from({ length: w * h }, () => (rnd() < 0.4 ? 255 : 0));
    for (const k of [3, 7, 13]) {
      assertEquals(morph(gray, w, h, k, "dilate"), bruteMorph(gray, w, h, k, true));
      assertEquals(morph(gray, w, h, k, "erode"), bruteMorph(gray, w, h, k, false));
    }
    for (const k of [3, 5, 15]) {
      assertEquals(medianBlur(gray, w, h, k), bruteMedian(gray, w, h, k));
      assertEquals(medianBlur(bin, w, h, k), bruteMedian(bin, w, h, k));
    }
  }
});

Deno.test("tissue: saturation and Otsu follow OpenCV", () => {
  const px = Uint8Array.from([255, 255, 255, 200, 100, 50, 0, 0, 0, 10, 3, 7]);
  const s = saturation(px, 3, 4);
  assertEquals(Array.from(s), [0, Math.round(255 * 150 / 200), 0, Math.round(255 * 7 / 10)]);
  // Bimodal: 30 ± 5 and 200 ± 5 → threshold between them.
  const rnd = mulberry32(1);
  const g = Uint8Array.from(
    { length: 4000 },
    (_, i) => (i % 3 ? 30 : 200) + Math.floor(rnd() * 11) - 5,
  );
  const t = otsuThreshold(g);
  assert(t >= 35 && t < 195, `threshold ${t}`);
  assertEquals(otsuThreshold(new Uint8Array(100).fill(7)), 0);
});

/** White glass with faint noise, a pink tissue ellipse, and isolated saturated specks. */
function syntheticThumb(w: number, h: number) {
  const rnd = mulberry32(11);
  const rgba = new Uint8Array(w * h * 4);
  const truth = new Uint8Array(w * h);
  const cx = w * 0.45, cy = h * 0.55, rx = w * 0.3, ry = h * 0.2;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1;
      truth[i] = inside ? 255 : 0;
      const n = () => Math.floor(rnd() * 12);
      const [r, g, b] = inside
        ? [200 + n(), 90 + n(), 160 + n()]
        : [235 + n(), 235 + n(), 235 + n()];
      rgba.set([r, g, b, 255], i * 4);
    }
  }
  for (let k = 0; k < 60; k++) {
    const i = Math.floor(rnd() * w * h);
    if (!truth[i]) rgba.set([180, 40, 120, 255], i * 4); // dust: single saturated pixels
  }
  return { rgba, truth };
}

Deno.test("tissue: mask recovers a known tissue blob and drops specks; a tiled 2k² image gives the tiled truth", async () => {
  const w = 400, h = 300;
  const { rgba, truth } = syntheticThumb(w, h);
  const m = tissueMask(rgba, w, h, 4);
  const iou = maskIou(m, truth);
  assert(iou > 0.97, `IoU ${iou}`);
  // No specks survive far from the blob.
  for (let y = 0; y < 40; y++) for (let x = 0; x < w; x++) assertEquals(m[y * w + x], 0);

  // Same mask through the slide path (strip reads of a level).
  const fake = {
    levels: [{ width: w * 16, height: h * 16, downsample: 1 }, {
      width: w,
      height: h,
      downsample: 16,
    }],
    readRegion(level: number, x0: number, y0: number, rw: number, rh: number) {
      assertEquals(level, 1);
      const out = new Uint8Array(rw * rh * 4);
      const yy = Math.round(y0 / 16), xx = Math.round(x0 / 16);
      for (let r = 0; r < rh; r++) {
        out.set(rgba.subarray(((yy + r) * w + xx) * 4, ((yy + r) * w + xx + rw) * 4), r * rw * 4);
      }
      return Promise.resolve(out);
    },
  };
  assertEquals(bestLevelForDownsample(fake.levels, 16), 1);
  const st = await slideTissueMask(fake);
  assertEquals(st.downsample, 16);
  assertEquals(st.mask, m);

  const W = 2048, H = 2048;
  const big = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      big.set(
        truth[(y % h) * w + (x % w)] ? [200, 90, 160, 255] : [235, 235, 235, 255],
        (y * W + x) * 4,
      );
    }
  }
  // Speed belongs to the bench; here the large image must still give the right mask.
  const bm = tissueMask(big, W, H, 4);
  let bInter = 0, bUni = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const t = truth[(y % h) * w + (x % w)], v = bm[y * W + x];
      if (t && v) bInter++;
      if (t || v) bUni++;
    }
  }
  assert(bInter / bUni > 0.9, `2048² IoU ${bInter / bUni}`);
});
