import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual,
  ok as assert,
  throws,
} from "node:assert";
import { parseAsapXml } from "../../../pipeline/wsi/annotations.ts";
import { mulberry32 } from "../../../engine/mulberry32.ts";
import {
  binOf,
  defaultRules,
  type PatchRecord,
  patchRecords,
  recordsFromJsonl,
  recordsToJsonl,
  sampleCenters,
  selectSplit,
  type SplitRule,
} from "../../../pipeline/wsi/sampling.ts";
import {
  CAMELYON16_SPLIT,
  CAMELYON17_SPLIT,
  defaultSplit,
  parseSplit,
  slideKey,
  splitOf,
} from "../../../pipeline/wsi/splits.ts";

function pairs(a: Int32Array): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < a.length; i += 2) out.push([a[i], a[i + 1]]);
  return out;
}

Deno.test("sampling: grid centres with half-step shift, margins and end-exclusive focus window", () => {
  const w = 100, h = 80;
  const full = new Uint8Array(w * h).fill(255);
  // side 512/16 = 32 mask px, focus ±8, margins 1 % (0.8 rows, 1 col): shift 0 needs i, j ≥ 1.
  assertEquals(pairs(sampleCenters(full, w, h, { maskDownsample: 16 })), [
    [256, 256],
    [768, 256],
    [1280, 256],
    [256, 768],
    [512, 512],
    [768, 768],
    [1024, 512],
    [1280, 768],
  ]);
  // One tissue pixel at row 40, col 50: only the window [40,56)×[40,56) holds it.
  const one = new Uint8Array(w * h);
  one[40 * w + 50] = 255;
  assertEquals(pairs(sampleCenters(one, w, h, { maskDownsample: 16 })), [[768, 768]]);
  // Camelyon16 step 256 doubles the grid density.
  assert(sampleCenters(full, w, h, { maskDownsample: 16, side: 256 }).length > 4 * 16);
});

Deno.test("sampling: tumour flag and percentage from the annotation over the patch window", () => {
  // Rectangle covering level-0 samples x 0..24, y 0..99 (ASAP: strictly inside the bbox).
  const ann = parseAsapXml(
    `<ASAP_Annotations><Annotations><Annotation Name="t" Type="Polygon" PartOfGroup="metastases"><Coordinates>
      <Coordinate Order="0" X="-0.5" Y="-0.5"/><Coordinate Order="1" X="24.5" Y="-0.5"/>
      <Coordinate Order="2" X="24.5" Y="99.5"/><Coordinate Order="3" X="-0.5" Y="99.5"/>
    </Coordinates></Annotation></Annotations></ASAP_Annotations>`,
  );
  // Window 100 around (50, 50) → [0,100)²: 25 % tumour; around (200, 50): none.
  const rec = patchRecords("s1", Int32Array.from([50, 50, 200, 50, 60, 50]), ann, 100);
  assertEquals(rec.map((r) => [r.isTumor, r.tumorPercentage]), [[true, 25], [false, 0], [
    true,
    15,
  ]]);
  assertEquals(rec[0].id, "s1_00000500000050");
  assertEquals(recordsFromJsonl(recordsToJsonl(rec), "x"), rec);
  throws(() => recordsFromJsonl('{"id": 3}\n', "m.jsonl"), /m\.jsonl:1/);
});

/** Records of one slide with `perBin[b]` positives in each 5 % bin plus extras. */
function makeRecords(
  slide: string,
  perBin: number[],
  negatives: number,
  seed: number,
): PatchRecord[] {
  const rnd = mulberry32(seed);
  const out: PatchRecord[] = [];
  let n = 0;
  const add = (pct: number) => {
    n++;
    out.push({
      id: `${slide}_${String(n).padStart(14, "0")}`,
      slide,
      cx: n,
      cy: 0,
      isTumor: pct > 0,
      tumorPercentage: pct,
    });
  };
  perBin.forEach((count, b) => {
    for (let i = 0; i < count; i++) add((b * 50 + 1 + Math.floor(rnd() * 49)) / 10); // strictly inside
  });
  for (let i = 0; i < negatives; i++) add(0);
  for (let i = 0; i < 7; i++) add(100); // in no bin
  for (let i = 0; i < 3; i++) add(0.1); // tumour but below the band
  return out;
}

