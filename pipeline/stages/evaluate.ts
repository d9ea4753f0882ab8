/**
 * Stage 5: evaluation on the test positives, the only place pixel ground truth is used. Dice and
 * IoU as the reference computes them (per patch, smooth 1e-3, logits > 0, averaged over tumour
 * patches) plus pooled figures, for the CAM masks and for the final SAM prompted from the CAM
 * (`model_inference.py`). Writes `eval/metrics.json`, `summary.json`, `plots/loss_curves.svg` and
 * `examples/*.png` (image, CAM, pseudo-label, prediction, ground truth side by side), and each
 * test positive's predicted mask in `eval/pred/<id>_1.png`. The test pass can run as shards
 * (`train --pass evaluate --shard K/N`, batches round robin); this stage then merges them.
 */
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { lossCurveSvg, type Series } from "../loss_curves.ts";
import { positives } from "../data/patches.ts";
import { loadPatches, readMask, writeMask } from "../data/host_patches.ts";
import { type PatchItem } from "../data/patches.ts";
import { type SegCounts, segCounts, SegMetrics } from "../metrics.ts";
import { Progress } from "../progress.ts";
import { ownsBatch, shardLabel } from "../shard/shard.ts";
import { isSharded, mergeShards, relativeTo, type ShardRun } from "../shard/manifest.ts";
import { examplePanel } from "../example_panel.ts";
import { exists } from "../fs.ts";
import { readPseudoStats } from "../result_files.ts";
import type { StageContext } from "../stage_context.ts";
import { readCam } from "../classifier/cam.ts";
import { finalTag, loadStageSam, samBest } from "../sam/build.ts";
import { type EmbeddingCache, segmentWithCam } from "../sam/segment.ts";
import { pseudoDir, type PseudoStats } from "../sam/pseudo_labels.ts";
import { type Scores, scores, segmentAndScore } from "../sam/score.ts";

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

/** Shard pass name of stage 5. */
export const EVALUATE_PASS = "evaluate";

/** A test patch's scores, as a shard records them. */
interface EvalRecord {
  cam: SegCounts;
  sam: SegCounts;
}

const predPath = (ctx: StageContext, id: string) => ctx.run.path("eval", "pred", `${id}_1.png`);

/**
 * The final SAM, prompted from the CAM, on the test positives in batches of `sam.batchSize`:
 * writes `eval/pred/<id>_1.png` and returns the CAM's and SAM's counts per patch. Sharded, only
 * the shard's batches, recorded in its manifest.
 */
async function scoreTest(
  ctx: StageContext,
  test: PatchItem[],
  sharded?: ShardRun,
): Promise<EvalRecord[]> {
  const { cfg, run } = ctx;
  const S = cfg.patchSize, B = cfg.sam.batchSize;
  const sam = await loadStageSam(cfg, run.path(samBest(finalTag(cfg.iterations))));
  // A frozen encoder's embeddings are cached per patch (the examples' training ones already are).
  const cache: EmbeddingCache = cfg.sam.trainEncoder ? null : run.path("embeddings");
  await Deno.mkdir(run.path("eval", "pred"), { recursive: true });
  const out: EvalRecord[] = [];
  const label = sharded ? `evaluate (test, shard ${shardLabel(sharded.shard)})` : "evaluate (test)";
  const prog = new Progress(label, test.length, { unit: "patch", enabled: !ctx.quiet });
  for (let i = 0, batch = 0; i < test.length; i += B, batch++) {
    const chunk = test.slice(i, i + B);
    if (!ownsBatch(sharded?.shard, batch)) {
      prog.tick(chunk.length);
      continue;
    }
    const ps = await loadPatches(chunk, S);
    const cs = await Promise.all(chunk.map((it) => readCam(run, "test", it, S)));
    const lg = await segmentWithCam(sam, cfg, ps, cs, {
      cache,
      split: "test",
      purpose: 300,
      firstIndex: i,
    });
    for (let j = 0; j < ps.length; j++) {
      const gt = ps[j].gt ?? new Uint8Array(S * S);
      const rec = { cam: segCounts(cs[j].mask, gt), sam: segCounts(lg[j], gt) };
      const f = predPath(ctx, chunk[j].id);
      await writeMask(f, Uint8Array.from(lg[j], (v) => (v > 0 ? 1 : 0)), S);
      out.push(rec);
      await sharded?.recorder.add(chunk[j].id, [relativeTo(run.dir, f)], rec);
    }
    prog.tick(chunk.length);
  }
  prog.finish();
  sam.dispose();
  return out;
}

/** Runs one shard of stage 5's test pass (`train --pass evaluate --shard K/N`). */
export async function evaluateShard(ctx: StageContext, sharded: ShardRun): Promise<void> {
  const test = positives(ctx.splits.test);
  await scoreTest(ctx, test, sharded);
  const path = await sharded.recorder.finish();
  ctx.log(
    `evaluate: shard ${shardLabel(sharded.shard)}: ${sharded.recorder.size} patches; ${path}`,
  );
}

/** Runs stage 5 and writes the summary (merging the test pass's shards when it ran as such). */
export async function runEvaluate(ctx: StageContext): Promise<Summary> {
  const { cfg, run } = ctx;
  const S = cfg.patchSize;
  const tag = finalTag(cfg.iterations);
  const test = positives(ctx.splits.test);
  if (!test.length) throw new Error("evaluate: the test split has no tumour patches");
  let recs: EvalRecord[];
  if (await isSharded(run.dir, EVALUATE_PASS)) {
    const merged = await mergeShards(run.dir, EVALUATE_PASS, test.map((it) => it.id));
    recs = test.map((it) => merged.get(it.id)!.record as EvalRecord);
  } else recs = await scoreTest(ctx, test);
  const camM = new SegMetrics(), samM = new SegMetrics();
  for (const [i, r] of recs.entries()) {
    if (!test[i].mask) continue; // no ground truth: not scored (as segmentAndScore)
    camM.addCounts(r.cam);
    samM.addCounts(r.sam);
  }
  const r = { cam: scores(camM.summary()), final: scores(samM.summary()) };
  const sam = await loadStageSam(cfg, run.path(samBest(tag)));
  const cache: EmbeddingCache = cfg.sam.trainEncoder ? null : run.path("embeddings");
  const shown = test.slice(0, 4);
  const patches = await loadPatches(shown, S);
  const cams = await Promise.all(shown.map((it) => readCam(run, "test", it, S)));
  const preds = await Promise.all(shown.map((it) => readMask(predPath(ctx, it.id), S)));
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
  for (let i = 0; i < patches.length; i++) {
    await writeFileAtomic(
      run.path("examples", `test_${test[i].id}.png`),
      examplePanel(patches[i], cams[i], preds[i], undefined),
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
    if (await exists(f)) pseudo.push(readPseudoStats(f));
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
