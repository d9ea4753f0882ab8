/**
 * ResizeLongestSide + preprocess against the sam-tiny fixture (upsampling, exact) and a float64
 * reimplementation of Pillow's bilinear resample (downsampling with antialiasing, within 1 level).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { readSafetensors, toFloat32 } from "../../engine/io/safetensors.ts";
import {
  applyBoxes,
  applyCoords,
  applyImage,
  getPreprocessShape,
  preprocess,
  resizeBilinearPil,
} from "../../model/sam/transforms.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { assertClose, randArray } from "../util/gpu.ts";

/** Pillow's algorithm with float64 weights and rounding instead of 22-bit fixed point. */
function resizeRef(
  src: Uint8Array,
  h: number,
  w: number,
  c: number,
  nh: number,
  nw: number,
): Uint8Array {
  const weights = (inSize: number, outSize: number) => {
    const scale = inSize / outSize, fs = Math.max(scale, 1), support = fs;
    return Array.from({ length: outSize }, (_, o) => {
      const center = (o + 0.5) * scale;
      const taps: [number, number][] = [];
      let sum = 0;
      for (
        let i = Math.max(0, Math.trunc(center - support + 0.5));
        i < Math.min(inSize, Math.trunc(center + support + 0.5));
        i++
      ) {
        const t = Math.abs((i - center + 0.5) / fs);
        const wt = t < 1 ? 1 - t : 0;
        taps.push([i, wt]);
        sum += wt;
      }
      return taps.map(([i, wt]) => [i, wt / sum] as [number, number]);
    });
  };
  const u8 = (v: number) => Math.min(255, Math.max(0, Math.floor(v + 0.5)));
  let cur = src, cw = w;
  if (nw !== w) {
    const ws = weights(w, nw), out = new Uint8Array(h * nw * c);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < nw; x++) {
        for (let k = 0; k < c; k++) {
          out[(y * nw + x) * c + k] = u8(
            ws[x].reduce((a, [i, wt]) => a + wt * src[(y * w + i) * c + k], 0),
          );
        }
      }
    }
    cur = out;
    cw = nw;
  }
  if (nh !== h) {
    const ws = weights(h, nh), out = new Uint8Array(nh * cw * c);
    for (let y = 0; y < nh; y++) {
      for (let j = 0; j < cw * c; j++) {
        out[y * cw * c + j] = u8(ws[y].reduce((a, [i, wt]) => a + wt * cur[i * cw * c + j], 0));
      }
    }
    cur = out;
  }
  return cur;
}

const ok = haveFixtures();

Deno.test({
  name: "sam transforms: fixture image → input_resized (exact) → encoder_input",
  ignore: !ok,
  fn: async () => {
    const c = await readSafetensors(fixturePath("sam-tiny", "case.safetensors"));
    const img = c.get("image_u8")!;
    assert.deepEqual(img.shape, [48, 64, 3]);
    assert.deepEqual(getPreprocessShape(48, 64, 128), [96, 128]);
    const r = applyImage(img.data as Uint8Array, 48, 64, 128);
    assert.equal(r.height, 96);
    assert.equal(r.width, 128);
    const want = toFloat32(c.get("input_resized")!);
    let bad = 0;
    for (let i = 0; i < want.length; i++) if (r.data[i] !== want[i]) bad++;
    assert.equal(bad, 0, `${bad} resized pixels differ from PIL`);
    assertClose(preprocess(r, 128), toFloat32(c.get("encoder_input")!), {
      atol: 1e-6,
      rtol: 1e-6,
      what: "encoder_input",
    });
  },
});

Deno.test("sam transforms: shapes, coordinates and boxes follow ResizeLongestSide", () => {
  assert.deepEqual(getPreprocessShape(1000, 750, 1024), [1024, 768]);
  assert.deepEqual(getPreprocessShape(333, 500, 1024), [682, 1024]); // 681.98 rounds up
  assert.deepEqual(getPreprocessShape(7, 1, 16), [16, 2]); // 2.285… → 2
  const xy = applyCoords([10, 20, 63.5, 47], [48, 64], 128);
  assertClose(xy, [20, 40, 127, 94], { atol: 0, rtol: 0 });
  const b = applyBoxes([1, 2, 3, 4], [333, 500], 1024);
  assertClose(b, [1 * 1024 / 500, 2 * 682 / 333, 3 * 1024 / 500, 4 * 682 / 333].map(Math.fround), {
    atol: 0,
    rtol: 0,
  });
  assert.throws(() => applyCoords([1, 2, 3], [4, 4], 8), /pairs/);
});

Deno.test("sam transforms: downscaling matches a float64 Pillow reimplementation within 2 levels (one per pass)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 1e6 }),
      (h, w, nh, nw, seed) => {
        const src = Uint8Array.from(randArray(h * w * 3, seed, 0, 256), Math.floor);
        const got = resizeBilinearPil(src, h, w, 3, nh, nw);
        const want = resizeRef(src, h, w, 3, nh, nw);
        // Pillow rounds to uint8 between its horizontal and vertical passes (and in fixed point):
        // against a float64 reference that can add up to one level per pass.
        for (let i = 0; i < want.length; i++) {
          if (Math.abs(got[i] - want[i]) > 2) {
            throw new Error(`${h}x${w}→${nh}x${nw}: byte ${i} is ${got[i]}, reference ${want[i]}`);
          }
        }
      },
    ),
    { numRuns: 150, seed: 20261125 },
  );
  // A long-side shrink as SAM does for large tiles (antialiased, support ×3.9).
  const src = Uint8Array.from(randArray(100 * 75 * 3, 3, 0, 256), Math.floor);
  const r = applyImage(src, 100, 75, 26);
  assert.deepEqual([r.height, r.width], [26, 20]);
  const want = resizeRef(src, 100, 75, 3, 26, 20);
  assert.ok(r.data.every((v, i) => Math.abs(v - want[i]) <= 1));
  // Constant images stay constant; identity size is a copy.
  assert.ok(
    resizeBilinearPil(new Uint8Array(30 * 3).fill(77), 5, 6, 3, 2, 3).every((v) => v === 77),
  );
  assert.deepEqual(resizeBilinearPil(src, 100, 75, 3, 100, 75), src);
});

Deno.test("sam transforms: preprocess pads with zeros bottom/right", () => {
  const img = { data: new Uint8Array(2 * 3 * 3).fill(200), height: 2, width: 3 };
  const x = preprocess(img, 4);
  assert.equal(x.length, 48);
  assertClose([x[0], x[16 + 5], x[32 + 6]], [
    (200 - 123.675) / 58.395,
    (200 - 116.28) / 57.12,
    (200 - 103.53) / 57.375,
  ], { atol: 1e-6 });
  assert.equal(x[3], 0);
  assert.equal(x[12], 0);
  assert.throws(() => preprocess(img, 2), /larger/);
});
