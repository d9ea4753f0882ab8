/**
 * Pseudo-labels from un-augmented patches with a SAM stage's selected weights: `sam.points` points
 * inside the CAM mask drawn ∝ the normalised CAM; a SAM mask is kept when
 * IDS = |CAM ∧ SAM| / (|SAM| + 1) ≥ `idsThreshold`. Written to `pseudo/iter_<k>/{train,val}`.
 */
import type { Sam } from "../../model/sam/sam.ts";
import { positives } from "../data/patches.ts";
import { loadPatches, writeMask } from "../data/host_patches.ts";
import { idsScore, type SegCounts, segCounts, SegMetrics } from "../metrics.ts";
import { Progress } from "../progress.ts";
import { dropTornLine, parseMetrics } from "../run_dir.ts";
import { fmt } from "../format.ts";
import { exists } from "../fs.ts";
import { readPseudoStats } from "../result_files.ts";
import type { SplitName, StageContext } from "../stage_context.ts";
import { readCam } from "../classifier/cam.ts";
import { loadStageSam } from "./build.ts";
import { type EmbeddingCache, segmentWithCam } from "./segment.ts";
import { ownsBatch, shardLabel } from "../shard/shard.ts";
import {
  isSharded,
  manifestName,
  mergeShards,
  relativeTo,
  type ShardRun,
} from "../shard/manifest.ts";
import { writeFileAtomic } from "../../engine/io/atomic.ts";

export interface PseudoStats {
  iter: number;
  kept: number;
  total: number;
  /** Of the kept pseudo-labels against the ground truth (evaluation only; NaN if none kept). */
  dice: number;
  iou: number;
  pooledDice: number;
  pooledIoU: number;
  valKept: number;
}

export const pseudoDir = (iter: number, split: SplitName) => `pseudo/iter_${iter}/${split}`;

/** Shard pass name of the pseudo-labels of round `iter`. */
export const pseudoPass = (iter: number) => `pseudo_${iter}`;

/** One patch's pseudo-label decision, journalled so an interrupted iteration resumes per batch. */
interface PseudoDecision {
  split: SplitName;
  id: string;
  ids: number;
  kept: boolean;
  /** Counts against the ground truth of a kept training patch (evaluation only). */
  counts?: SegCounts;
}

/**
 * Writes `pseudo/iter_<iter>/{train,val}` from the stage's selected SAM. Resumable per batch: each
 * batch's decisions are appended to `progress.jsonl` after its masks are written, and batches
 * found there are replayed instead of recomputed (prompts are seeded by patch index, so a
 * recomputed batch is identical). With `sharded`, only the shard's batches (every N-th of the
 * pass, counted over train then val) with their decisions in its manifest, and no statistics; the
 * unsharded call then merges the shards into the journal and replays it.
 */
