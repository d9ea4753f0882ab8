/**
 * `deno task train [--profile tiny|default|paper] [--out runs/default] [--data <prepared dataset>]
 *   [--sam-checkpoint sam_vit_b_01ec64.pth] [--config file.json] [--set key.path=value ...]
 *   [--no-adl] [--no-fft] [--no-rotation] [--ids-threshold 0.9] [--iterations N] ...`
 *
 * The whole EP-SAM method, stage by stage, each resumable from the run folder: rerunning the same
 * command after an interruption (even kill -9) continues where it stopped, losing at most the
 * current epoch. See README.md ("Pipeline") for the stages and the run folder's layout.
 */
import { fmtBytes, initGpu, memoryStats, pool, trimPool } from "../../engine/mod.ts";
import { type ConfigFlags, type PipelineConfig, resolveConfig } from "../config.ts";
import { readStoredConfig, RunDir } from "../run_dir.ts";
import { readSummary } from "../result_files.ts";
import { absentKeys, describeOldRun } from "../config_compat.ts";
import { formatDuration } from "../progress.ts";
import { positives } from "../data/patches.ts";
import { fmt } from "../format.ts";
import type { StageContext } from "../stage_context.ts";
import { withOomHint } from "../train_guards.ts";
import { ensureSyntheticData, loadSplits } from "../stages/dataset.ts";
import { trainClassifier } from "../stages/classifier.ts";
import { generateInitialMasks } from "../stages/initial_masks.ts";
import { runPreliminary } from "../stages/preliminary.ts";
import { runIteration } from "../stages/iterate.ts";
import { runEvaluate, type Summary } from "../stages/evaluate.ts";
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { passNames, runShardPass } from "../stages/passes.ts";
import { resolveShard, WHOLE } from "../shard/shard.ts";
import { type ParsedFlags, runCommand, UsageError } from "./args.ts";

const USAGE =
  `usage: deno task train [--profile tiny|default|paper] [--out <run dir>] [--data <prepared dataset>]
    [--sam-checkpoint <sam_vit_b_01ec64.pth>] [--sam-model vit_b|<config.json>] [--config <file.json>]
    [--set key.path=value]... [--no-adl] [--no-fft] [--no-rotation] [--ids-threshold X] [--iterations N]
    [--seed N] [--epochs N] [--sam-epochs N] [--batch-size N] [--sam-batch-size N] [--patch-size N]
    [--points N] [--dataset camelyon16|camelyon17] [--train-encoder|--no-train-encoder]
    [--stop-after dataset|classifier|initial_masks|preliminary[:train]|iter_<k>[:train]] [--force] [--quiet]
    [--pass dataset_candidates|dataset_patches|initial_masks|pseudo_<k>|evaluate [--shard K/N]] [--plan]
  --stop-after <stage>:train stops after the stage's SAM training, before its pseudo-labels.
  --pass P does one per-item pass alone: with --shard K/N (K from 0; default from the Slurm array
  task) only shard K's items, recorded in <run>/shards/P/ (the dataset passes: <run>/data/shards/);
  the next stage run without --pass merges the shards and refuses an incomplete set.
  --plan checks the flags and the run folder and prints what deno task slurm needs (JSON).`;

function stageNames(cfg: PipelineConfig): string[] {
  const it = Array.from({ length: cfg.iterations }, (_, i) => `iter_${i + 1}`);
  return ["dataset", "classifier", "initial_masks", "preliminary", ...it, "evaluate"];
}

function table(s: Summary): string {
  const rows: string[][] = [["", "Dice", "IoU", "pooled Dice", "pooled IoU", "patches"]];
  const row = (
    name: string,
    v: { dice: number; iou: number; pooledDice: number; pooledIoU: number },
    n: string,
  ) => rows.push([name, fmt(v.dice), fmt(v.iou), fmt(v.pooledDice), fmt(v.pooledIoU), n]);
  row("CAM masks (test)", s.cam, String(s.cam.n));
  for (const p of s.pseudo) {
    row(`pseudo-labels iter_${p.iter} (train, kept)`, p, `${p.kept}/${p.total}`);
  }
  row("final SAM (test)", s.final, String(s.final.n));
  const w = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const lines = rows.map((r) =>
    r.map((c, j) => (j ? c.padStart(w[j]) : c.padEnd(w[j]))).join("  ")
  );
  lines.splice(1, 0, w.map((n) => "-".repeat(n)).join("  "));
  const secs = Object.entries(s.seconds).map(([k, v]) => `${k} ${formatDuration(v)}`).join(", ");
  const peaks = Object.entries(s.peakGpuBytes ?? {}).map(([k, v]) => `${k} ${fmtBytes(v)}`)
    .join(", ");
  return `${lines.join("\n")}\n\nfinal − CAM: Dice ${s.margin.dice >= 0 ? "+" : ""}${
    s.margin.dice.toFixed(4)
  }, IoU ${s.margin.iou >= 0 ? "+" : ""}${
    s.margin.iou.toFixed(4)
  }\ntime per stage: ${secs}\npeak GPU memory per stage: ${peaks}\nSAM weights: ${s.samWeights}`;
}

