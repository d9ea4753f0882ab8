/**
 * Stage 4: iterative re-training (EP-SAM `4_iterative_re_training.py`). Iteration k trains SAM on
 * the pseudo-labels `pseudo/iter_<k-1>` of the training positives (validated, label-free, on those
 * of the validation positives) and, unless it is the last, writes `pseudo/iter_<k>` from the
 * un-augmented patches. The reference restarts each iteration from the base SAM; `sam.warmStart`
 * starts from the previous iteration's weights instead (the default when SAM trains from scratch).
 * When an iteration kept no pseudo-label of a split, that split falls back to the CAM masks.
 */
import { positives } from "../data/patches.ts";
import type { StageContext } from "../stage_context.ts";
import { samBest } from "../sam/build.ts";
import { generatePseudo, pseudoDir } from "../sam/pseudo_labels.ts";
import { targetsFrom, trainSam } from "../sam/train.ts";

/**
 * Runs (or resumes) re-training iteration `k` (1-based); `trainOnly` stops before its
 * pseudo-labels (run as shards).
 */
export async function runIteration(ctx: StageContext, k: number, trainOnly = false): Promise<void> {
  const { cfg, run } = ctx;
  const tag = `iter_${k}`;
  if (!run.stage(tag).trained) {
    let train = await targetsFrom(positives(ctx.splits.train), run.path(pseudoDir(k - 1, "train")));
    if (!train.length) {
      ctx.log(
        `${tag}: no pseudo-labels were kept at iter_${
          k - 1
        }; training on the CAM masks instead (lower --ids-threshold?)`,
      );
      train = await targetsFrom(positives(ctx.splits.train), run.path("initial_mask"));
    }
    const valItems = positives(ctx.splits.val);
    let val = await targetsFrom(valItems, run.path(pseudoDir(k - 1, "val")));
    if (!val.length) {
      val = valItems.map((it) => ({
        item: it,
        target: run.path("cam", "val", `${it.id}_mask.png`),
      }));
    }
    const prev = k === 1 ? "preliminary" : `iter_${k - 1}`;
    await trainSam(ctx, { tag, train, val, init: cfg.sam.warmStart ? samBest(prev) : null });
    run.updateStage(tag, { status: "running", trained: true, trainPatches: train.length });
  }
  if (k < cfg.iterations && !trainOnly) {
    const stats = await generatePseudo(ctx, samBest(tag), k);
    run.updateStage(tag, { status: "running", pseudo: stats as unknown as Record<string, number> });
  }
}
