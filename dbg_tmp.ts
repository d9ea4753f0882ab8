import { initGpu } from "./engine/mod.ts";
import { generateCamMasks } from "./model/cam.ts";
import { PROFILES } from "./pipeline/config.ts";
import { loadClassifier } from "./pipeline/stages/classifier.ts";
import { loadSplits, loadPatches, positives } from "./pipeline/stages/dataset.ts";
import { SegMetrics } from "./pipeline/metrics.ts";
await initGpu();
const cfg = structuredClone(PROFILES.tiny);
const run = Deno.args[0];
const m = await loadClassifier(cfg, `${run}/checkpoints/classifier_best.safetensors`);
const sp = await loadSplits(`${run}/data`, cfg);
const ps = await loadPatches(positives(sp.train).concat(positives(sp.test)), 64);
for (const [pct, k] of [[10, 3], [30, 3], [50, 3], [60, 3], [70, 3], [50, 1]]) {
  const sm = new SegMetrics(); let cov = 0;
  for (const p of ps) { const r = await generateCamMasks(m, p.rgb, 64, 64, { percentile: pct, openKernel: k, openAfterResize: true, rotations: 4 }); sm.add(r.mask, p.gt!); cov += r.mask.reduce((a, b) => a + b, 0) / 4096; }
  const s = sm.summary(); console.log(pct, k, s.dice.toFixed(3), s.iou.toFixed(3), (cov / ps.length).toFixed(2));
}
let g = 0; for (const p of ps) g += p.gt!.reduce((a, b) => a + b, 0) / 4096; console.log("gt cov", g / ps.length);
