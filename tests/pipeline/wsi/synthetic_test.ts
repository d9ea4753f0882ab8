/** Synthetic slides: determinism, tile independence, exact tumour ground truth, realism checks. */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import {
  asapXml,
  generateSyntheticSlide,
  pointInPolygon,
  regionClasses,
  renderRegion,
  syntheticLayout,
} from "../../../pipeline/wsi/synthetic.ts";
import { openSlide } from "../../../pipeline/wsi/slide.ts";
import { parseAsapXml, rasterizeRegion } from "../../../pipeline/wsi/annotations.ts";

const tmp = await Deno.makeTempDir({ prefix: "wsi_synth_test_" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

const spec = { seed: 11, width: 2048, height: 2048, tumours: 2 };

Deno.test("layout and pixels are deterministic by seed and differ across seeds", () => {
  const a = syntheticLayout(spec), b = syntheticLayout(spec);
  assertEquals(a, b);
  assertEquals(a.tumours.length, 2);
  const c = syntheticLayout({ ...spec, seed: 12 });
  assert(JSON.stringify(c.tumours) !== JSON.stringify(a.tumours));
  const r1 = renderRegion(a, 700, 900, 128, 96), r2 = renderRegion(b, 700, 900, 128, 96);
  assertEquals(r1, r2);
});

Deno.test("a region renders identically whole or tile by tile", () => {
  const L = syntheticLayout(spec);
  const [x0, y0] = [Math.round(L.tumours[0][0][0]) - 128, Math.round(L.tumours[0][0][1]) - 128];
  const whole = renderRegion(L, x0, y0, 256, 256);
  for (const [dx, dy] of [[0, 0], [128, 0], [0, 128], [128, 128]]) {
    const part = renderRegion(L, x0 + dx, y0 + dy, 128, 128);
    for (let y = 0; y < 128; y++) {
      const a = whole.subarray(((dy + y) * 256 + dx) * 3, ((dy + y) * 256 + dx + 128) * 3);
      assertEquals(part.subarray(y * 128 * 3, (y + 1) * 128 * 3), a);
    }
  }
});

Deno.test("tumour pixels are exactly the pixels inside the tumour polygons", () => {
  const L = syntheticLayout(spec);
  for (const t of L.tumours) {
    const xs = t.map((p) => p[0]), ys = t.map((p) => p[1]);
    const x0 = Math.floor(Math.min(...xs)) - 3, y0 = Math.floor(Math.min(...ys)) - 3;
    const w = Math.ceil(Math.max(...xs)) - x0 + 6, h = Math.ceil(Math.max(...ys)) - y0 + 6;
    const cls = regionClasses(L, x0, y0, w, h);
    let n = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const want = L.tumours.some((p) => pointInPolygon(p, x0 + x, y0 + y));
        assertEquals(cls[y * w + x] === 2, want, `pixel ${x0 + x},${y0 + y}`);
        if (want) n++;
      }
    }
    assert(n > 1000);
  }
});

Deno.test("tumour tissue is darker, denser in nuclei and poorer in stroma than normal tissue", () => {
  const L = syntheticLayout({ seed: 5, width: 4096, height: 4096, tumours: 3 });
  const sums = [null, { n: 0, lum: 0, nuc: 0, pink: 0 }, { n: 0, lum: 0, nuc: 0, pink: 0 }];
  for (const t of L.tumours) {
    const [cx, cy] = t[0];
    const x0 = Math.round(cx) - 300, y0 = Math.round(cy) - 300;
    const rgb = renderRegion(L, x0, y0, 600, 600), cls = regionClasses(L, x0, y0, 600, 600);
    for (let i = 0; i < cls.length; i++) {
      const s = sums[cls[i]];
      if (!s) continue;
      const [r, g, b] = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]];
      s.n++;
      s.lum += (r + g + b) / 3;
      if (r < 110 && b < 175) s.nuc++; // haematoxylin-dark
      if (r > 200 && g < 200) s.pink++; // eosin stroma
    }
  }
  const [_, normal, tumour] = sums;
  assert(normal && tumour && normal.n > 10000 && tumour.n > 10000);
  const f = (s: { n: number; lum: number; nuc: number; pink: number }) => ({
    lum: s.lum / s.n,
    nuc: s.nuc / s.n,
    pink: s.pink / s.n,
  });
  const fn = f(normal), ft = f(tumour);
  assert(ft.lum < fn.lum - 30, `luminance tumour ${ft.lum} vs normal ${fn.lum}`);
  assert(ft.nuc > 3 * fn.nuc, `nuclear fraction tumour ${ft.nuc} vs normal ${fn.nuc}`);
  assert(ft.pink < fn.pink / 2, `stroma fraction tumour ${ft.pink} vs normal ${fn.pink}`);
});

Deno.test("generateSyntheticSlide writes a readable pyramid and an XML matching the tumours", async () => {
  const s1 = { seed: 3, width: 1024, height: 768, tumours: 2 };
  const t0 = performance.now();
  const { layout, tiff } = await generateSyntheticSlide(s1, `${tmp}/s.tif`, `${tmp}/s.xml`);
  const ms = performance.now() - t0;
  assert(ms < 15_000, `generation took ${ms} ms`);
  assertEquals(tiff.levels.map((l) => [l.width, l.height]), [[1024, 768], [512, 384], [256, 192]]);
  const slide = await openSlide(`${tmp}/s.tif`);
  try {
    assertEquals(slide.compression, "jpeg");
    assert(slide.mpp && Math.abs(slide.mpp[0] - 0.243) < 1e-6);
    const got = await slide.readRegion(0, 0, 0, 1024, 768);
    const want = renderRegion(layout, 0, 0, 1024, 768);
    let sum = 0;
    for (let i = 0; i < 1024 * 768; i++) {
      assertEquals(got[4 * i + 3], 255);
      for (let c = 0; c < 3; c++) sum += Math.abs(got[4 * i + c] - want[3 * i + c]);
    }
    const mean = sum / (1024 * 768 * 3);
    assert(mean < 6, `JPEG mean abs error ${mean}`);
  } finally {
    await slide.close();
  }
  const ann = parseAsapXml(await Deno.readTextFile(`${tmp}/s.xml`), `${tmp}/s.xml`);
  assertEquals(ann.positive.length, layout.tumours.length);
  const mask = rasterizeRegion(ann, 1, 0, 0, 1024, 768);
  const cls = regionClasses(layout, 0, 0, 1024, 768);
  let mismatch = 0, tumour = 0;
  for (let i = 0; i < mask.length; i++) {
    if ((mask[i] === 255) !== (cls[i] === 2)) mismatch++;
    if (cls[i] === 2) tumour++;
  }
  assert(tumour > 0);
  assertEquals(mismatch, 0);
  assert(asapXml([]).includes("<AnnotationGroups>"));
});
