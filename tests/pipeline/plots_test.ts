import assert from "node:assert/strict";
import type { Image8 } from "../../engine/io/png.ts";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import {
  Canvas,
  heatmapOverlay,
  jet,
  maskImage,
  overlay,
  sideBySide,
  textWidth,
} from "../../pipeline/plots.ts";
import {
  curveLayout,
  formatTick,
  lossCurveSvg,
  niceTicks,
  SERIES_COLOURS,
  svgNumber,
} from "../../pipeline/loss_curves.ts";

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

/** The SVG parsed (attributes kept, `@_`-prefixed), after checking it is well-formed XML. */
function parseSvg(svg: string) {
  const valid = XMLValidator.validate(svg);
  assert.equal(valid, true, JSON.stringify(valid));
  const doc = new XMLParser({
    ignoreAttributes: false,
    processEntities: true,
    parseTagValue: false,
    isArray: (name) => ["g", "line", "text", "polyline", "circle"].includes(name),
  }).parse(svg);
  return doc.svg;
}

Deno.test("loss curves SVG: valid XML, one polyline per series at scaled coordinates, legend", () => {
  const a: [number, number][] = Array.from({ length: 20 }, (_, i) => [i, 1 / (i + 1)]);
  const b: [number, number][] = Array.from(
    { length: 20 },
    (_, i) => [19 - i, i === 7 ? NaN : 0.5 + 0.01 * i], // unsorted, one NaN
  );
  const series = [{ name: "train", points: a }, { name: "val <&>", points: b }];
  const opts = { title: "Loss", width: 320, height: 200, xLabel: "epoch", yLabel: "loss" };
  const svg = lossCurveSvg(series, opts);
  const root = parseSvg(svg);
  assert.deepEqual([root["@_width"], root["@_height"]], ["320", "200"]);
  const lay = curveLayout(series, opts);
  const groups = root.g as Record<string, unknown>[];
  const byClass = (c: string) => groups.find((g) => g["@_class"] === c)!;
  const lines = byClass("series").polyline as Record<string, string>[];
  assert.equal(lines.length, 2);
  for (const [k, s] of series.entries()) {
    const line = lines[k];
    assert.equal(line["@_data-series"], s.name, "name escaped and parsed back");
    assert.equal(line["@_stroke"], SERIES_COLOURS[k]);
    const finite = s.points.filter(([, y]) => Number.isFinite(y)).sort((p, q) => p[0] - q[0]);
    const drawn = line["@_points"].split(" ").map((p) => p.split(",").map(Number));
    assert.equal(drawn.length, finite.length, "NaN point skipped");
    finite.forEach(([x, y], i) => {
      assert.deepEqual(drawn[i], [Number(svgNumber(lay.px(x))), Number(svgNumber(lay.py(y)))]);
    });
  }
  // Independent check of the scaling: the extreme points touch the plot area's left and right
  // edges, and the lower curve's last point is below the upper curve's (SVG y grows downwards).
  const first = lines[0]["@_points"].split(" ").map((p) => p.split(",").map(Number));
  assert.equal(first[0][0], lay.left);
  assert.equal(first[first.length - 1][0], lay.left + lay.width);
  assert.ok(first[0][1] >= lay.top && first[first.length - 1][1] <= lay.top + lay.height);
  assert.ok(first[first.length - 1][1] > first[0][1], "1/(x+1) falls: y pixel grows");
  // Ticks and labels are text; the legend names every series.
  const axes = byClass("axes");
  const texts = (axes.text as Record<string, string>[]).map((t) => [t["@_class"], t["#text"]]);
  assert.deepEqual(
    texts.filter(([c]) => c === "x-tick").map(([, s]) => s),
    lay.xTicks.map(formatTick),
  );
  assert.ok(texts.some(([c, s]) => c === "x-label" && s === "epoch"));
  assert.ok(texts.some(([c, s]) => c === "y-label" && s === "loss"));
  const legend = (byClass("legend").text as Record<string, string>[]).map((t) => t["#text"]);
  assert.deepEqual(legend, ["train", "val <&>"]);
  assert.equal(root.text[0]["#text"], "Loss");
  // Degenerate inputs still render valid SVG: one point (a dot), constant series, nothing.
  const one = parseSvg(
    lossCurveSvg([{ name: "one", points: [[3, 2]] }], { width: 200, height: 120, logY: true }),
  );
  assert.equal((one.g as Record<string, unknown>[])[2].circle !== undefined, true);
  parseSvg(lossCurveSvg([{ name: "flat", points: [[0, 1], [5, 1]] }], { width: 200, height: 120 }));
  parseSvg(lossCurveSvg([], { width: 200, height: 120 }));
  assert.throws(() => lossCurveSvg([], { width: 50, height: 50 }), /too small/);
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
