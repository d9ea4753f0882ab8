/**
 * Stage 3: preliminary SAM fine-tuning on the CAM masks (`initial_mask/`), validated label-free on
 * the CAM masks of the validation positives, then the first pseudo-labels `pseudo/iter_0`. The SAM
 * training and pseudo-labelling themselves are in `pipeline/sam/`.
 */
import { positives } from "../data/patches.ts";
import type { StageContext } from "../stage_context.ts";
import { samBest } from "../sam/build.ts";
import { generatePseudo } from "../sam/pseudo_labels.ts";
import { targetsFrom, trainSam } from "../sam/train.ts";

/** Runs (or resumes) stage 3; `trainOnly` stops before the pseudo-labels (run as shards). */
export async function runPreliminary(ctx: StageContext, trainOnly = false): Promise<void> {
  const { run } = ctx;
  const st = run.stage("preliminary");
  if (!st.trained) {
    const train = await targetsFrom(positives(ctx.splits.train), run.path("initial_mask"));
    const valItems = positives(ctx.splits.val);
    const val = valItems.map((it) => ({
      item: it,
      target: run.path("cam", "val", `${it.id}_mask.png`),
    }));
    await trainSam(ctx, { tag: "preliminary", train, val, init: null });
    run.updateStage("preliminary", { status: "running", trained: true });
  }
  if (trainOnly) return;
  const stats = await generatePseudo(ctx, samBest("preliminary"), 0);
  run.updateStage("preliminary", {
    status: "running",
    pseudo: stats as unknown as Record<string, number>,
  });
}
