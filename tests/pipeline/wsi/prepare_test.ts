import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert";
import { type ExtractSlide, prepareDataset } from "../../../pipeline/wsi/extract.ts";
import { parseAsapXml, rasterizeRegion } from "../../../pipeline/wsi/annotations.ts";
import type { DatasetRules } from "../../../pipeline/wsi/sampling.ts";
import { readPng } from "../../../engine/io/png.ts";
import { fixturePath, haveFixtures } from "../../fixtures.ts";
import { listFiles } from "../../util/files.ts";
import { tissueDiscPixel, tissueDiscSlide, tumourQuadXml } from "../../util/fake_slide.ts";

const SIZE = 2048;

/** In-memory slide (levels 1 and 16), counting opens. */
function fakeOpener(opened: string[]) {
  return (path: string): Promise<ExtractSlide> => {
    opened.push(path);
    return Promise.resolve(tissueDiscSlide(SIZE));
  };
}

const TINY: DatasetRules = {
  train: { mode: "binned", binCap: 2, band: { lo: 20, hi: 90, inclusive: false }, negatives: 3 },
  val: { mode: "binned", binCap: 1, band: { lo: 20, hi: 90, inclusive: false }, negatives: 2 },
  test: { mode: "random", count: 2, band: { lo: 20, hi: 90, inclusive: true }, negatives: 2 },
};

/** The tumour quad, and an annotation of a group the preparation ignores. */
const XML = tumourQuadXml(
  SIZE,
  `
<Annotation Name="n" Type="Polygon" PartOfGroup="Other"><Coordinates>
<Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="9" Y="0"/><Coordinate Order="2" X="9" Y="9"/>
</Coordinates></Annotation>`,
);

Deno.test("prepare: manifest, patches and masks; resumable and atomic", async () => {
  const root = await Deno.makeTempDir({ prefix: "prepare_test_" });
  try {
    const slides = `${root}/slides`, anns = `${root}/ann`, out = `${root}/out`;
    await Deno.mkdir(slides);
    await Deno.mkdir(anns);
    for (const n of ["s_a", "s_b", "s_c", "s_d"]) {
      await Deno.writeTextFile(`${slides}/${n}.tif`, "");
    }
    await Deno.writeTextFile(`${slides}/s_a_mask.tif`, ""); // skipped like the reference
    for (const n of ["s_a", "s_c", "s_d"]) await Deno.writeTextFile(`${anns}/${n}.xml`, XML);
    const opened: string[] = [];
    const opts = {
      dataset: "synthetic",
      slides,
      annotations: anns,
      out,
      rules: TINY,
      open: fakeOpener(opened),
      progress: false,
      log: () => {},
    };
    const r1 = await prepareDataset(opts);
    const m = r1.manifest;
    assertEquals(m.split, { train: ["s-a", "s-b"], val: ["s-c"], test: ["s-d"] });
    assertEquals(m.slides.map((s) => s.key), ["s-a", "s-b", "s-c", "s-d"]);
    assertEquals(m.slides[0].ignoredAnnotations.length, 1);
    assertEquals(m.slides[1].tumourCandidates, 0); // no XML → all normal
    const pos = m.patches.filter((p) => p.label === 1),
      neg = m.patches.filter((p) => p.label === 0);
    assert(pos.length >= 3 && neg.length === 7, `${pos.length} positives, ${neg.length} negatives`);
    for (const p of m.patches) {
      const split = m.slides.find((s) => s.key === p.slide)!.split;
      assertEquals(p.split, split); // split by slide
      assertEquals(p.image, `${split}/image/${p.id}_${p.label}.png`);
      assertEquals(p.mask, p.label ? `${split}/mask/${p.id}_1.png` : null);
    }
    assertEquals(r1.written, m.patches.length + pos.length);
    // Pixels: the image is the slide region, the mask the rasterised annotation.
    const p = pos[0];
    const img = await readPng(`${out}/${p.image}`), mask = await readPng(`${out}/${p.mask}`);
    assertEquals([img.width, img.height, img.channels, mask.channels], [512, 512, 3, 1]);
    const x0 = p.cx - 256, y0 = p.cy - 256;
    assertEquals(Array.from(img.data.subarray(0, 3)), tissueDiscPixel(SIZE, x0, y0).slice(0, 3));
    assertEquals(mask.data, rasterizeRegion(parseAsapXml(XML), 1, x0, y0, 512, 512));
    let tumourPx = 0;
    for (const v of mask.data) if (v) tumourPx++;
    assertEquals(Math.trunc(tumourPx / 512 / 512 * 1000) / 10, p.tumorPercentage);

    // Second run: nothing new, slides not even opened.
    opened.length = 0;
    const before = await listFiles(out);
    const r2 = await prepareDataset(opts);
    assertEquals([r2.written, r2.skipped], [0, m.patches.length]);
    assertEquals(opened, []);
    assertEquals(await listFiles(out), before);
    assert(!before.some((f) => f.includes(".tmp-")), "temporary file left behind");

    // Deleted files are regenerated identically.
    const imgBytes = await Deno.readFile(`${out}/${p.image}`);
    await Deno.remove(`${out}/${p.image}`);
    await Deno.remove(`${out}/${p.mask}`);
    const r3 = await prepareDataset(opts);
    assertEquals(r3.written, 2);
    assertEquals(await Deno.readFile(`${out}/${p.image}`), imgBytes);
    assertEquals(await listFiles(out), before);

    // Other settings into the same folder are refused.
    await rejects(prepareDataset({ ...opts, seed: 7 }), /other settings/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test({
  name: "prepare: real TIFF fixture through openSlide",
  ignore: !haveFixtures(),
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "prepare_fixture_" });
    try {
      await Deno.mkdir(`${root}/slides`);
      await Deno.mkdir(`${root}/ann`);
      await Deno.symlink(
        fixturePath("wsi", "slide_jpeg_t256.tif"),
        `${root}/slides/slide_jpeg_t256.tif`,
      );
      await Deno.symlink(
        fixturePath("wsi", "slide_jpeg_t256.xml"),
        `${root}/ann/slide_jpeg_t256.xml`,
      );
      const r = await prepareDataset({
        dataset: "synthetic",
        slides: `${root}/slides`,
        annotations: `${root}/ann`,
        out: `${root}/out`,
        split: { train: ["slide-jpeg-t256"], val: [], test: [] },
        rules: { ...TINY, train: { ...TINY.train, binCap: 1, negatives: 1 } },
        progress: false,
        log: () => {},
      });
      const s = r.manifest.slides[0];
      assert(s.candidates > 0 && s.tumourCandidates > 0, JSON.stringify(s));
      const tissue = await readPng(`${root}/out/candidates/slide-jpeg-t256_tissue.png`);
      assertEquals([tissue.width, tissue.height], [256, 256]); // level with downsample 16
      const pos = r.manifest.patches.filter((p) => p.label === 1);
      assert(pos.length > 0);
      // The mask agrees with the reference level-0 mask crop.
      const ref = await readPng(fixturePath("wsi", "ref_mask_slide_jpeg_t256_L0.png"));
      const mask = await readPng(`${root}/out/${pos[0].mask}`);
      const x0 = pos[0].cx - 256, y0 = pos[0].cy - 256;
      let diff = 0;
      for (let j = 0; j < 512; j++) {
        for (let i = 0; i < 512; i++) {
          if ((mask.data[j * 512 + i] > 0) !== (ref.data[(y0 + j) * 4096 + x0 + i] > 0)) diff++;
        }
      }
      assert(diff < 512 * 4, `${diff} pixels differ`);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
