/**
 * Training one SAM stage: prompts are `sam.points` random points inside the target mask, loss
 * Dice + IoU on the sigmoid of the mask logits at patch size, AdamW, cosine schedule over the
 * epochs. With a pretrained checkpoint only the mask decoder trains (as EP-SAM), on image embeddings
 * computed once per patch and cached in `embeddings/`; without one the whole model trains from the
 * seed (`sam.trainEncoder`) on host-augmented patches (flips / quarter turns, p = 0.5).
 *
 * Model selection and early stopping without pixel ground truth: the loss against the previous
 * stage's pseudo-labels of the validation positives (the CAM masks for the preliminary stage),
 * prompted from the CAM as at inference. Resumable per epoch.
 */
import { backward, F, noGrad, tensor, tidy } from "../../engine/mod.ts";
import { AdamW } from "../../engine/optim/adam.ts";
import { CosineAnnealingLR } from "../../engine/optim/schedulers.ts";
import { EarlyStopping } from "../../engine/optim/early_stopping.ts";
import { diceLoss, iouLoss } from "../../engine/ops/loss.ts";
import { Rng } from "../../engine/rng.ts";
import type { Sam } from "../../model/sam/sam.ts";
import type { PatchItem } from "../data/patches.ts";
import { augmentPair } from "../data/host_augment.ts";
import { loadPatches, readMask } from "../data/host_patches.ts";
import { Progress } from "../progress.ts";
import { randomPointsInMask } from "../prompts.ts";
import type { MetricRecord } from "../run_dir.ts";
import { exists } from "../fs.ts";
import type { StageContext } from "../stage_context.ts";
import { readCam } from "../classifier/cam.ts";
import { checkFinite } from "../train_guards.ts";
import { loadTrainState, saveTrainState } from "../train_state.ts";
import { buildSam, samBest, samLast, trainedKeys, untrainedKeys } from "./build.ts";
import { camPrompt, decodeLogits, type EmbeddingCache, embedPatches, samInput } from "./segment.ts";

/** One labelled patch for SAM training: its item and the path of its target mask. */
export interface SamTarget {
  item: PatchItem;
  target: string;
}

export interface SamStageSpec {
  /** `preliminary` or `iter_<k>`. */
  tag: string;
  train: SamTarget[];
  /** Label-free validation targets (val positives' previous pseudo-labels or CAM masks). */
  val: SamTarget[];
  /** Weights to start from (warm start), or null for the base model. */
  init: string | null;
}

async function valLoss(
  sam: Sam,
  ctx: StageContext,
  val: SamTarget[],
  cache: EmbeddingCache,
): Promise<number> {
  const { cfg, run } = ctx;
  const S = cfg.patchSize, B = cfg.sam.batchSize;
  sam.eval();
  let sum = 0;
  for (let i = 0; i < val.length; i += B) {
    const chunk = val.slice(i, i + B);
    const patches = await loadPatches(chunk.map((t) => t.item), S);
    const targets = await Promise.all(chunk.map((t) => readMask(t.target, S)));
    const cams = await Promise.all(chunk.map((t) => readCam(run, "val", t.item, S)));
    const emb = await embedPatches(sam, patches, cache, "val");
    const prompts = cams.map((c, j) => camPrompt(cfg, c, S, 101, i + j));
    const l = tidy(() =>
      noGrad(() => {
        const p = F.sigmoid(decodeLogits(sam, emb, prompts, S));
        const t = tensor(Float32Array.from(concatU8(targets)), [chunk.length, 1, S, S]);
        return F.add(diceLoss(p, t), iouLoss(p, t));
      })
    );
    emb.dispose();
    sum += (await l.item()) * chunk.length;
    l.dispose();
  }
  sam.train();
  return sum / Math.max(1, val.length);
}

function concatU8(a: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(a.reduce((s, x) => s + x.length, 0));
  let o = 0;
  for (const x of a) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}

const tagSeed = (tag: string) => [...tag].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) % 997, 7);

