/**
 * Stage 1: the patch classifier (ResNet-ADL, one logit) trained with BCE-with-logits on
 * GPU-augmented, class-balanced batches; Adam, StepLR (step epochs/5, γ 0.9), early stopping on the
 * validation loss (patience epochs/2), the best epoch kept. Resumable per epoch: model, Adam moments,
 * scheduler and early-stopping state live in `checkpoints/classifier_last.safetensors`.
 *
 * Also the training utilities the SAM stages share: checkpointing a module with its optimiser in
 * one readback, the NaN/divergence check and the out-of-memory hint.
 */
import { F, keep, noGrad, type Tensor, tensor, tidy, trimPool } from "../../engine/mod.ts";
import { backward } from "../../engine/mod.ts";
import type { Module } from "../../engine/nn/module.ts";
import { Adam } from "../../engine/optim/adam.ts";
import { StepLR } from "../../engine/optim/schedulers.ts";
import { EarlyStopping } from "../../engine/optim/early_stopping.ts";
import { bceWithLogits } from "../../engine/ops/loss.ts";
import { Rng } from "../../engine/rng.ts";
import { RESNET50_ADL, ResNetAdl } from "../../model/resnet_adl.ts";
import { augment } from "../data/augment.ts";
import { PatchLoader } from "../data/patches.ts";
import { Progress } from "../progress.ts";
import {
  type CheckpointTensor,
  type MetricRecord,
  readCheckpoint,
  writeCheckpoint,
} from "../run_dir.ts";
import { classifierSchedule, type PipelineConfig } from "../config.ts";
import { exists, type StageContext } from "./dataset.ts";

// ------------------------------------------------------------------------ shared utilities

/** Reads many tensors back with one readback for the f32 ones. */
export async function downloadTensors(
  entries: [string, Tensor][],
): Promise<Map<string, CheckpointTensor>> {
  const out = new Map<string, CheckpointTensor>();
  const f32 = entries.filter(([, t]) => t.dtype === "f32" && t.size > 0);
  if (f32.length) {
    const flat = tidy(() => noGrad(() => F.concat(f32.map(([, t]) => F.reshape(t, [t.size])), 0)));
    const all = await flat.data() as Float32Array;
    flat.dispose();
    let off = 0;
    for (const [k, t] of f32) {
      out.set(k, { shape: t.shape, data: all.slice(off, off + t.size) });
      off += t.size;
    }
  }
  for (const [k, t] of entries) {
    if (out.has(k)) continue;
    if (t.size === 0) out.set(k, { shape: t.shape, data: new Float32Array(0) });
    else {
      const d = await t.data();
      out.set(k, {
        shape: t.shape,
        data: d instanceof Uint32Array ? new Int32Array(d) : d as Float32Array | Int32Array,
      });
    }
  }
  return out;
}

/** State-dict entries of `model` whose names pass `keep` (all by default). */
export function entriesOf(
  model: Module,
  keepKey: (k: string) => boolean = () => true,
): [string, Tensor][] {
  return [...model.stateDict()].filter(([k]) => keepKey(k));
}

/**
 * Writes model weights (`model.*`), Adam moments (`opt.m.*`, `opt.v.*`) and `meta` (JSON) to one
 * checksummed safetensors file, atomically.
 */
export async function saveTrainState(
  path: string,
  model: Module,
  opt: Adam | null,
  meta: Record<string, unknown>,
  keepKey: (k: string) => boolean = () => true,
): Promise<void> {
  const entries: [string, Tensor][] = entriesOf(model, keepKey).map(([k, t]) => [`model.${k}`, t]);
  const steps: Record<string, number> = {};
  if (opt) {
    const names = new Map(model.namedParameters().map(([k, t]) => [t, k]));
    for (const [p, st] of opt.state) {
      const k = names.get(p);
      if (!k) continue;
      entries.push([`opt.m.${k}`, st.expAvg], [`opt.v.${k}`, st.expAvgSq]);
      steps[k] = st.step;
    }
  }
  const tensors = await downloadTensors(entries);
  await writeCheckpoint(path, tensors, { meta: JSON.stringify({ ...meta, steps }) });
}

