/**
 * Stage 5: evaluation on the test positives, the only place pixel ground truth is used. Dice and
 * IoU as the reference computes them (per patch, smooth 1e-3, logits > 0, averaged over tumour
 * patches) plus pooled figures, for the CAM masks and for the final SAM prompted from the CAM
 * (`model_inference.py`). Writes `eval/metrics.json`, `summary.json`, `plots/loss_curves.svg` and
 * `examples/*.png` (image, CAM, pseudo-label, prediction, ground truth side by side).
 */
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { lossCurveSvg, type Series } from "../loss_curves.ts";
import { positives } from "../data/patches.ts";
import { loadPatches, readMask } from "../data/host_patches.ts";
import { examplePanel } from "../example_panel.ts";
import { exists } from "../fs.ts";
import type { StageContext } from "../stage_context.ts";
import { readCam } from "../classifier/cam.ts";
import { finalTag, loadStageSam, samBest } from "../sam/build.ts";
import type { EmbeddingCache } from "../sam/segment.ts";
import { pseudoDir, type PseudoStats } from "../sam/pseudo_labels.ts";
import { type Scores, segmentAndScore } from "../sam/score.ts";

/** Loss curves of every stage from metrics.jsonl (epochs laid end to end). */
async function lossCurves(ctx: StageContext): Promise<string> {
  const recs = await ctx.run.readMetrics();
  const series = new Map<string, [number, number][]>();
  const offsets = new Map<string, number>();
  let next = 0;
  for (const r of recs) {
    if (r.epoch === undefined || typeof r.train_loss !== "number") continue;
    if (!offsets.has(r.stage)) {
      offsets.set(r.stage, next);
    }
    const x = offsets.get(r.stage)! + (r.epoch as number);
    next = Math.max(next, x);
    const add = (name: string, v: unknown) => {
      if (typeof v !== "number" || !Number.isFinite(v)) return;
      if (!series.has(name)) series.set(name, []);
      series.get(name)!.push([x, v]);
    };
    add(`${r.stage} train`, r.train_loss);
    add(`${r.stage} val`, r.val_loss);
  }
  const list: Series[] = [...series].map(([name, points]) => ({ name, points }));
  if (!list.length) list.push({ name: "none", points: [[0, 0]] });
  return lossCurveSvg(list, {
    title: "EP-SAM training losses",
    width: 900,
    height: 480,
    xLabel: "epoch (stages in order)",
    yLabel: "loss",
  });
}

export interface Summary {
  profile: string;
  samWeights: string;
  dataset: string;
  cam: Scores;
  pseudo: (PseudoStats & { iter: number })[];
  final: Scores;
  margin: { dice: number; iou: number };
  seconds: Record<string, number>;
  /**
   * Peak GPU buffer bytes per stage: tensors, scratch textures and the pool's parked buffers
   * (evaluate added when it ends).
   */
  peakGpuBytes: Record<string, number>;
  testPatches: number;
}

/** Runs stage 5 and writes the summary. */
export async function runEvaluate(ctx: StageContext): Promise<Summary> {
  const { cfg, run } = ctx;
  const S = cfg.patchSize;
  const tag = finalTag(cfg.iterations);
  const sam = await loadStageSam(cfg, run.path(samBest(tag)));
  const test = positives(ctx.splits.test);
  if (!test.length) throw new Error("evaluate: the test split has no tumour patches");
  const patches = await loadPatches(test, S);
  const cams = await Promise.all(test.map((it) => readCam(run, "test", it, S)));
  // A frozen encoder's embeddings are cached per patch (the examples' training ones already are).
  const cache: EmbeddingCache = cfg.sam.trainEncoder ? null : run.path("embeddings");
  const r = await segmentAndScore(sam, cfg, patches, cams, "evaluate (test)", ctx.quiet, {
    cache,
    split: "test",
  });
  // Examples: a few training positives (with their pseudo-label) and test positives.
  await Deno.mkdir(run.path("examples"), { recursive: true });
  const lastPseudo = cfg.iterations > 0 ? cfg.iterations - 1 : 0;
  const trainEx = positives(ctx.splits.train).slice(0, 3);
  const tp = await loadPatches(trainEx, S);
  const tc = await Promise.all(trainEx.map((it) => readCam(run, "train", it, S)));
  const tr = await segmentAndScore(sam, cfg, tp, tc, "examples", true, { cache, split: "train" });
  for (let i = 0; i < tp.length; i++) {
    const pp = run.path(pseudoDir(lastPseudo, "train"), `${trainEx[i].id}_1.png`);
    const pseudo = await exists(pp) ? await readMask(pp, S) : null;
    await writeFileAtomic(
      run.path("examples", `train_${trainEx[i].id}.png`),
      examplePanel(tp[i], tc[i], tr.preds[i], pseudo),
    );
  }
  for (let i = 0; i < Math.min(4, patches.length); i++) {
    await writeFileAtomic(
      run.path("examples", `test_${test[i].id}.png`),
      examplePanel(patches[i], cams[i], r.preds[i], undefined),
    );
  }
  sam.dispose();
  await Deno.mkdir(run.path("plots"), { recursive: true });
  await writeFileAtomic(run.path("plots", "loss_curves.svg"), await lossCurves(ctx));
  await Deno.mkdir(run.path("eval"), { recursive: true });
  await writeFileAtomic(
    run.path("eval", "metrics.json"),
    JSON.stringify({ cam: r.cam, final: r.final }, null, 2) + "\n",
  );
  const pseudo: PseudoStats[] = [];
  for (let k = 0; k < cfg.iterations || (k === 0 && cfg.iterations === 0); k++) {
    const f = run.path(`pseudo/iter_${k}/stats.json`);
    if (await exists(f)) pseudo.push(JSON.parse(await Deno.readTextFile(f)));
  }
  const seconds: Record<string, number> = {};
  const peakGpuBytes: Record<string, number> = {};
  for (const [name, st] of Object.entries(run.state.stages)) {
    if (typeof st.seconds === "number") seconds[name] = Math.round(st.seconds * 10) / 10;
    if (typeof st.peakGpuBytes === "number") peakGpuBytes[name] = st.peakGpuBytes;
  }
  const summary: Summary = {
    profile: cfg.profile,
    samWeights: cfg.sam.checkpoint
      ? `pretrained checkpoint ${cfg.sam.checkpoint}; ${
        cfg.sam.trainEncoder ? "whole model" : "mask decoder only"
      } fine-tuned`
      : "no pretrained SAM weights: a small SAM initialised from the seed and trained whole (encoder included) on the pseudo-labels; this is not the paper's pretrained-SAM setting",
    dataset: cfg.data.dir ?? "synthetic slides (run/data)",
    cam: r.cam,
    pseudo,
    final: r.final,
    margin: { dice: r.final.dice - r.cam.dice, iou: r.final.iou - r.cam.iou },
    seconds,
    peakGpuBytes,
    testPatches: test.length,
  };
  await writeFileAtomic(run.path("summary.json"), JSON.stringify(summary, null, 2) + "\n");
  return summary;
}
