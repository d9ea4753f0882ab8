/**
 * Segmentation of patches prompted from their CAM, scored against the ground truth where a patch
 * has one: Dice and IoU as the reference computes them (per patch, smooth 1e-3, logits > 0,
 * averaged over tumour patches) plus pooled figures, for the CAM masks and for SAM.
 */
import type { Sam } from "../../model/sam/sam.ts";
import type { HostPatch } from "../data/host_patches.ts";
import { SegMetrics, type SegSummary } from "../metrics.ts";
import { Progress } from "../progress.ts";
import type { PipelineConfig } from "../config.ts";
import type { SplitName } from "../stage_context.ts";
import { type EmbeddingCache, segmentWithCam } from "./segment.ts";

export interface Scores {
  dice: number;
  iou: number;
  pooledDice: number;
  pooledIoU: number;
  n: number;
}

/** The scores of a metrics summary. */
export const scores = (s: SegSummary): Scores => ({
  dice: s.dice,
  iou: s.iou,
  pooledDice: s.pooledDice,
  pooledIoU: s.pooledIoU,
  n: s.patches,
});

/** Segments patches with CAM prompts in batches; per-patch 0/1 predictions and CAM/SAM scores. */
export async function segmentAndScore(
  sam: Sam,
  cfg: PipelineConfig,
  patches: HostPatch[],
  cams: { mask: Uint8Array; norm: Float32Array }[],
  label: string,
  quiet: boolean,
  embeddings: { cache: EmbeddingCache; split: SplitName | "infer" } = {
    cache: null,
    split: "infer",
  },
): Promise<{ preds: Uint8Array[]; logits: Float32Array[]; cam: Scores; final: Scores }> {
  const B = cfg.sam.batchSize;
  const camM = new SegMetrics(), samM = new SegMetrics();
  const preds: Uint8Array[] = [], logits: Float32Array[] = [];
  const prog = new Progress(label, patches.length, { unit: "patch", enabled: !quiet });
  for (let i = 0; i < patches.length; i += B) {
    const ps = patches.slice(i, i + B), cs = cams.slice(i, i + B);
    const lg = await segmentWithCam(sam, cfg, ps, cs, {
      ...embeddings,
      purpose: 300,
      firstIndex: i,
    });
    for (let j = 0; j < ps.length; j++) {
      logits.push(lg[j]);
      preds.push(Uint8Array.from(lg[j], (v) => (v > 0 ? 1 : 0)));
      const gt = ps[j].gt;
      if (gt) {
        camM.add(cs[j].mask, gt);
        samM.add(lg[j], gt);
      }
    }
    prog.tick(ps.length);
  }
  prog.finish();
  return { preds, logits, cam: scores(camM.summary()), final: scores(samM.summary()) };
}
