import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert";
import fc from "fast-check";
import {
  parseAsapXml,
  rasterize,
  rasterizeRegion,
  readAsapXml,
  tumourPixelCount,
} from "../../../pipeline/wsi/annotations.ts";
import { readPng } from "../../../engine/io/png.ts";
import { InputError } from "../../../engine/io/errors.ts";
import { fixturePath, haveFixtures } from "../../fixtures.ts";
import { maskIou } from "../../util/masks.ts";

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
      const v = maskIou(m, ref.data);
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

Deno.test("annotations: nesting, vertex and file-size limits give clear errors", async () => {
  // 200 000 levels deep: refused at the 65th level, naming file, line and column, and the limit.
  const deep = "<ASAP_Annotations>\n" + "<a>".repeat(200_000) + "</a>".repeat(200_000) +
    "</ASAP_Annotations>";
  const t0 = performance.now();
  assertThrows(() => parseAsapXml(deep, "deep.xml"), (e: Error) => {
    assert(e instanceof InputError && e.file === "deep.xml", `${e.name}: not an InputError`);
    assert(
      /deep\.xml:2:190: <a> is nested 65 elements deep; the limit is 64/.test(e.message),
      e.message,
    );
    return true;
  });
  assert(performance.now() - t0 < 2000);
  // Vertex limit (overridable).
  const tri = xml(polygon("metastases", [[0, 0], [10, 0], [10, 10]]));
  assertThrows(
    () => parseAsapXml(tri, "v.xml", { maxVertices: 2 }),
    /v\.xml:2:\d+: more than 2 coordinates in the file .*--max-vertices/,
  );
  assertEquals(parseAsapXml(tri, "v.xml", { maxVertices: 3 }).positive.length, 1);
  // File size: refused before reading.
  const f = await Deno.makeTempFile({ suffix: ".xml" });
  try {
    await Deno.writeTextFile(f, tri);
    await assertRejects(
      () => readAsapXml(f, { maxBytes: 100 }),
      /bytes is over the 100-byte limit/,
    );
    assertEquals((await readAsapXml(f)).positive.length, 1);
  } finally {
    await Deno.remove(f);
  }
});

/** 100 000 vertices alternating far above and far below the slide (every edge spans it). */
function zigzag(n: number, width: number): [number, number][] {
  const pts: [number, number][] = [];
  for (let k = 0; k < n; k++) {
    pts.push([1 + ((width - 2) * k) / (n - 1), k % 2 ? 1e6 + 0.5 : -1e6 + 0.5]);
  }
  return pts;
}

/** Reference fill of one row by brute force over all edges (non-zero winding, ASAP's rule). */
function referenceRow(pts: [number, number][], py: number, w: number): Uint8Array {
  const row = new Uint8Array(w);
  const cross: [number, number][] = [];
  for (let i = 0; i < pts.length; i++) {
    const [xa, ya] = pts[i], [xb, yb] = pts[(i + 1) % pts.length];
    if (ya <= py && yb > py) cross.push([xa + (py - ya) * (xb - xa) / (yb - ya), 1]);
    else if (yb <= py && ya > py) cross.push([xa + (py - ya) * (xb - xa) / (yb - ya), -1]);
  }
  let minX = Infinity, maxX = -Infinity;
  for (const [x] of pts) {
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
  }
  cross.sort((a, b) => a[0] - b[0]);
  let wn = 0, k = 0;
  for (const [, d] of cross) wn += d; // winding from crossings right of px
  for (let px = 0; px < w; px++) {
    while (k < cross.length && cross[k][0] <= px) wn -= cross[k++][1];
    if (px > minX && px < maxX) row[px] = wn ? 255 : 0;
  }
  return row;
}

Deno.test("annotations: wsi mask of a 100k-vertex zigzag ends fast in bounded memory, right mask", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { generateSyntheticSlide } = await import("../../../pipeline/wsi/synthetic.ts");
    const { readPng } = await import("../../../engine/io/png.ts");
    const W = 512, H = 384;
    await generateSyntheticSlide(
      { seed: 1, width: W, height: H, tumours: 0, tileSize: 256 },
      `${dir}/s.tif`,
      null,
    );
    const pts = zigzag(100_000, W);
    await Deno.writeTextFile(`${dir}/z.xml`, xml(polygon("metastases", pts)));
    const cli = new URL("../../../pipeline/cli/wsi.ts", import.meta.url).pathname;
    const t0 = performance.now();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        cli,
        "mask",
        `${dir}/s.tif`,
        `${dir}/z.xml`,
        "--level",
        "0",
        "--out",
        `${dir}/m.png`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Peak RSS of the child: VmHWM only grows, so the last reading before it exits is the peak.
    let peakKiB = 0;
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${child.pid}/status`));
        if (m) peakKiB = Math.max(peakKiB, Number(m[1]));
      } catch { /* exited */ }
    }, 25);
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const out = await child.output();
    clearInterval(poll);
    clearTimeout(timer);
    const secs = (performance.now() - t0) / 1000;
    console.log(`  wsi mask: ${secs.toFixed(1)} s, peak RSS ${(peakKiB / 1024).toFixed(0)} MiB`);
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    // Bounds with room for a loaded machine: before the active-edge table this case held
    // vertices × 4096 band entries (gigabytes); now the edge table is a few MB.
    assert(secs < 45, `took ${secs} s`);
    assert(peakKiB > 0 && peakKiB < 800 * 1024, `peak RSS ${peakKiB} KiB`);
    const m = await readPng(`${dir}/m.png`);
    assertEquals([m.width, m.height], [W, H]);
    let on = 0;
    for (const py of [0, 1, 57, 128, 200, 383]) {
      const ref = referenceRow(pts, py, W);
      for (let x = 0; x < W; x++) {
        assertEquals(m.data[(py * W + x) * m.channels], ref[x], `pixel ${x},${py}`);
        if (ref[x]) on++;
      }
    }
    assert(on > 0, "the reference rows are empty: the test would not see a wrong fill");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