export async function generatePseudo(
  ctx: StageContext,
  weights: string,
  iter: number,
  sharded?: ShardRun,
): Promise<PseudoStats | null> {
  const { cfg, run } = ctx;
  const done = run.path(`pseudo/iter_${iter}/stats.json`);
  if (!sharded && await exists(done)) return readPseudoStats(done);
  await Deno.mkdir(run.path(`pseudo/iter_${iter}`), { recursive: true });
  const pass = pseudoPass(iter);
  // A shard journals in a file of its own; the merge writes the whole pass's journal from the
  // shards' records, in pass order, and the loop below then replays every batch.
  const journal = run.path(
    `pseudo/iter_${iter}/progress${
      sharded ? `.${manifestName(sharded.shard).replace(/\.json$/, "")}` : ""
    }.jsonl`,
  );
  if (!sharded && await isSharded(run.dir, pass)) {
    const ids = (["train", "val"] as const).flatMap((s) =>
      positives(ctx.splits[s]).map((it) => `${s}/${it.id}`)
    );
    const merged = await mergeShards(run.dir, pass, ids);
    const lines = ids.map((id) => JSON.stringify(merged.get(id)!.record) + "\n").join("");
    await writeFileAtomic(journal, lines);
  }
  const decided = new Map<string, PseudoDecision>();
  if (await exists(journal)) {
    dropTornLine(journal);
    for (const r of parseMetrics(await Deno.readTextFile(journal), journal)) {
      const d = r as unknown as PseudoDecision;
      decided.set(`${d.split}/${d.id}`, d);
    }
    ctx.log(`pseudo-labels iter_${iter}: resuming, ${decided.size} patches already decided`);
  }
  let sam: Sam | null = null;
  const S = cfg.patchSize, B = cfg.sam.batchSize;
  const cache: EmbeddingCache = cfg.sam.trainEncoder ? null : run.path("embeddings");
  const metrics = new SegMetrics();
  let kept = 0, total = 0, valKept = 0;
  const tally = (d: PseudoDecision) => {
    if (d.split === "train") total++;
    if (!d.kept) return;
    if (d.split === "val") valKept++;
    else {
      kept++;
      if (d.counts) metrics.addCounts(d.counts);
    }
  };
  let batchIndex = 0;
  for (const split of ["train", "val"] as const) {
    const items = positives(ctx.splits[split]);
    const dir = run.path(pseudoDir(iter, split));
    await Deno.mkdir(dir, { recursive: true });
    const prog = new Progress(`pseudo-labels iter_${iter} (${split})`, items.length, {
      unit: "patch",
      enabled: !ctx.quiet,
    });
    const record = async (d: PseudoDecision) => {
      const f = d.kept ? [relativeTo(run.dir, `${dir}/${d.id}_1.png`)] : [];
      await sharded?.recorder.add(`${d.split}/${d.id}`, f, d);
    };
    for (let i = 0; i < items.length; i += B) {
      const chunk = items.slice(i, i + B);
      if (!ownsBatch(sharded?.shard, batchIndex++)) {
        prog.tick(chunk.length);
        continue;
      }
      const known = chunk.map((it) => decided.get(`${split}/${it.id}`));
      if (known.every((d) => d)) {
        known.forEach((d) => tally(d!));
        for (const d of known) await record(d!);
        prog.tick(chunk.length);
        continue;
      }
      sam ??= await loadStageSam(cfg, run.path(weights));
      const patches = await loadPatches(chunk, S);
      const cams = await Promise.all(chunk.map((it) => readCam(run, split, it, S)));
      const logits = await segmentWithCam(sam, cfg, patches, cams, {
        cache,
        split,
        purpose: 200 + iter,
        firstIndex: i,
      });
      const batch: PseudoDecision[] = [];
      for (let j = 0; j < chunk.length; j++) {
        const mask = Uint8Array.from(logits[j], (v) => (v > 0 ? 1 : 0));
        const ids = idsScore(cams[j].mask, mask);
        const d: PseudoDecision = { split, id: chunk[j].id, ids, kept: ids >= cfg.idsThreshold };
        if (d.kept) {
          await writeMask(`${dir}/${chunk[j].id}_1.png`, mask, S);
          if (split === "train" && patches[j].gt) d.counts = segCounts(mask, patches[j].gt!);
        }
        batch.push(d);
        tally(d);
      }
      for (const d of batch) await record(d);
      await Deno.writeTextFile(journal, batch.map((d) => JSON.stringify(d) + "\n").join(""), {
        append: true,
      });
      prog.tick(chunk.length);
    }
    prog.finish();
  }
  sam?.dispose();
  if (sharded) {
    const path = await sharded.recorder.finish();
    ctx.log(
      `pseudo-labels iter_${iter}: shard ${
        shardLabel(sharded.shard)
      }: ${sharded.recorder.size} patches; ${path}`,
    );
    return null;
  }
  const sm = metrics.summary();
  const stats: PseudoStats = {
    iter,
    kept,
    total,
    dice: sm.dice,
    iou: sm.iou,
    pooledDice: kept ? sm.pooledDice : NaN,
    pooledIoU: kept ? sm.pooledIoU : NaN,
    valKept,
  };
  await writeFileAtomic(done, JSON.stringify(stats, null, 2) + "\n");
  await run.appendMetrics({ stage: "pseudo", ...stats } as never);
  ctx.log(
    `pseudo-labels iter_${iter}: kept ${kept}/${total} train patches (IDS >= ${cfg.idsThreshold}), ` +
      `${valKept} val; vs ground truth (evaluation only) Dice ${fmt(sm.dice)}, IoU ${fmt(sm.iou)}`,
  );
  return stats;
}