/** Loads what {@link saveTrainState} wrote; returns its `meta`. */
export async function loadTrainState(
  path: string,
  model: Module,
  opt: Adam | null,
): Promise<Record<string, unknown>> {
  const { tensors, metadata } = await readCheckpoint(path);
  const sd = new Map<string, { shape: readonly number[]; data: Float32Array | Int32Array }>();
  for (const [k, t] of tensors) {
    if (k.startsWith("model.")) sd.set(k.slice(6), t as never);
  }
  const own = model.stateDict();
  const missing = [...sd.keys()].filter((k) => !own.has(k));
  if (missing.length) {
    throw new Error(
      `checkpoint ${path} does not fit this model (e.g. ${
        missing.slice(0, 3).join(", ")
      }); was it written with another config?`,
    );
  }
  model.loadStateDict(sd as never, { strict: false, file: path });
  let meta: Record<string, unknown> = {};
  try {
    meta = JSON.parse(metadata.meta ?? "{}");
  } catch {
    throw new Error(`checkpoint ${path}: unreadable metadata`);
  }
  if (opt) {
    const steps = (meta.steps ?? {}) as Record<string, number>;
    for (const [k, p] of model.namedParameters()) {
      const m = tensors.get(`opt.m.${k}`), v = tensors.get(`opt.v.${k}`);
      if (!m || !v) continue;
      const old = opt.state.get(p);
      old?.expAvg.dispose();
      old?.expAvgSq.dispose();
      opt.state.set(p, {
        step: steps[k] ?? 0,
        expAvg: keep(tensor(m.data as Float32Array, p.shape)),
        expAvgSq: keep(tensor(v.data as Float32Array, p.shape)),
      });
    }
  }
  return meta;
}

/** Throws a clear error when a loss is NaN/infinite or has diverged. */
export function checkFinite(stage: string, where: string, value: number, limit = 1e6): void {
  if (!Number.isFinite(value)) {
    throw new Error(
      `${stage}: the loss became ${value} at ${where} (NaN/Inf: lower the learning rate or check the data)`,
    );
  }
  if (Math.abs(value) > limit) {
    throw new Error(
      `${stage}: the loss diverged (${
        value.toExponential(2)
      }) at ${where}; lower the learning rate`,
    );
  }
}

/** Rewrites the engine's out-of-memory error with the batch-size flag to lower. */
export async function withOomHint<T>(
  stage: string,
  flag: string,
  batch: number,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (/out of memory/i.test(msg)) {
      throw new Error(
        `${stage}: the GPU ran out of memory with batch size ${batch}; lower it (${flag} ${
          Math.max(1, Math.floor(batch / 2))
        }) and rerun the same command to resume.\n  (${msg.split("\n")[0]})`,
        { cause: e },
      );
    }
    throw e;
  }
}

// ------------------------------------------------------------------------------ classifier

export function buildClassifier(cfg: PipelineConfig): ResNetAdl {
  const c = cfg.classifier;
  const m = new ResNetAdl({
    ...RESNET50_ADL,
    layers: c.layers,
    width: c.width,
    highFreq: c.fft,
    seed: cfg.seed,
  });
  m.setAdl(c.adl);
  m.setCheckpointing(c.checkpoint);
  return m;
}

export const CLASSIFIER_BEST = "checkpoints/classifier_best.safetensors";
const CLASSIFIER_LAST = "checkpoints/classifier_last.safetensors";

/** Loads the selected classifier of a run (eval mode). */
export async function loadClassifier(cfg: PipelineConfig, path: string): Promise<ResNetAdl> {
  const m = buildClassifier(cfg);
  await loadTrainState(path, m, null);
  return m.eval();
}

async function evaluate(
  model: ResNetAdl,
  loader: PatchLoader,
): Promise<{ loss: number; acc: number }> {
  model.eval();
  let lossSum = 0, n = 0, correct = 0;
  for await (const b of loader.batches(0)) {
    const out = tidy(() =>
      noGrad(() => {
        const logits = F.reshape(model.forward(b.images), [b.labels.length]);
        const loss = bceWithLogits(logits, tensor(b.labels), { reduction: "sum" });
        return F.concat([F.reshape(loss, [1]), logits], 0);
      })
    );
    b.images.dispose();
    const v = await out.data() as Float32Array;
    out.dispose();
    lossSum += v[0];
    for (let i = 0; i < b.labels.length; i++) if ((v[1 + i] > 0 ? 1 : 0) === b.labels[i]) correct++;
    n += b.labels.length;
  }
  model.train();
  return { loss: lossSum / n, acc: correct / n };
}