/** Trains (or resumes) one SAM stage; the selected weights end in `samBest(tag)`. */
export async function trainSam(ctx: StageContext, spec: SamStageSpec): Promise<void> {
  const { cfg, run } = ctx;
  const s = cfg.sam, S = cfg.patchSize, B = s.batchSize;
  if (!spec.train.length) throw new Error(`sam ${spec.tag}: no training masks`);
  const sam = await buildSam(cfg);
  if (spec.init) await loadTrainState(run.path(spec.init), sam, null, untrainedKeys(cfg));
  const keepKey = trainedKeys(cfg);
  if (!s.trainEncoder) {
    sam.imageEncoder.requiresGrad(false);
    sam.promptEncoder.requiresGrad(false);
  }
  sam.train();
  const params = sam.namedParameters().filter(([k, p]) => keepKey(k) && p.requiresGrad).map((
    [, p],
  ) => p);
  const lr = spec.init ? s.lr * s.warmStartLrScale : s.lr;
  const opt = new AdamW(params, { lr, weightDecay: s.weightDecay });
  const sched = new CosineAnnealingLR(opt, s.epochs);
  const es = new EarlyStopping({ patience: Math.max(1, s.patience) });
  const cache: EmbeddingCache = s.trainEncoder ? null : run.path("embeddings");
  let start = 0;
  const last = run.path(samLast(spec.tag));
  if (await exists(last)) {
    const meta = await loadTrainState(last, sam, opt, untrainedKeys(cfg));
    start = meta.epoch as number;
    es.best = (meta.best as number | null) ?? Infinity;
    es.counter = meta.counter as number ?? 0;
    for (let e = 0; e < start; e++) sched.step();
    if (meta.stopped) start = s.epochs;
    if (meta.record) await run.ensureMetrics(meta.record as MetricRecord);
    ctx.log(`sam ${spec.tag}: resuming after epoch ${start}`);
  }
  const I = sam.imgSize;
  for (let epoch = start; epoch < s.epochs; epoch++) {
    const rng = new Rng(cfg.seed + 31, epoch * 1_000_000 + tagSeed(spec.tag) * 1000);
    const order = rng.permutationHost(spec.train.length).map((i) => spec.train[i]);
    const nb = Math.ceil(order.length / B);
    const prog = new Progress(`sam ${spec.tag} epoch ${epoch + 1}/${s.epochs}`, nb, {
      unit: "batch",
      enabled: !ctx.quiet,
    });
    let lossSum = 0, seen = 0;
    for (let bi = 0; bi < nb; bi++) {
      const chunk = order.slice(bi * B, (bi + 1) * B);
      const patches = await loadPatches(chunk.map((t) => t.item), S);
      const targets = await Promise.all(chunk.map((t) => readMask(t.target, S)));
      if (s.trainEncoder && s.augment) {
        for (let j = 0; j < patches.length; j++) {
          const a = augmentPair(patches[j].rgb, targets[j], S, rng.uniformHost(3));
          patches[j] = { ...patches[j], rgb: a.rgb };
          targets[j] = a.mask;
        }
      }
      const prompts = targets.map((m) => randomPointsInMask(m, S, S, s.points, rng));
      const emb = s.trainEncoder ? null : await embedPatches(sam, patches, cache, "train");
      const x = s.trainEncoder ? samInput(sam, patches) : null;
      const loss = tidy(() => {
        const e = emb ?? sam.embed(tensor(x!, [chunk.length, 3, I, I]));
        const p = F.sigmoid(decodeLogits(sam, e, prompts, S));
        const t = tensor(Float32Array.from(concatU8(targets)), [chunk.length, 1, S, S]);
        const l = F.add(diceLoss(p, t), iouLoss(p, t));
        backward(l);
        opt.step();
        opt.zeroGrad();
        return l;
      });
      emb?.dispose();
      const v = await loss.item();
      loss.dispose();
      checkFinite(`sam ${spec.tag}`, `epoch ${epoch + 1} step ${bi + 1}`, v);
      lossSum += v * chunk.length;
      seen += chunk.length;
      prog.tick();
    }
    prog.finish();
    const lr = opt.lr;
    sched.step();
    const vl = spec.val.length ? await valLoss(sam, ctx, spec.val, cache) : lossSum / seen;
    checkFinite(`sam ${spec.tag}`, `epoch ${epoch + 1} (validation)`, vl);
    es.step(vl);
    if (es.improved) {
      await saveTrainState(run.path(samBest(spec.tag)), sam, null, {
        epoch: epoch + 1,
        valLoss: vl,
      }, keepKey);
    }
    const record: MetricRecord = {
      stage: `sam_${spec.tag}`,
      epoch: epoch + 1,
      train_loss: lossSum / seen,
      val_loss: vl,
      val_target: spec.val.length ? "pseudo-labels of val positives (label-free)" : "train loss",
      lr,
    };
    await saveTrainState(last, sam, opt, {
      epoch: epoch + 1,
      best: es.best,
      counter: es.counter,
      stopped: es.shouldStop,
      record,
    }, keepKey);
    await run.appendMetrics(record);
    run.updateStage(spec.tag, { status: "running", epoch: epoch + 1 });
    ctx.log(
      `sam ${spec.tag} epoch ${epoch + 1}/${s.epochs}: train loss ${
        (lossSum / seen).toFixed(4)
      }, ` +
        `label-free val loss ${vl.toFixed(4)}${es.improved ? " (best)" : ""}`,
    );
    if (es.shouldStop) {
      ctx.log(`sam ${spec.tag}: early stopping after epoch ${epoch + 1}`);
      break;
    }
  }
  opt.dispose();
  sam.dispose();
}

/** Training targets from a folder of `<id>_1.png` masks (only patches that have one). */
export async function targetsFrom(items: PatchItem[], dir: string): Promise<SamTarget[]> {
  const out: SamTarget[] = [];
  for (const it of items) {
    const p = `${dir}/${it.id}_1.png`;
    if (await exists(p)) out.push({ item: it, target: p });
  }
  return out;
}
