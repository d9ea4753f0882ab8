/**
 * Stage 1: the patch classifier (ResNet-ADL, one logit) trained with BCE-with-logits on
 * GPU-augmented, class-balanced batches; Adam, StepLR (step epochs/5, γ 0.9), early stopping on the
 * validation loss (patience epochs/2), the best epoch kept. With `classifier.preciseBn` the
 * BatchNorm statistics are recalibrated on clean training patches before each validation
 * (pipeline/classifier/precise_bn.ts), so the saved checkpoints carry them. Resumable per epoch:
 * model, Adam moments, scheduler and early-stopping state live in
 * `checkpoints/classifier_last.safetensors`.
 */
import { F, noGrad, tensor, tidy, trimPool } from "../../engine/mod.ts";
import { backward } from "../../engine/mod.ts";
import { Adam } from "../../engine/optim/adam.ts";
import { StepLR } from "../../engine/optim/schedulers.ts";
import { EarlyStopping } from "../../engine/optim/early_stopping.ts";
import { bceWithLogits } from "../../engine/ops/loss.ts";
import { Rng } from "../../engine/rng.ts";
import type { ResNetAdl } from "../../model/resnet_adl.ts";
import { augment } from "../data/augment.ts";
import { PatchLoader } from "../data/patches.ts";
import { Progress } from "../progress.ts";
import type { MetricRecord } from "../run_dir.ts";
import { classifierSchedule } from "../config.ts";
import { exists } from "../fs.ts";
import type { StageContext } from "../stage_context.ts";
import { buildClassifier, CLASSIFIER_BEST, CLASSIFIER_LAST } from "../classifier/model.ts";
import { checkFinite } from "../train_guards.ts";
import { recalibrateBatchNorm } from "../classifier/precise_bn.ts";
import { loadTrainState, saveTrainState } from "../train_state.ts";

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
    if (c.preciseBn) {
      await recalibrateBatchNorm(model, ctx.splits.train, {
        batchSize: c.batchSize,
        size: cfg.patchSize,
        seed: cfg.seed,
        epoch,
        adl: c.adl,
      });
    }
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
