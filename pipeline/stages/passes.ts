/**
 * One shard of a per-item pass (`train --pass P --shard K/N`), run beside the other shards: the
 * run folder is read, not locked; the shard writes only its own files and, last, its manifest.
 * The next stage run without `--pass` merges the shards (see pipeline/shard/manifest.ts).
 */
import type { PipelineConfig } from "../config.ts";
import { formatDuration } from "../progress.ts";
import { RunDir } from "../run_dir.ts";
import { describeOldRun } from "../config_compat.ts";
import type { StageContext } from "../stage_context.ts";
import { samBest } from "../sam/build.ts";
import { generatePseudo, pseudoPass } from "../sam/pseudo_labels.ts";
import { type Shard, shardLabel } from "../shard/shard.ts";
import { ShardRecorder } from "../shard/manifest.ts";
import { DATASET_PASSES, loadSplits, syntheticDataShard } from "./dataset.ts";
import { generateInitialMasks, INITIAL_MASKS_PASS } from "./initial_masks.ts";
import { EVALUATE_PASS, evaluateShard } from "./evaluate.ts";

/** Names `--pass` takes for a config. */
export function passNames(cfg: PipelineConfig): string[] {
  const pseudo = Array.from({ length: Math.max(1, cfg.iterations) }, (_, k) => pseudoPass(k));
  return [
    ...(cfg.data.dir ? [] : DATASET_PASSES),
    INITIAL_MASKS_PASS,
    ...pseudo,
    EVALUATE_PASS,
  ];
}

const isDatasetPass = (p: string): p is (typeof DATASET_PASSES)[number] =>
  (DATASET_PASSES as readonly string[]).includes(p);

/** Which stage must be done (or have trained its SAM) before a pass can run. */
function passNeeds(pass: string, cfg: PipelineConfig): { stage: string; trained: boolean } {
  if (isDatasetPass(pass)) return { stage: "", trained: false };
  if (pass === INITIAL_MASKS_PASS) return { stage: "classifier", trained: false };
  if (pass === EVALUATE_PASS) {
    return { stage: cfg.iterations > 0 ? `iter_${cfg.iterations}` : "preliminary", trained: true };
  }
  const k = Number(pass.slice("pseudo_".length));
  return { stage: k === 0 ? "preliminary" : `iter_${k}`, trained: true };
}

/** Runs shard `shard` of `pass` on the run in `out`. */
export async function runShardPass(o: {
  out: string;
  cfg: PipelineConfig;
  pass: string;
  shard: Shard;
  log: (m: string) => void;
  quiet: boolean;
  initGpu: () => Promise<{ adapterName?: string | null }>;
}): Promise<void> {
  const { out, cfg, pass, shard, log, quiet } = o;
  const run = RunDir.openShared(out, cfg as unknown as Record<string, unknown>);
  const need = passNeeds(pass, cfg);
  if (need.stage) {
    const st = run.stage(need.stage);
    if (st.status !== "done" && !(need.trained && st.trained)) {
      throw new Error(
        `pass ${pass} needs stage ${need.stage}${need.trained ? "'s SAM training" : ""} first ` +
          `(train --stop-after ${need.stage}${need.trained ? ":train" : ""})`,
      );
    }
  }
  // The dataset passes are CPU work: no adapter to start.
  const adapter = isDatasetPass(pass)
    ? "no GPU needed"
    : `adapter ${(await o.initGpu()).adapterName ?? ""}`;
  log(`train: pass ${pass}, shard ${shardLabel(shard)}, run ${out}; ${adapter}`);
  if (run.madeBefore.length) log(`train: ${describeOldRun(run.madeBefore)}`);
  const dataDir = cfg.data.dir ?? `${out}/data`;
  const t0 = performance.now();
  if (isDatasetPass(pass)) {
    await syntheticDataShard(dataDir, cfg, pass, shard, log, quiet);
  } else {
    const splits = await loadSplits(dataDir, cfg);
    const ctx: StageContext = { cfg, run, dataDir, splits, log, quiet };
    const recorder = await ShardRecorder.start(run.dir, pass, shard);
    const sharded = { shard, recorder };
    if (pass === INITIAL_MASKS_PASS) {
      await generateInitialMasks(ctx, sharded);
      const m = await recorder.finish();
      log(`initial masks: shard ${shardLabel(shard)}: ${recorder.size} items; ${m}`);
    } else if (pass === EVALUATE_PASS) await evaluateShard(ctx, sharded);
    else {
      const k = Number(pass.slice("pseudo_".length));
      await generatePseudo(ctx, samBest(k === 0 ? "preliminary" : `iter_${k}`), k, sharded);
    }
  }
  const secs = formatDuration((performance.now() - t0) / 1000);
  log(`train: pass ${pass} shard ${shardLabel(shard)} done (${secs})`);
}