Deno.test("sampling: per-bin caps, 20-90 % band, negatives, determinism by seed", () => {
  const perBin = Array.from({ length: 20 }, (_, b) => 4 * b + 2);
  const recs = makeRecords("A", perBin, 120, 1);
  const rule: SplitRule = {
    mode: "binned",
    binCap: 30,
    band: { lo: 20, hi: 90, inclusive: false },
    negatives: 50,
  };
  const { selected, report } = selectSplit("train", recs, rule, 42);
  for (let b = 0; b < 20; b++) {
    const want = b >= 4 && b <= 17 ? Math.min(perBin[b], 30) : 0;
    assertEquals(report.perBin[b], want, `bin ${b}`);
  }
  assertEquals(report.negatives, 50);
  assertEquals(selected.filter((s) => s.label === 0).length, 50);
  assert(
    selected.every((s) => (s.label === 1) === (s.tumorPercentage > 20 && s.tumorPercentage < 90)),
  );
  assertEquals(new Set(selected.map((s) => s.id)).size, selected.length);
  // Same seed, shuffled input → same selection; another seed → another one.
  const shuffled = recs.slice().sort(() => 0.5 - Math.random());
  assertEquals(selectSplit("train", shuffled, rule, 42).selected, selected);
  notDeepStrictEqual(selectSplit("train", recs, rule, 7).selected, selected);
  // Fewer candidates than asked: all are taken, and the shortfall is reported.
  const few = selectSplit("val", recs, { ...rule, negatives: 1000 }, 42);
  assertEquals(few.report.negatives, 120);
  assert(few.report.shortfalls.some((s) => /negatives/.test(s)));
  // Band edges: exactly 20 % and 90 % are out of the open band, in the inclusive one.
  const edge: PatchRecord[] = [20, 90, 55].map((p, i) => ({
    id: `E_${i}`,
    slide: "E",
    cx: i,
    cy: 0,
    isTumor: true,
    tumorPercentage: p,
  }));
  assertEquals(selectSplit("test", edge, rule, 1).selected.map((s) => s.tumorPercentage), [55]);
  const incl = defaultRules("camelyon17").test;
  assertEquals(selectSplit("test", edge, incl, 1).selected.map((s) => s.tumorPercentage).sort(), [
    20,
    55,
    90,
  ]);
  assertEquals([binOf(0), binOf(4.9), binOf(5), binOf(99.9), binOf(100)], [0, 0, 1, 19, -1]);
});

Deno.test("sampling: reference caps and Camelyon17 val top-up", () => {
  const c16 = defaultRules("camelyon16"), c17 = defaultRules("camelyon17");
  assertEquals([c16.train.binCap, c16.val.binCap, c16.test.binCap], [430, 50, 143]);
  assertEquals([c17.train.binCap, c17.val.binCap, c17.test.count], [500, 50, 2000]);
  assertEquals([c16.train.negatives, c16.val.negatives, c16.test.negatives], [6000, 700, 2000]);
  // Val: 50 per bin, then topped up to 1000 rows from the rest before the band filter.
  const recs = makeRecords(
    "V",
    Array.from({ length: 20 }, (_, b) => (b >= 4 && b <= 17 ? 100 : 0)),
    500,
    2,
  );
  const { report } = selectSplit("val", recs, c17.val, 42);
  assert(report.positives > 14 * 50, `${report.positives}`); // top-up adds in-band rows too
  const plain = selectSplit("val", recs, c16.val, 42).report;
  assertEquals(plain.positives, 14 * 50);
});

Deno.test("splits: reference slide lists, keys by dataset, custom split", () => {
  assertEquals([
    CAMELYON16_SPLIT.train.length,
    CAMELYON16_SPLIT.val.length,
    CAMELYON16_SPLIT.test.length,
  ], [47, 6, 15]);
  assertEquals([
    CAMELYON17_SPLIT.train.length,
    CAMELYON17_SPLIT.val.length,
    CAMELYON17_SPLIT.test.length,
  ], [27, 3, 9]);
  assertEquals(slideKey("camelyon16", "/d/tumor_061.tif"), "061");
  assertEquals(slideKey("camelyon16", "/d/normal_061.tif"), "normal-061");
  assertEquals(slideKey("camelyon17", "/d/patient_024_node_1.tif"), "241");
  assertEquals(slideKey("camelyon17", "/d/patient_004_node_4.tif"), "044");
  assertEquals(slideKey("camelyon17", "/d/patient_085_node_1.tif"), null);
  assertEquals(slideKey("synthetic", "/d/syn_a.tif"), "syn-a");
  assertEquals(splitOf(CAMELYON17_SPLIT, "044"), "test");
  assertEquals(splitOf(CAMELYON16_SPLIT, "048"), "val");
  assertEquals(splitOf(CAMELYON16_SPLIT, "070"), null);
  const all = [...CAMELYON16_SPLIT.train, ...CAMELYON16_SPLIT.val, ...CAMELYON16_SPLIT.test];
  assertEquals(new Set(all).size, all.length);
  assertEquals(defaultSplit("synthetic", ["c", "a", "b", "d"]), {
    train: ["a", "b"],
    val: ["c"],
    test: ["d"],
  });
  assertEquals(parseSplit('{"train":["x"],"test":["y"]}', "s.json"), {
    train: ["x"],
    val: [],
    test: ["y"],
  });
  throws(() => parseSplit('{"train":["x"],"val":["x"]}', "s.json"), /s\.json: slide x is in both/);
});