/** Runs (or resumes) stage 1. */
export async function trainClassifier(ctx: StageContext): Promise<void> {
  const { cfg, run } = ctx;
  const c = cfg.classifier;
  const { step, patience } = classifierSchedule(c);
  await Deno.mkdir(run.path("checkpoints"), { recursive: true });
  const model = buildClassifier(cfg).train();
  const opt = new Adam(model.parameters(), { lr: c.lr, weightDecay: c.weightDecay });
  const sched = new StepLR(opt, step, c.gamma);
  const es = new EarlyStopping({ patience });
  let start = 0;
  if (await exists(run.path(CLASSIFIER_LAST))) {
    const meta = await loadTrainState(run.path(CLASSIFIER_LAST), model, opt);
    start = meta.epoch as number;
    es.best = meta.best as number ?? Infinity;
    es.counter = meta.counter as number ?? 0;
    // ADL's per-forward draws continue where they were (older checkpoints lack them).
    if (Array.isArray(meta.adl)) model.setAdlStates(meta.adl as number[]);
    if (meta.record) await run.ensureMetrics(meta.record as MetricRecord);
    for (let e = 0; e < start; e++) sched.step();
    ctx.log(`classifier: resuming after epoch ${start}`);
    if (meta.stopped) start = c.epochs;
  }
  const train = new PatchLoader(ctx.splits.train, {
    batchSize: c.batchSize,
    size: cfg.patchSize,
    seed: cfg.seed,
    balance: true,
    dropLast: ctx.splits.train.length > c.batchSize,
  });
  const val = new PatchLoader(ctx.splits.val, {
    batchSize: c.batchSize,
    size: cfg.patchSize,
    shuffle: false,
  });
  for (let epoch = start; epoch < c.epochs; epoch++) {
    const nb = train.batchCount(epoch);
    const prog = new Progress(`classifier epoch ${epoch + 1}/${c.epochs}`, nb, {
      unit: "batch",
      enabled: !ctx.quiet,
    });
    const rng = new Rng(cfg.seed + 1, epoch * 1_000_000);
    let lossSum = 0, seen = 0;
    for await (const b of train.batches(epoch)) {
      const n = b.labels.length;
      const loss = tidy(() => {
        let x = b.images;
        if (c.augment) x = augment(b.images, rng).images;
        const logits = F.reshape(model.forward(x), [n]);
        const l = bceWithLogits(logits, tensor(b.labels));
        backward(l);
        opt.step();
        opt.zeroGrad();
        return l;
      });
      b.images.dispose();
      const v = await loss.item();
      loss.dispose();
      checkFinite("classifier", `epoch ${epoch + 1} step ${b.index + 1}`, v);
      lossSum += v * n;
      seen += n;
      prog.tick();
    }
    prog.finish();
    // Validation runs other shapes than training: without a trim the pool would hold both sets
    // of buffers (at 512², batch 16 that is GiBs on top of the training step's).
    trimPool();
    const ev = await evaluate(model, val);
    trimPool();
    checkFinite("classifier", `epoch ${epoch + 1} (validation)`, ev.loss);
    const lr = opt.lr;
    sched.step();
    es.step(ev.loss);
    if (es.improved) {
      await saveTrainState(run.path(CLASSIFIER_BEST), model, null, {
        epoch: epoch + 1,
        valLoss: ev.loss,
      });
    }
    const record: MetricRecord = {
      stage: "classifier",
      epoch: epoch + 1,
      train_loss: lossSum / seen,
      val_loss: ev.loss,
      val_acc: ev.acc,
      lr,
    };
    await saveTrainState(run.path(CLASSIFIER_LAST), model, opt, {
      epoch: epoch + 1,
      best: es.best,
      counter: es.counter,
      stopped: es.shouldStop,
      adl: model.adlStates(),
      record,
    });
    await run.appendMetrics(record);
    run.updateStage("classifier", { status: "running", epoch: epoch + 1 });
    ctx.log(
      `classifier epoch ${epoch + 1}/${c.epochs}: train loss ${
        (lossSum / seen).toFixed(4)
      }, val loss ${ev.loss.toFixed(4)}, val acc ${(100 * ev.acc).toFixed(1)}%${
        es.improved ? " (best)" : ""
      }`,
    );
    if (es.shouldStop) {
      ctx.log(
        `classifier: early stopping after epoch ${
          epoch + 1
        } (no improvement for ${patience} epochs)`,
      );
      break;
    }
  }
  opt.dispose();
  model.dispose();
}
