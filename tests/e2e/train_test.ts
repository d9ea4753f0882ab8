/**
 * `deno task train --profile tiny` end to end on synthetic slides (a few minutes on lavapipe):
 * interrupted after the classifier stage (--stop-after), resumed without redoing it, then every
 * artefact, finite metrics, the final model against the CAM masks, `deno task infer`, and the
 * errors for a run folder of another config and a corrupt checkpoint.
 */
import assert from "node:assert/strict";
import { parseMetrics } from "../../pipeline/run_dir.ts";
import { runCli } from "../util/cli.ts";

const train = new URL("../../pipeline/cli/train.ts", import.meta.url).pathname;
const infer = new URL("../../pipeline/cli/infer.ts", import.meta.url).pathname;

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

async function count(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) if (e.isFile && e.name.endsWith(".png")) n++;
  return n;
}

Deno.test({
  name: "train --profile tiny: stages, resume, artefacts, final beats CAM, infer",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "epsam_train_" });
    const args = ["--profile", "tiny", "--out", out, "--quiet"];

    // 1. Interrupted run: stop after the classifier.
    const a = await runCli(train, [...args, "--stop-after", "classifier"]);
    assert.equal(a.code, 0, a.stderr);
    const state1 = JSON.parse(await Deno.readTextFile(`${out}/state.json`));
    assert.equal(state1.stages.classifier.status, "done");
    assert.equal(state1.stages.preliminary, undefined);
    const clsEpochs = parseMetrics(await Deno.readTextFile(`${out}/metrics.jsonl`))
      .filter((r) => r.stage === "classifier").length;
    assert.ok(clsEpochs >= 1);

    // 2. The same command resumes: the classifier is not retrained.
    const b = await runCli(train, args);
    assert.equal(b.code, 0, b.stderr);
    assert.doesNotMatch(b.stderr, /classifier epoch/, "classifier was retrained on resume");
    const recs = parseMetrics(await Deno.readTextFile(`${out}/metrics.jsonl`));
    assert.equal(recs.filter((r) => r.stage === "classifier").length, clsEpochs);
    assert.match(b.stdout, /CAM masks \(test\)/);
    assert.match(b.stdout, /final SAM \(test\)/);

    // 3. Artefacts.
    for (
      const f of [
        "config.json",
        "state.json",
        "summary.json",
        "plots/loss_curves.svg",
        "checkpoints/classifier_best.safetensors",
        "checkpoints/sam_preliminary_best.safetensors",
        "checkpoints/sam_iter_1_best.safetensors",
        "pseudo/iter_0/stats.json",
        "eval/metrics.json",
      ]
    ) assert.ok(await exists(`${out}/${f}`), `missing ${f}`);
    const curves = await Deno.readTextFile(`${out}/plots/loss_curves.svg`);
    assert.match(curves, /<polyline data-series="classifier train"/, "classifier curve drawn");
    assert.ok(await count(`${out}/initial_mask`) > 0);
    assert.ok(await count(`${out}/examples`) > 0);
    const s = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
    for (const k of ["cam", "final"]) {
      assert.ok(
        Number.isFinite(s[k].dice) && Number.isFinite(s[k].iou),
        `${k}: ${JSON.stringify(s[k])}`,
      );
      assert.ok(s[k].n > 0);
    }
    assert.ok(Array.isArray(s.pseudo) && s.pseudo.length === 1);
    assert.equal(s.pseudo[0].iter, 0);
    assert.ok(s.pseudo[0].kept > 0);
    for (
      const st of ["dataset", "classifier", "initial_masks", "preliminary", "iter_1", "evaluate"]
    ) {
      assert.ok(typeof s.seconds[st] === "number", `no time for ${st}`);
      assert.ok(Number.isFinite(s.peakGpuBytes[st]), `no peak GPU memory for ${st}`);
    }
    assert.ok(s.peakGpuBytes.classifier > 0 && s.peakGpuBytes.preliminary > 0);
    assert.match(s.samWeights, /no pretrained SAM weights/);
    for (const r of recs) {
      for (const [k, v] of Object.entries(r)) {
        if (typeof v === "number") assert.ok(Number.isFinite(v), `${r.stage} ${k}`);
      }
    }
    // The final model beats the CAM masks it was bootstrapped from (margin in the summary).
    assert.ok(
      s.final.dice > s.cam.dice,
      `final Dice ${s.final.dice} vs CAM ${s.cam.dice} (margin ${s.margin.dice})`,
    );

    // 4. deno task infer on the test split.
    const c = await runCli(infer, ["--run", out, "--out", `${out}/infer`, "--quiet"]);
    assert.equal(c.code, 0, c.stderr);
    const m = JSON.parse(await Deno.readTextFile(`${out}/infer/metrics.json`));
    assert.ok(Number.isFinite(m.dice) && Number.isFinite(m.iou) && m.n === s.final.n);
    assert.ok(
      Math.abs(m.dice - s.final.dice) < 1e-6,
      `infer Dice ${m.dice} vs summary ${s.final.dice}`,
    );
    assert.equal(await count(`${out}/infer/masks`), m.n);

    // 4b. Tiled inference over a whole synthetic slide with tumour: a probability pyramid whose
    // tumour region scores higher than the rest of the tissue.
    const slidesDir = `${out}/data/slides`;
    let slide = "";
    for await (const e of Deno.readDir(slidesDir)) {
      if (!e.name.endsWith(".xml")) continue;
      const xml = await Deno.readTextFile(`${slidesDir}/${e.name}`);
      if (xml.includes("<Coordinate ")) slide = `${slidesDir}/${e.name.replace(/\.xml$/, ".tif")}`;
    }
    assert.ok(slide, "no synthetic slide with a tumour annotation");
    const sl = await runCli(infer, [
      "--run",
      out,
      "--slide",
      slide,
      "--out",
      `${out}/slide`,
      "--quiet",
    ]);
    assert.equal(sl.code, 0, sl.stderr);
    const { openSlide } = await import("../../pipeline/wsi/slide.ts");
    const { readAsapXml, rasterize } = await import("../../pipeline/wsi/annotations.ts");
    const prob = await openSlide(`${out}/slide/probability.tif`);
    const src = await openSlide(slide);
    const [pw, ph] = [prob.levels[0].width, prob.levels[0].height];
    const ds = src.levels[0].width / pw;
    const px = await prob.readRegion(0, 0, 0, pw, ph);
    const truth = rasterize(await readAsapXml(slide.replace(/\.tif$/, ".xml")), pw, ph, ds);
    let inSum = 0, inN = 0, outSum = 0, outN = 0;
    for (let i = 0; i < pw * ph; i++) {
      if (truth[i]) (inSum += px[i * 4], inN++);
      else (outSum += px[i * 4], outN++);
    }
    await prob.close();
    await src.close();
    assert.ok(
      inN > 0 && inSum / inN > outSum / outN + 20,
      `tumour ${inSum / inN} vs rest ${outSum / outN}`,
    );
    assert.ok((await Deno.stat(`${out}/slide/probability_overlay.png`)).size > 0);

    // 4c. Tumour polygons next to probability.tif (ASAP XML and QuPath GeoJSON, same regions),
    // and `deno task export` on that folder: unsimplified and unfiltered, the XML rasterised by
    // the project's parser at the map's resolution is exactly the thresholded map.
    const tumourXml = await readAsapXml(`${out}/slide/tumour.xml`);
    const tumourGj = JSON.parse(await Deno.readTextFile(`${out}/slide/tumour.geojson`));
    assert.equal(tumourGj.type, "FeatureCollection");
    assert.equal(tumourGj.features.length, tumourXml.positive.length);
    const info = JSON.parse(await Deno.readTextFile(`${out}/slide/probability.json`));
    assert.deepEqual([info.width, info.height], [pw, ph]);
    const exportCli = new URL("../../pipeline/cli/export.ts", import.meta.url).pathname;
    const ex = await runCli(exportCli, [
      "--run",
      `${out}/slide`,
      "--slide",
      slide,
      "--format",
      "asap",
      "--out",
      `${out}/slide/exact.xml`,
      "--min-area-px",
      "0",
      "--tolerance",
      "0",
      "--quiet",
    ]);
    assert.equal(ex.code, 0, ex.stderr);
    const back = rasterize(await readAsapXml(`${out}/slide/exact.xml`), pw, ph, info.downsample);
    let differ = 0, tumourPx = 0;
    for (let i = 0; i < pw * ph; i++) {
      if (px[i * 4] > 127) tumourPx++;
      if ((back[i] > 0) !== (px[i * 4] > 127)) differ++;
    }
    assert.equal(differ, 0, `${differ} of ${tumourPx} tumour pixels differ`);
    console.log(
      `  tumour.xml: ${tumourXml.positive.length} regions; exact export over ${tumourPx} tumour ` +
        `map pixels`,
    );

    // 5. Another config in the same folder is refused, naming the key.
    const d = await runCli(train, [...args, "--iterations", "2"]);
    assert.equal(d.code, 1);
    assert.match(d.stderr, /different config \(keys: iterations\)/);

    // 6. A corrupt checkpoint is reported by name.
    const ck = `${out}/checkpoints/classifier_best.safetensors`;
    const bytes = await Deno.readFile(ck);
    bytes[bytes.length - 5] ^= 0xff;
    await Deno.writeFile(ck, bytes);
    const e = await runCli(infer, ["--run", out, "--out", `${out}/infer2`, "--quiet"]);
    assert.equal(e.code, 1);
    assert.match(e.stderr, /classifier_best\.safetensors is corrupt/);
    await Deno.remove(out, { recursive: true });
  },
});