const OPTIONS = {
  profile: { type: "string" },
  out: { type: "string" },
  config: { type: "string" },
  data: { type: "string" },
  "sam-checkpoint": { type: "string" },
  "sam-model": { type: "string" },
  "train-encoder": { type: "boolean" },
  "no-train-encoder": { type: "boolean" },
  "no-adl": { type: "boolean" },
  "no-fft": { type: "boolean" },
  "no-rotation": { type: "boolean" },
  "ids-threshold": { type: "string" },
  iterations: { type: "string" },
  seed: { type: "string" },
  epochs: { type: "string" },
  "sam-epochs": { type: "string" },
  "batch-size": { type: "string" },
  "sam-batch-size": { type: "string" },
  "patch-size": { type: "string" },
  points: { type: "string" },
  dataset: { type: "string" },
  set: { type: "string", multiple: true },
  "stop-after": { type: "string" },
  pass: { type: "string" },
  shard: { type: "string" },
  plan: { type: "boolean" },
  force: { type: "boolean" },
  quiet: { type: "boolean" },
} as const;

export function main(argv: string[]): Promise<number> {
  return runCommand({ name: "train", usage: USAGE, options: OPTIONS }, argv, (v) => train(v));
}

async function train(v: ParsedFlags<typeof OPTIONS>): Promise<number> {
  const quiet = !!v.quiet;
  const log = (m: string) => console.error(m);
  let run: RunDir | null = null;
  try {
    const flags: ConfigFlags = {
      profile: v.profile,
      config: v.config,
      data: v.data,
      samCheckpoint: v["sam-checkpoint"],
      samModel: v["sam-model"],
      trainEncoder: v["train-encoder"] ? true : v["no-train-encoder"] ? false : undefined,
      noAdl: v["no-adl"],
      noFft: v["no-fft"],
      noRotation: v["no-rotation"],
      idsThreshold: v["ids-threshold"],
      iterations: v.iterations,
      seed: v.seed,
      epochs: v.epochs,
      samEpochs: v["sam-epochs"],
      batchSize: v["batch-size"],
      samBatchSize: v["sam-batch-size"],
      patchSize: v["patch-size"],
      points: v.points,
      dataset: v.dataset,
      set: v.set,
    };
    const out = v.out ?? "runs/default";
    // A run folder made before some config keys existed resumes with the values it ran with.
    const stored = readStoredConfig(out);
    const cfg = await resolveConfig(flags, { madeBefore: stored ? absentKeys(stored) : [] });
    const names = stageNames(cfg);
    const trainStops = names.filter((n) => n === "preliminary" || n.startsWith("iter_"))
      .map((n) => `${n}:train`);
    if (v["stop-after"] && ![...names, ...trainStops].includes(v["stop-after"])) {
      throw new Error(
        `--stop-after must be one of ${[...names, ...trainStops].join(", ")}, got "${
          v["stop-after"]
        }"`,
      );
    }
    const cfgRecord = cfg as unknown as Record<string, unknown>;
    if (v.shard !== undefined && v.pass === undefined) {
      throw new UsageError(
        "--shard K/N shares out the items of a per-item pass and goes with --pass " +
          `(${passNames(cfg).join(", ")}); the classifier and SAM trainings are not per item ` +
          "and run whole, on one GPU",
      );
    }
    if (v.pass !== undefined && !passNames(cfg).includes(v.pass)) {
      const whole = names.includes(v.pass) || v.pass.endsWith(":train");
      throw new UsageError(
        (whole
          ? `${v.pass} is not a per-item pass and cannot be sharded: it runs whole ` +
            `(--stop-after ${v.pass}); `
          : "") + `--pass must be one of ${passNames(cfg).join(", ")}, got "${v.pass}"`,
      );
    }
    if (v.plan) {
      // What deno task slurm needs; read-only where a run exists (its jobs may hold the lock).
      try {
        RunDir.openShared(out, cfgRecord);
      } catch (e) {
        if (!/no run here/.test((e as Error).message)) throw e;
        RunDir.open(out, cfgRecord).close();
      }
      console.log(JSON.stringify({
        iterations: cfg.iterations,
        dataDir: cfg.data.dir,
        passes: passNames(cfg),
      }));
      return 0;
    }
    if (v.pass !== undefined) {
      const pass = v.pass, shard = resolveShard(v.shard) ?? WHOLE;
      await runShardPass({ out, cfg, pass, shard, log, quiet, initGpu });
      return 0;
    }
    run = RunDir.open(out, cfgRecord, { force: v.force });
    const gpu = await initGpu();
    log(
      `train: profile ${cfg.profile}, run folder ${out}${
        run.resumed ? " (resuming)" : ""
      }; adapter ${gpu.adapterName ?? ""}`,
    );
    if (run.madeBefore.length) log(`train: ${describeOldRun(run.madeBefore)}`);
    if (!cfg.sam.checkpoint) {
      log(
        "train: no SAM checkpoint: a small SAM is initialised from the seed and trained whole (encoder included)",
      );
    }
    const dataDir = cfg.data.dir ?? `${out}/data`;
    const stageRun = async (name: string, fn: () => Promise<void>) => {
      if (run!.isDone(name)) return false;
      const prev = (run!.stage(name).seconds as number | undefined) ?? 0;
      const prevPeak = (run!.stage(name).peakGpuBytes as number | undefined) ?? 0;
      const t0 = performance.now();
      pool.resetPeak();
      run!.updateStage(name, { status: "running" });
      await fn();
      trimPool(); // the next stage runs other shapes: give this one's parked buffers back
      const seconds = prev + (performance.now() - t0) / 1000;
      // Peak GPU buffer memory the device held during the stage (over its resumes): tensors,
      // scratch textures and the pool's parked buffers; and the tensors' share of it.
      const mem = memoryStats();
      const peakGpuBytes = Math.max(prevPeak, mem.peakAllocatedBytes);
      const peakTensorBytes = Math.max(
        (run!.stage(name).peakTensorBytes as number | undefined) ?? 0,
        mem.peakBytes,
      );
      run!.updateStage(name, { status: "done", seconds, peakGpuBytes, peakTensorBytes });
      log(
        `train: stage ${name} done (${formatDuration(seconds)}, peak GPU memory ${
          fmtBytes(peakGpuBytes)
        }, of it in tensors ${fmtBytes(peakTensorBytes)})`,
      );
      return true;
    };
    const stopHere = (name: string) => {
      if (v["stop-after"] === name) {
        log(`train: stopped after stage ${name} (--stop-after); rerun without it to continue`);
        return true;
      }
      return false;
    };
    await stageRun("dataset", async () => {
      if (!cfg.data.dir) await ensureSyntheticData(dataDir, cfg, log, quiet);
    });
    if (stopHere("dataset")) return 0;
    const splits = await loadSplits(dataDir, cfg);
    log(
      `train: data ${dataDir}: ` +
        (["train", "val", "test"] as const).map((s) =>
          `${s} ${positives(splits[s]).length} tumour + ${
            splits[s].length - positives(splits[s]).length
          } normal`
        ).join(", "),
    );
    const ctx: StageContext = { cfg, run, dataDir, splits, log, quiet };
    const clsFlag = "--batch-size", samFlag = "--sam-batch-size";
    const stages: [string, () => Promise<void>][] = [
      [
        "classifier",
        () =>
          withOomHint("classifier", clsFlag, cfg.classifier.batchSize, () => trainClassifier(ctx)),
      ],
      [
        "initial_masks",
        () => withOomHint("initial masks", clsFlag, 1, () => generateInitialMasks(ctx)),
      ],
      [
        "preliminary",
        () => withOomHint("sam preliminary", samFlag, cfg.sam.batchSize, () => runPreliminary(ctx)),
      ],
      ...Array.from(
        { length: cfg.iterations },
        (_, i) =>
          [
            `iter_${i + 1}`,
            () =>
              withOomHint(`sam iter_${i + 1}`, samFlag, cfg.sam.batchSize, () =>
                runIteration(ctx, i + 1)),
          ] as [
            string,
            () => Promise<void>,
          ],
      ),
    ];
    const trainStop = v["stop-after"]?.endsWith(":train") ? v["stop-after"].slice(0, -6) : null;
    for (const [name, fn] of stages) {
      if (name === trainStop) {
        // The stage's SAM training only; its pseudo-labels run as shards (train --pass).
        if (!run.isDone(name)) {
          run.updateStage(name, { status: "running" });
          const k = name === "preliminary" ? 0 : Number(name.slice(5));
          await withOomHint(
            `sam ${name}`,
            samFlag,
            cfg.sam.batchSize,
            () => k === 0 ? runPreliminary(ctx, true) : runIteration(ctx, k, true),
          );
        }
        log(`train: stopped after the SAM training of ${name} (--stop-after ${name}:train)`);
        return 0;
      }
      await stageRun(name, fn);
      if (stopHere(name)) return 0;
    }
    let summary: Summary | null = null;
    await stageRun("evaluate", async () => {
      summary = await withOomHint("evaluate", samFlag, cfg.sam.batchSize, () => runEvaluate(ctx));
    });
    const sp = run.path("summary.json");
    summary ??= readSummary(sp);
    // The summary is written inside the evaluate stage: add that stage's own time and memory.
    const ev = run.stage("evaluate");
    if (summary.seconds.evaluate === undefined || summary.peakGpuBytes?.evaluate === undefined) {
      summary.seconds.evaluate = Math.round((ev.seconds as number) * 10) / 10;
      summary.peakGpuBytes = { ...summary.peakGpuBytes, evaluate: ev.peakGpuBytes as number };
      await writeFileAtomic(sp, JSON.stringify(summary, null, 2) + "\n");
    }
    console.log(table(summary));
    console.log(
      `\nrun folder ${out}: summary.json, metrics.jsonl, plots/loss_curves.svg, examples/`,
    );
    return 0;
  } finally {
    run?.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
