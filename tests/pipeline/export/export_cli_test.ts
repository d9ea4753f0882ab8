import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import { generateSyntheticSlide } from "../../../pipeline/wsi/synthetic.ts";
import { writePyramidTiff } from "../../../pipeline/wsi/tiff_writer.ts";
import { parseAsapXml, rasterize } from "../../../pipeline/wsi/annotations.ts";
import { runCli } from "../../util/cli.ts";

const CLI = new URL("../../../pipeline/cli/export.ts", import.meta.url).pathname;

const run = (args: string[]) => runCli(CLI, args);

Deno.test("export CLI: probability.tif of an infer folder to XML + GeoJSON; usage errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A 600×520 synthetic slide and a probability map at downsample 2 (as infer writes it):
    // its ground-truth tumour pixels at 220, the rest 30.
    const size = { w: 600, h: 520 }, ds = 2;
    const { layout } = await generateSyntheticSlide(
      { seed: 2, width: size.w, height: size.h, tumours: 2, tileSize: 256 },
      `${dir}/slide.tif`,
      `${dir}/slide.xml`,
    );
    assert(layout.tumours.length > 0);
    const truth = parseAsapXml(await Deno.readTextFile(`${dir}/slide.xml`), "slide.xml");
    const W = Math.ceil(size.w / ds), H = Math.ceil(size.h / ds);
    const gt = rasterize(truth, W, H, ds);
    const prob = gt.map((v) => (v ? 220 : 30));
    await writePyramidTiff(`${dir}/probability.tif`, {
      width: W,
      height: H,
      channels: 1,
      compression: "deflate",
      tileSize: 256,
      fill: 0,
    }, (qx, qy) => {
      const t = new Uint8Array(256 * 256);
      for (let y = 0; y < 256 && qy * 256 + y < H; y++) {
        for (let x = 0; x < 256 && qx * 256 + x < W; x++) {
          t[y * 256 + x] = prob[(qy * 256 + y) * W + qx * 256 + x];
        }
      }
      return t;
    });
    await Deno.writeTextFile(
      `${dir}/probability.json`,
      JSON.stringify({ downsample: ds, width: W, height: H, width0: size.w, height0: size.h }),
    );
    /** The CLI's flags for run folder `runDir`, this slide, `format` and `out`, then `more`. */
    const exportOf = (runDir: string, format: string, out: string, ...more: string[]) =>
      run([
        "--run",
        runDir,
        "--slide",
        `${dir}/slide.tif`,
        "--format",
        format,
        "--out",
        out,
        ...more,
      ]);
    // --min-area in µm²: the tumours of so small a slide are under the 200 µm² default.
    const r = await exportOf(dir, "both", `${dir}/pred.xml`, "--min-area", "10", "--quiet");
    assertEquals(r.code, 0, r.stderr);
    assert(/tumour regions/.test(r.stdout), r.stdout);
    const ann = parseAsapXml(await Deno.readTextFile(`${dir}/pred.xml`), "pred.xml");
    assertEquals(ann.positive.length, layout.tumours.length);
    const gj = JSON.parse(await Deno.readTextFile(`${dir}/pred.geojson`));
    assertEquals(gj.features.length, layout.tumours.length);
    // The exported XML covers the map's tumour pixels at its own resolution.
    const back = rasterize(ann, W, H, ds);
    let same = 0;
    for (let i = 0; i < W * H; i++) if ((back[i] > 0) === (gt[i] > 0)) same++;
    assert(same / (W * H) > 0.995, `${same / (W * H)}`);

    // Usage errors: exit 2 with the usage; a folder without probability.tif: exit 1, named.
    const u = await exportOf(dir, "svg", "x");
    assertEquals(u.code, 2);
    assert(/--format must be asap, geojson or both/.test(u.stderr) && /usage:/.test(u.stderr));
    const t = await exportOf(dir, "asap", "x", "--threshold", "2");
    assertEquals(t.code, 2);
    await Deno.mkdir(`${dir}/empty`);
    const m = await exportOf(`${dir}/empty`, "asap", "x");
    assertEquals(m.code, 1);
    assert(/empty: no probability\.tif/.test(m.stderr), m.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
