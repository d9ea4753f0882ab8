import assert from "node:assert/strict";
import { decodePng, type Image8 } from "../../engine/io/png.ts";
import {
  Canvas,
  formatTick,
  heatmapOverlay,
  jet,
  lossCurve,
  lossCurvePng,
  maskImage,
  niceTicks,
  overlay,
  PALETTE,
  sideBySide,
  textWidth,
} from "../../pipeline/plots.ts";

const px = (img: Image8, x: number, y: number) =>
  Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
const count = (img: Image8, c: readonly number[]) => {
  let n = 0;
  for (let i = 0; i < img.width * img.height; i++) {
    if (img.data[3 * i] === c[0] && img.data[3 * i + 1] === c[1] && img.data[3 * i + 2] === c[2]) {
      n++;
    }
  }
  return n;
};

Deno.test("ticks and labels", () => {
  assert.deepEqual(niceTicks(0, 1, 5).map((v) => +v.toFixed(6)), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(1, 50, 5), [10, 20, 30, 40, 50]);
  assert.deepEqual(niceTicks(-0.3, 0.3, 3).map((v) => +v.toFixed(6)), [-0.2, 0, 0.2]);
  assert.deepEqual([
    formatTick(0),
    formatTick(0.30000000000000004),
    formatTick(1234567),
    formatTick(2e-5),
  ], ["0", "0.3", "1.2e6", "2.0e-5"]);
  assert.equal(textWidth("ab"), 11);
});

Deno.test("loss curve: size, series colours, legend, NaN points skipped, PNG round trip", () => {
  const a: [number, number][] = Array.from({ length: 20 }, (_, i) => [i, 1 / (i + 1)]);
  const b: [number, number][] = Array.from(
    { length: 20 },
    (_, i) => [i, i === 7 ? NaN : 0.5 + 0.01 * i],
  );
  const img = lossCurve([{ name: "train", points: a }, { name: "val", points: b }], {
    title: "Loss",
    width: 320,
    height: 200,
    xLabel: "epoch",
  });
  assert.deepEqual([img.width, img.height, img.channels], [320, 200, 3]);
  assert.ok(count(img, PALETTE[0]) > 200, "first series drawn");
  assert.ok(count(img, PALETTE[1]) > 200, "second series drawn");
  assert.ok(count(img, [0, 0, 0]) > 30, "title text drawn");
  const png = decodePng(lossCurvePng([{ name: "x", points: a }], { width: 200, height: 120 }));
  assert.deepEqual(
    png.data,
    lossCurve([{ name: "x", points: a }], { width: 200, height: 120 }).data,
  );
  // Degenerate inputs still render: one point, constant series, nothing at all.
  lossCurve([{ name: "one", points: [[3, 2]] }], { width: 200, height: 120, logY: true });
  lossCurve([{ name: "flat", points: [[0, 1], [5, 1]] }], { width: 200, height: 120 });
  lossCurve([], { width: 200, height: 120 });
  assert.throws(() => lossCurve([], { width: 50, height: 50 }), /too small/);
});

Deno.test("overlay tints the mask, outlines it, leaves the rest", () => {
  const w = 6, h = 5;
  const image: Image8 = {
    data: new Uint8Array(w * h * 3).fill(100),
    width: w,
    height: h,
    channels: 3,
  };
  const mask = new Uint8Array(w * h);
  for (let y = 1; y <= 3; y++) for (let x = 1; x <= 3; x++) mask[y * w + x] = 1;
  const o = overlay(image, mask, [0, 200, 0], 0.5);
  assert.deepEqual(px(o, 2, 2), [50, 150, 50], "interior blended");
  assert.deepEqual(px(o, 1, 1), [0, 200, 0], "outline in full colour");
  assert.deepEqual(px(o, 5, 4), [100, 100, 100], "outside untouched");
  assert.throws(() => overlay(image, new Uint8Array(3)), /3 values for a 6×5 image/);
});

Deno.test("jet colormap and heatmap overlay (low-resolution map upsampled)", () => {
  assert.deepEqual([jet(0), jet(0.5), jet(1), jet(NaN)], [
    [0, 0, 128],
    [128, 255, 128],
    [128, 0, 0],
    [0, 0, 128],
  ]);
  const image: Image8 = { data: new Uint8Array(8 * 8 * 3), width: 8, height: 8, channels: 3 };
  const o = heatmapOverlay(image, { data: [1, 1, 1, 1], width: 2, height: 2 }, 0.5);
  assert.deepEqual(px(o, 0, 0), [64, 0, 0]);
  assert.deepEqual(px(o, 7, 7), [64, 0, 0]);
  const grad = heatmapOverlay(image, { data: [0, 1], width: 2, height: 1 }, 1);
  assert.deepEqual(px(grad, 0, 0), jet(0));
  assert.deepEqual(px(grad, 7, 0), jet(1));
  assert.throws(() => heatmapOverlay(image, new Float32Array(5)), /5 values/);
});

Deno.test("side by side: panels in a row under their titles", () => {
  const a: Image8 = {
    data: new Uint8Array(30 * 20 * 3).fill(10),
    width: 30,
    height: 20,
    channels: 3,
  };
  const m = maskImage(new Uint8Array(40 * 25).fill(1), 40, 25);
  const s = sideBySide([{ title: "img", image: a }, { title: "a very long title", image: m }], {
    gap: 4,
  });
  const titleH = 7 + 8;
  assert.deepEqual([s.width, s.height], [4 + 30 + 4 + 40 + 4, titleH + 25 + 4]);
  assert.deepEqual(px(s, 4, titleH), [10, 10, 10]);
  assert.deepEqual(px(s, 38 + 39, titleH + 24), [255, 255, 255]);
  assert.ok(count({ ...s, height: titleH }, [0, 0, 0]) > 20, "titles drawn");
  const c = new Canvas(10, 10);
  c.text(0, 0, "é"); // unknown characters fall back to '?'
  assert.ok(count(c.image(), [0, 0, 0]) > 0);
});
