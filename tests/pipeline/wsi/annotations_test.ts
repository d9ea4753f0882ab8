import { deepStrictEqual as assertEquals, ok as assert, throws as assertThrows } from "node:assert";
import fc from "fast-check";
import {
  parseAsapXml,
  rasterize,
  rasterizeRegion,
  readAsapXml,
  tumourPixelCount,
} from "../../../pipeline/wsi/annotations.ts";
import { readPng } from "../../../engine/io/png.ts";
import { fixturePath, haveFixtures } from "../../fixtures.ts";

function iou(a: Uint8Array, b: Uint8Array): number {
  let i = 0, u = 0;
  for (let k = 0; k < a.length; k++) {
    const p = a[k] > 0, q = b[k] > 0;
    if (p && q) i++;
    if (p || q) u++;
  }
  return u ? i / u : 1;
}

function xml(body: string): string {
  return `<?xml version="1.0"?>\n<ASAP_Annotations><Annotations>${body}</Annotations></ASAP_Annotations>`;
}

function polygon(group: string, pts: [number, number][], type = "Polygon", name = "a"): string {
  const c = pts.map(([x, y], i) => `<Coordinate Order="${i}" X="${x}" Y="${y}"/>`).join("");
  return `<Annotation Name="${name}" Type="${type}" PartOfGroup="${group}"><Coordinates>${c}</Coordinates></Annotation>`;
}

Deno.test({
  name: "annotations: fixture masks match the reference rasterisation (IoU >= 0.99)",
  ignore: !haveFixtures(),
  fn: async () => {
    const ann = await readAsapXml(fixturePath("wsi", "slide_jpeg_t256.xml"));
    assertEquals(ann.positive.length, 2);
    assertEquals(ann.exclusion.length, 1);
    assertEquals(ann.ignored.length, 0);
    for (const [lv, ds, min] of [["L0", 1, 0.998], ["L2", 4, 0.99]] as const) {
      const ref = await readPng(fixturePath("wsi", `ref_mask_slide_jpeg_t256_${lv}.png`));
      const m = rasterize(ann, ref.width, ref.height, ds);
      const v = iou(m, ref.data);
      console.log(`  IoU ${lv}: ${v.toFixed(5)}`);
      assert(v >= min, `IoU ${lv} ${v} < ${min}`);
      // Tiles give the same pixels as one whole raster.
      const t = 200, x = 417, y = 533;
      const tile = rasterizeRegion(ann, ds, x * ds, y * ds, t, t);
      for (let j = 0; j < t; j += 7) {
        for (let i = 0; i < t; i++) assertEquals(tile[j * t + i], m[(y + j) * ref.width + x + i]);
      }
    }
  },
});

Deno.test("annotations: groups, exclusion cleared, ignored listed, decimal comma", () => {
  const a = parseAsapXml(
    xml(
      polygon("metastases", [[10, 10], [90, 10], [90, 90], [10, 90]]) +
        polygon("_2", [[40, 40], [60, 40], [60, 60], [40, 60]]) +
        polygon("Tumor", [["100,5", 10], [120, 10], [120, 30]] as unknown as [number, number][]) +
        polygon("Other", [[0, 0], [5, 0], [5, 5]]) +
        polygon("_0", [[1, 1]], "Dot"),
    ),
    "t.xml",
  );
  assertEquals(a.positive.length, 2);
  assertEquals(a.positive[1].points[0], 100.5);
  assertEquals(a.exclusion.length, 1);
  assertEquals(a.ignored.map((i) => i.group), ["Other", "_0"]);
  const m = rasterize(a, 128, 128, 1);
  assertEquals(m[50 * 128 + 20], 255);
  assertEquals(m[50 * 128 + 50], 0); // inside the exclusion
  assertEquals(m[5 * 128 + 5], 0);
  // Square (10..90): strict bounding box → samples 11..89 are inside: 79² minus the hole.
  // Hole (40..60): samples 41..59 cleared: 19².
  assertEquals(
    tumourPixelCount({ ...a, positive: [a.positive[0]] }, 0, 0, 100, 100),
    79 * 79 - 19 * 19,
  );
  // A square traced twice has winding 2: non-zero fills it (even-odd would leave it empty).
  const twice: [number, number][] = [[10, 10], [40, 10], [40, 40], [10, 40]];
  const star = parseAsapXml(xml(polygon("metastases", [...twice, ...twice])));
  const s = rasterize(star, 50, 50, 1);
  assertEquals(s[20 * 50 + 20], 255);
});

Deno.test("annotations: malformed XML names the file, element and position", () => {
  const bad = (text: string, re: RegExp) =>
    assertThrows(() => parseAsapXml(text, "bad.xml"), (e: Error) => {
      assert(re.test(e.message), e.message);
      return true;
    });
  bad(
    "<ASAP_Annotations><Annotations>\n<Annotation Name='x'>",
    /bad\.xml:2:1: .*<Annotation> is never closed/,
  );
  bad("<ASAP_Annotations></Annotation>", /bad\.xml:1:19: .*does not match <ASAP_Annotations>/);
  bad(
    xml(
      `<Annotation PartOfGroup="_0"><Coordinates>\n  <Coordinate X="abc" Y="1"/></Coordinates></Annotation>`,
    ),
    /bad\.xml:3:3: <Coordinate>.*X="abc"/,
  );
  bad("<Foo/>", /bad\.xml:1:1: root element is <Foo>/);
  bad("<a b=c/>", /bad\.xml:1:6: .*not quoted/);
  bad("", /no root element/);
});

Deno.test("annotations: fuzzed input parses or throws a clear Error, never hangs", () => {
  const valid = xml(
    polygon("metastases", [[10, 10], [90, 10], [90, 90]]) + polygon("_2", [[1, 2], [3, 4], [5, 6]]),
  );
  const check = (text: string) => {
    const t0 = performance.now();
    try {
      const a = parseAsapXml(text, "fuzz.xml");
      rasterize(a, 64, 64, 2);
    } catch (e) {
      if (!(e instanceof Error)) throw new Error(`non-Error thrown: ${e}`);
      assert(/fuzz\.xml|rasterize/.test(e.message), `error without the file name: ${e.message}`);
    }
    assert(performance.now() - t0 < 1000, "parse took over a second");
  };
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(valid.length), fc.nat(3), fc.string({ maxLength: 6 })), {
        maxLength: 6,
      }),
      (edits) => {
        let s = valid;
        for (const [at, len, ins] of edits) s = s.slice(0, at) + ins + s.slice(at + len);
        check(s);
      },
    ),
    { numRuns: 1500, seed: 5 },
  );
  fc.assert(fc.property(fc.string({ maxLength: 200 }), check), { numRuns: 500, seed: 6 });
  // Extreme but finite coordinates: no huge allocation, no hang.
  const num = fc.oneof(
    fc.double({ noNaN: true }),
    fc.integer(),
    fc.constantFrom(1e300, -1e300, 1e9),
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(num, num), { minLength: 3, maxLength: 8 }), (pts) => {
      check(xml(polygon("metastases", pts)));
      check(xml(polygon("_2", pts)));
    }),
    { numRuns: 300, seed: 8 },
  );
  fc.assert(
    fc.property(
      fc.array(
        fc.constantFrom(
          "<",
          ">",
          "/",
          "<!--",
          "-->",
          '"',
          "=",
          "a",
          " ",
          "\n",
          "<?",
          "?>",
          "&",
          ";",
          "<![CDATA[",
          "]]>",
        ),
        { maxLength: 60 },
      ),
      (parts) => check(parts.join("")),
    ),
    { numRuns: 800, seed: 7 },
  );
});
