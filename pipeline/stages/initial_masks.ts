/**
 * Stage 2: CAM masks from the selected classifier for every positive patch (EP-SAM
 * `2_generate_initial_mask.py`, rotation-averaged, NaN-safe). Written per patch, atomically:
 *   initial_mask/<id>_1.png      CAM mask of a training positive (0/255): the first training targets
 *   cam/<split>/<id>_mask.png    CAM mask of every positive of train/val/test
 *   cam/<split>/<id>_norm.png    normalised CAM (8-bit), the prompt-sampling weights
 * A rerun skips patches whose files exist.
 */
import { Progress } from "../progress.ts";
import { positives } from "../data/patches.ts";
import { loadPatches, writeGray01, writeMask } from "../data/host_patches.ts";
import { exists } from "../fs.ts";
import type { StageContext } from "../stage_context.ts";
import { CLASSIFIER_BEST, loadClassifier } from "../classifier/model.ts";
import { camOf, camPaths } from "../classifier/cam.ts";

/** Runs (or resumes) stage 2. */
export async function generateInitialMasks(ctx: StageContext): Promise<void> {
  const { cfg, run } = ctx;
  const S = cfg.patchSize;
  const model = await loadClassifier(cfg, run.path(CLASSIFIER_BEST));
  await Deno.mkdir(run.path("initial_mask"), { recursive: true });
  let empty = 0;
  for (const split of ["train", "val", "test"] as const) {
    await Deno.mkdir(run.path("cam", split), { recursive: true });
    const items = positives(ctx.splits[split]);
    const prog = new Progress(`initial masks (${split})`, items.length, {
      unit: "patch",
      enabled: !ctx.quiet,
    });
    for (const it of items) {
      const p = camPaths(run, split, it.id);
      const init = run.path("initial_mask", `${it.id}_1.png`);
      if (await exists(p.norm) && (split !== "train" || await exists(init))) {
        prog.tick();
        continue;
      }
      const [patch] = await loadPatches([it], S);
      const cam = await camOf(model, cfg, patch.rgb, S);
      if (cam.empty) empty++;
      await writeMask(p.mask, cam.mask, S);
      if (split === "train") await writeMask(init, cam.mask, S);
      await writeGray01(p.norm, cam.norm, S); // last: its presence marks the patch done
      prog.tick();
    }
    prog.finish();
  }
  if (empty) ctx.log(`initial masks: ${empty} positive patches had an all-zero CAM (empty mask)`);
  model.dispose();
}
