/**
 * Stage 2: CAM masks from the selected classifier for every positive patch (EP-SAM
 * `2_generate_initial_mask.py`, rotation-averaged, NaN-safe). Written per patch, atomically:
 *   initial_mask/<id>_1.png      CAM mask of a training positive (0/255): the first training targets
 *   cam/<split>/<id>_mask.png    CAM mask of every positive of train/val/test
 *   cam/<split>/<id>_norm.png    normalised CAM (8-bit), the prompt-sampling weights
 * With a frozen SAM encoder (a pretrained checkpoint), the image embeddings of every positive are
 * computed here too, in fixed batches, into `embeddings/<split>/<id>.f32`, so the later stages
 * read them whatever order they visit the patches in. A rerun skips patches whose files exist.
 * Sharded (`train --pass initial_masks --shard K/N`), a process does every N-th patch (and
 * embedding batch) and records its files in a shard manifest; the unsharded stage then merges.
 */
import { Progress } from "../progress.ts";
import { positives } from "../data/patches.ts";
import { loadPatches, writeGray01, writeMask } from "../data/host_patches.ts";
import { exists } from "../fs.ts";
import type { StageContext } from "../stage_context.ts";
import { CLASSIFIER_BEST, loadClassifier } from "../classifier/model.ts";
import { camOf, camPaths } from "../classifier/cam.ts";
import { buildSam } from "../sam/build.ts";
import { embedPatches } from "../sam/segment.ts";
import { ownsBatch } from "../shard/shard.ts";
import { isSharded, mergeShards, relativeTo, type ShardRun } from "../shard/manifest.ts";

/** Shard pass name of stage 2. */
export const INITIAL_MASKS_PASS = "initial_masks";

const SPLITS = ["train", "val", "test"] as const;

/** The items of stage 2's pass, as its shard manifests name them, in pass order. */
function passItems(ctx: StageContext): string[] {
  const ids = SPLITS.flatMap((s) => positives(ctx.splits[s]).map((it) => `cam/${s}/${it.id}`));
  if (!ctx.cfg.sam.trainEncoder) {
    ids.push(...SPLITS.flatMap((s) => positives(ctx.splits[s]).map((it) => `emb/${s}/${it.id}`)));
  }
  return ids;
}

/** Runs (or resumes) stage 2, or with `sharded` one shard of it. */
export async function generateInitialMasks(ctx: StageContext, sharded?: ShardRun): Promise<void> {
  const { cfg, run } = ctx;
  const S = cfg.patchSize;
  if (!sharded && await isSharded(run.dir, INITIAL_MASKS_PASS)) {
    await mergeShards(run.dir, INITIAL_MASKS_PASS, passItems(ctx));
  }
  const model = await loadClassifier(cfg, run.path(CLASSIFIER_BEST));
  await Deno.mkdir(run.path("initial_mask"), { recursive: true });
  let empty = 0, index = 0;
  for (const split of SPLITS) {
    await Deno.mkdir(run.path("cam", split), { recursive: true });
    const items = positives(ctx.splits[split]);
    const prog = new Progress(`initial masks (${split})`, items.length, {
      unit: "patch",
      enabled: !ctx.quiet,
    });
    for (const it of items) {
      const p = camPaths(run, split, it.id);
      const init = run.path("initial_mask", `${it.id}_1.png`);
      const files = split === "train" ? [p.mask, init, p.norm] : [p.mask, p.norm];
      if (!ownsBatch(sharded?.shard, index++)) {
        prog.tick();
        continue;
      }
      if (!(await exists(p.norm) && (split !== "train" || await exists(init)))) {
        const [patch] = await loadPatches([it], S);
        const cam = await camOf(model, cfg, patch.rgb, S);
        if (cam.empty) empty++;
        await writeMask(p.mask, cam.mask, S);
        if (split === "train") await writeMask(init, cam.mask, S);
        await writeGray01(p.norm, cam.norm, S); // last: its presence marks the patch done
      }
      await sharded?.recorder.add(
        `cam/${split}/${it.id}`,
        files.map((f) => relativeTo(run.dir, f)),
      );
      prog.tick();
    }
    prog.finish();
  }
  if (empty) ctx.log(`initial masks: ${empty} positive patches had an all-zero CAM (empty mask)`);
  model.dispose();
  if (!cfg.sam.trainEncoder) await cacheEmbeddings(ctx, sharded);
}

/**
 * Frozen-encoder embeddings of every positive, in batches of `sam.batchSize` per split (fixed,
 * so a sharded pass computes each batch exactly as the unsharded one).
 */
async function cacheEmbeddings(ctx: StageContext, sharded?: ShardRun): Promise<void> {
  const { cfg, run } = ctx;
  const S = cfg.patchSize, B = cfg.sam.batchSize;
  const cache = run.path("embeddings");
  let sam = null, batch = 0;
  for (const split of SPLITS) {
    const items = positives(ctx.splits[split]);
    const prog = new Progress(`embeddings (${split})`, items.length, {
      unit: "patch",
      enabled: !ctx.quiet,
    });
    for (let i = 0; i < items.length; i += B) {
      const chunk = items.slice(i, i + B);
      if (!ownsBatch(sharded?.shard, batch++)) {
        prog.tick(chunk.length);
        continue;
      }
      const files = chunk.map((it) => `${cache}/${split}/${it.id}.f32`);
      const have = await Promise.all(files.map(exists));
      if (!have.every((h) => h)) {
        // The whole batch again (a part alone would run at another batch size).
        for (const [j, f] of files.entries()) if (have[j]) await Deno.remove(f);
        sam ??= await buildSam(cfg);
        (await embedPatches(sam, await loadPatches(chunk, S), cache, split)).dispose();
      }
      for (const [j, it] of chunk.entries()) {
        await sharded?.recorder.add(`emb/${split}/${it.id}`, [relativeTo(run.dir, files[j])]);
      }
      prog.tick(chunk.length);
    }
    prog.finish();
  }
  sam?.dispose();
}
