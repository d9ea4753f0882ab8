/**
 * CAMs of patches: computed from the classifier with the run's CAM settings (rotation-averaged,
 * NaN-safe), and the per-patch files stage 2 stores them in (`cam/<split>/<id>_{mask,norm}.png`)
 * that prompt SAM in the later stages.
 */
import { generateCamMasks } from "../../model/cam.ts";
import type { ResNetAdl } from "../../model/resnet_adl.ts";
import type { PatchItem } from "../data/patches.ts";
import { readGray01, readMask } from "../data/host_patches.ts";
import type { PipelineConfig } from "../config.ts";
import type { SplitName } from "../stage_context.ts";

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
