/**
 * Stage 2: CAM masks from the selected classifier for every positive patch (EP-SAM
 * `2_generate_initial_mask.py`, rotation-averaged, NaN-safe). Written per patch, atomically:
 *   initial_mask/<id>_1.png      CAM mask of a training positive (0/255): the first training targets
 *   cam/<split>/<id>_mask.png    CAM mask of every positive of train/val/test
 *   cam/<split>/<id>_norm.png    normalised CAM (8-bit), the prompt-sampling weights
 * A rerun skips patches whose files exist.
 */
import { generateCamMasks } from "../../model/cam.ts";
import type { ResNetAdl } from "../../model/resnet_adl.ts";
import type { PatchItem } from "../data/patches.ts";
import { Progress } from "../progress.ts";
import type { PipelineConfig } from "../config.ts";
import { CLASSIFIER_BEST, loadClassifier } from "./classifier.ts";
import {
  exists,
  loadPatches,
  positives,
  readGray01,
  readMask,
  type SplitName,
  type StageContext,
  writeGray01,
  writeMask,
} from "./dataset.ts";

/** CAM mask and normalised CAM of one RGB patch with the run's CAM settings. */
export async function camOf(
  model: ResNetAdl,
  cfg: PipelineConfig,
  rgb: Uint8Array,
  size: number,
): Promise<{ mask: Uint8Array; norm: Float32Array; empty: boolean }> {
  const c = cfg.classifier;
  const r = await generateCamMasks(model, rgb, size, size, {
    ...c.cam,
    rotations: c.rotations ? 4 : 1,
  });
  return { mask: r.mask, norm: r.norm, empty: r.empty };
}

export function camPaths(run: { path(...p: string[]): string }, split: SplitName, id: string) {
  return {
    mask: run.path("cam", split, `${id}_mask.png`),
    norm: run.path("cam", split, `${id}_norm.png`),
  };
}

/** Reads a patch's stored CAM (mask 0/1, normalised map). */
export async function readCam(
  run: { path(...p: string[]): string },
  split: SplitName,
  item: PatchItem,
  size: number,
): Promise<{ mask: Uint8Array; norm: Float32Array }> {
  const p = camPaths(run, split, item.id);
  return { mask: await readMask(p.mask, size), norm: await readGray01(p.norm) };
}

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
