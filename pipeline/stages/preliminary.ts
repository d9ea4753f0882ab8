/**
 * Stage 3: preliminary SAM fine-tuning on the CAM masks (`initial_mask/`), then the first
 * pseudo-labels `pseudo/iter_0`. Also the SAM machinery the later stages share:
 *
 * - training: prompts are `sam.points` random points inside the target mask, loss Dice + IoU on
 *   the sigmoid of the mask logits at patch size, AdamW, cosine schedule over the epochs. With a
 *   pretrained checkpoint only the mask decoder trains (as EP-SAM), on image embeddings computed
 *   once per patch and cached in `embeddings/`; without one the whole model trains from the seed
 *   (`sam.trainEncoder`) on host-augmented patches (flips / quarter turns, p = 0.5).
 * - model selection and early stopping without pixel ground truth: the loss against the previous
 *   stage's pseudo-labels of the validation positives (the CAM masks for this stage), prompted from
 *   the CAM as at inference.
 * - pseudo-labels from un-augmented patches: `sam.points` points inside the CAM mask drawn ∝ the
 *   normalised CAM; a SAM mask is kept when IDS = |CAM ∧ SAM| / (|SAM| + 1) ≥ `idsThreshold`.
 */
import {
  backward,
  F,
  memoryStats,
  noGrad,
  type Tensor,
  tensor,
  tidy,
  trimPool,
} from "../../engine/mod.ts";
import { AdamW } from "../../engine/optim/adam.ts";
import { CosineAnnealingLR } from "../../engine/optim/schedulers.ts";
import { EarlyStopping } from "../../engine/optim/early_stopping.ts";
import { diceLoss, iouLoss } from "../../engine/ops/loss.ts";
import { Rng } from "../../engine/rng.ts";
import { rotateImage } from "../../model/cam.ts";
import { parseSamConfig, SAM_CONFIGS, type SamConfig } from "../../model/sam/configs.ts";
import { loadSam } from "../../model/sam/checkpoint.ts";
import { Sam } from "../../model/sam/sam.ts";
import { applyCoords, applyImage, preprocess } from "../../model/sam/transforms.ts";
import type { PatchItem } from "../data/patches.ts";
import { idsScore, type SegCounts, segCounts, SegMetrics } from "../metrics.ts";
import { Progress } from "../progress.ts";
import { batchPrompts, camPointsInMask, type PointPrompt, randomPointsInMask } from "../prompts.ts";
import type { PipelineConfig } from "../config.ts";
import { checkFinite, loadTrainState, saveTrainState } from "./classifier.ts";
import {
  exists,
  type HostPatch,
  loadPatches,
  positives,
  readMask,
  type SplitName,
  type StageContext,
  writeMask,
} from "./dataset.ts";
import { readCam } from "./initial_masks.ts";
import { dropTornLine, type MetricRecord, parseMetrics } from "../run_dir.ts";
import { ownsBatch, shardLabel } from "../shard/shard.ts";
import {
  isSharded,
  manifestName,
  mergeShards,
  relativeTo,
  type ShardRun,
} from "../shard/manifest.ts";
import { writeFileAtomic } from "../../engine/io/atomic.ts";

// ------------------------------------------------------------------------------ model

export function samConfigOf(cfg: PipelineConfig): SamConfig {
  const m = cfg.sam.model;
  if (typeof m === "string") {
    const c = SAM_CONFIGS[m];
    if (!c) {
      throw new Error(`sam.model: unknown SAM config "${m}" (vit_b, vit_l, vit_h or an object)`);
    }
    return c;
  }
  return parseSamConfig(m, "sam.model");
}

/** The base SAM: the pretrained checkpoint, or a seeded initialisation. */
export async function buildSam(cfg: PipelineConfig): Promise<Sam> {
  const sc = samConfigOf(cfg);
  if (cfg.sam.checkpoint) return await loadSam(cfg.sam.checkpoint, sc, { seed: cfg.seed });
  return new Sam(sc, cfg.seed);
}

/** Keys a SAM stage trains and checkpoints. */
export function trainedKeys(cfg: PipelineConfig): (k: string) => boolean {
  return cfg.sam.trainEncoder ? () => true : (k) => k.startsWith("mask_decoder.");
}

export const samBest = (tag: string) => `checkpoints/sam_${tag}_best.safetensors`;
const samLast = (tag: string) => `checkpoints/sam_${tag}_last.safetensors`;

/** A SAM with a stage's selected weights loaded over the base (eval mode). */
export async function loadStageSam(cfg: PipelineConfig, path: string): Promise<Sam> {
  const sam = await buildSam(cfg);
  await loadTrainState(path, sam, null);
  return sam.eval();
}

// ------------------------------------------------------------------------------ forward

/** Normalised, padded encoder input of RGB patches, [B·3·I·I]. */
export function samInput(sam: Sam, patches: { rgb: Uint8Array; size: number }[]): Float32Array {
  const I = sam.imgSize;
  const out = new Float32Array(patches.length * 3 * I * I);
  patches.forEach((p, b) => {
    out.set(preprocess(applyImage(p.rgb, p.size, p.size, I), I), b * 3 * I * I);
  });
  return out;
}

/** Parked buffer bytes above which an encoder pass gives them back to the driver. */
const TRIM_ABOVE_BYTES = 256 * 2 ** 20;

/** Where frozen-encoder embeddings are cached (null: not cached). */
export type EmbeddingCache = string | null;

/** Image embeddings [B,C,h,w] (no gradient), read from / written to the cache when given. */
export async function embedPatches(
  sam: Sam,
  patches: HostPatch[],
  cache: EmbeddingCache,
  split: SplitName | "infer",
): Promise<Tensor> {
  const [eh, ew] = sam.config.prompt_encoder.image_embedding_size;
  const C = sam.config.prompt_encoder.embed_dim, per = C * eh * ew;
  const I = sam.imgSize;
  const host = new Float32Array(patches.length * per);
  const todo: number[] = [];
  for (let b = 0; b < patches.length; b++) {
    const f = cache ? `${cache}/${split}/${patches[b].item.id}.f32` : null;
    if (f && await exists(f)) {
      const bytes = await Deno.readFile(f);
      if (bytes.byteLength !== per * 4) {
        throw new Error(`${f}: cached embedding has the wrong size; delete ${cache}`);
      }
      host.set(new Float32Array(bytes.buffer, bytes.byteOffset, per), b * per);
    } else todo.push(b);
  }
  if (todo.length) {
    const x = samInput(sam, todo.map((b) => patches[b]));
    const emb = tidy(() => noGrad(() => sam.embed(tensor(x, [todo.length, 3, I, I]))));
    const d = await emb.data() as Float32Array;
    emb.dispose();
    // The encoder's buffers (GiBs at ViT-B size, another set per batch size) would otherwise stay
    // parked beside the decoder's: measured on the paper profile, 6.9 GiB held for 1.9 GiB used.
    // Small encoders keep theirs (re-creating buffers and bind groups each batch costs time).
    if (memoryStats().pooledBytes > TRIM_ABOVE_BYTES) trimPool();
    for (let j = 0; j < todo.length; j++) {
      const v = d.subarray(j * per, (j + 1) * per);
      host.set(v, todo[j] * per);
      if (cache) {
        const { writeFileAtomic } = await import("../../engine/io/atomic.ts");
        await Deno.mkdir(`${cache}/${split}`, { recursive: true });
        await writeFileAtomic(
          `${cache}/${split}/${patches[todo[j]].item.id}.f32`,
          new Uint8Array(v.slice().buffer),
        );
      }
    }
  }
  return tensor(host, [patches.length, C, eh, ew]);
}

/** Mask logits at patch size [B,1,S,S] for embeddings and prompts in patch pixels. */
export function decodeLogits(sam: Sam, emb: Tensor, prompts: PointPrompt[], size: number): Tensor {
  const I = sam.imgSize;
  const p = batchPrompts(prompts);
  const coords = applyCoords(p.coords, [size, size], I);
  const { lowRes } = sam.decode(emb, {
    points: { coords, labels: p.labels, n: p.n },
    batch: prompts.length,
  }, false);
  const inHw = [Math.trunc(size * (I / size) + 0.5), Math.trunc(size * (I / size) + 0.5)] as [
    number,
    number,
  ];
  return sam.postprocess(lowRes, inHw, [size, size]);
}

/** Seeded CAM-weighted prompts of one patch (fixed per purpose, round and patch index). */
export function camPrompt(
  cfg: PipelineConfig,
  cam: { mask: Uint8Array; norm: Float32Array },
  size: number,
  purpose: number,
  index: number,
): PointPrompt {
  return camPointsInMask(
    cam.norm,
    cam.mask,
    size,
    size,
    cfg.sam.points,
    new Rng(cfg.seed + purpose, index * 4),
  );
}

/** Segments patches with CAM prompts: logits per patch (host), one readback per batch. */
export async function segmentWithCam(
  sam: Sam,
  cfg: PipelineConfig,
  patches: HostPatch[],
  cams: { mask: Uint8Array; norm: Float32Array }[],
  opts: { cache: EmbeddingCache; split: SplitName | "infer"; purpose: number; firstIndex: number },
): Promise<Float32Array[]> {
  const S = patches[0]?.size ?? cfg.patchSize;
  const emb = await embedPatches(sam, patches, opts.cache, opts.split);
  const prompts = cams.map((c, i) => camPrompt(cfg, c, S, opts.purpose, opts.firstIndex + i));
  const logits = tidy(() => noGrad(() => decodeLogits(sam, emb, prompts, S)));
  emb.dispose();
  const d = await logits.data() as Float32Array;
  logits.dispose();
  return patches.map((_, i) => d.slice(i * S * S, (i + 1) * S * S));
}

// ------------------------------------------------------------------------------ augmentation

/** The reference's OneOf(hflip, vflip, rot90, ...) with p = 0.5, on host images and masks. */
function augmentPair(
  rgb: Uint8Array,
  mask: Uint8Array,
  size: number,
  u: Float32Array,
): { rgb: Uint8Array; mask: Uint8Array } {
  if (u[0] >= 0.5) return { rgb, mask };
  const op = Math.min(2, Math.floor(u[1] * 3));
  if (op === 2) {
    const k = 1 + Math.min(2, Math.floor(u[2] * 3));
    return {
      rgb: rotateImage(rgb, size, size, 3, k).data,
      mask: rotateImage(mask, size, size, 1, k).data,
    };
  }
  const flip = (src: Uint8Array, c: number) => {
    const out = new Uint8Array(src.length);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const [sy, sx] = op === 0 ? [y, size - 1 - x] : [size - 1 - y, x];
        for (let k = 0; k < c; k++) out[(y * size + x) * c + k] = src[(sy * size + sx) * c + k];
      }
    }
    return out;
  };
  return { rgb: flip(rgb, 3), mask: flip(mask, 1) };
}

// ------------------------------------------------------------------------------ training

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
  if (spec.init) await loadTrainState(run.path(spec.init), sam, null);
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
    const meta = await loadTrainState(last, sam, opt);
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

// ------------------------------------------------------------------------------ pseudo-labels

export interface PseudoStats {
  iter: number;
  kept: number;
  total: number;
  /** Of the kept pseudo-labels against the ground truth (evaluation only; NaN if none kept). */
  dice: number;
  iou: number;
  pooledDice: number;
  pooledIoU: number;
  valKept: number;
}

export const pseudoDir = (iter: number, split: SplitName) => `pseudo/iter_${iter}/${split}`;

/** Shard pass name of the pseudo-labels of round `iter`. */
export const pseudoPass = (iter: number) => `pseudo_${iter}`;

/** One patch's pseudo-label decision, journalled so an interrupted iteration resumes per batch. */
interface PseudoDecision {
  split: SplitName;
  id: string;
  ids: number;
  kept: boolean;
  /** Counts against the ground truth of a kept training patch (evaluation only). */
  counts?: SegCounts;
}

/**
 * Writes `pseudo/iter_<iter>/{train,val}` from the stage's selected SAM. Resumable per batch: each
 * batch's decisions are appended to `progress.jsonl` after its masks are written, and batches
 * found there are replayed instead of recomputed (prompts are seeded by patch index, so a
 * recomputed batch is identical).
 */
export async function generatePseudo(
  ctx: StageContext,
  weights: string,
  iter: number,
  sharded?: ShardRun,
): Promise<PseudoStats | null> {
  const { cfg, run } = ctx;
  const done = run.path(`pseudo/iter_${iter}/stats.json`);
  if (!sharded && await exists(done)) return JSON.parse(await Deno.readTextFile(done));
  await Deno.mkdir(run.path(`pseudo/iter_${iter}`), { recursive: true });
  const pass = pseudoPass(iter);
  // A shard journals in a file of its own; the merge writes the whole pass's journal from the
  // shards' records, in pass order, and the loop below then replays every batch.
  const journal = run.path(
    `pseudo/iter_${iter}/progress${
      sharded ? `.${manifestName(sharded.shard).replace(/\.json$/, "")}` : ""
    }.jsonl`,
  );
  if (!sharded && await isSharded(run.dir, pass)) {
    const ids = (["train", "val"] as const).flatMap((s) =>
      positives(ctx.splits[s]).map((it) => `${s}/${it.id}`)
    );
    const merged = await mergeShards(run.dir, pass, ids);
    const lines = ids.map((id) => JSON.stringify(merged.get(id)!.record) + "\n").join("");
    await writeFileAtomic(journal, lines);
  }
  const decided = new Map<string, PseudoDecision>();
  if (await exists(journal)) {
    dropTornLine(journal);
    for (const r of parseMetrics(await Deno.readTextFile(journal), journal)) {
      const d = r as unknown as PseudoDecision;
      decided.set(`${d.split}/${d.id}`, d);
    }
    ctx.log(`pseudo-labels iter_${iter}: resuming, ${decided.size} patches already decided`);
  }
  let sam: Sam | null = null;
  const S = cfg.patchSize, B = cfg.sam.batchSize;
  const cache: EmbeddingCache = cfg.sam.trainEncoder ? null : run.path("embeddings");
  const metrics = new SegMetrics();
  let kept = 0, total = 0, valKept = 0;
  const tally = (d: PseudoDecision) => {
    if (d.split === "train") total++;
    if (!d.kept) return;
    if (d.split === "val") valKept++;
    else {
      kept++;
      if (d.counts) metrics.addCounts(d.counts);
    }
  };
  let batchIndex = 0;
  for (const split of ["train", "val"] as const) {
    const items = positives(ctx.splits[split]);
    const dir = run.path(pseudoDir(iter, split));
    await Deno.mkdir(dir, { recursive: true });
    const prog = new Progress(`pseudo-labels iter_${iter} (${split})`, items.length, {
      unit: "patch",
      enabled: !ctx.quiet,
    });
    const record = async (d: PseudoDecision) => {
      const f = d.kept ? [relativeTo(run.dir, `${dir}/${d.id}_1.png`)] : [];
      await sharded?.recorder.add(`${d.split}/${d.id}`, f, d);
    };
    for (let i = 0; i < items.length; i += B) {
      const chunk = items.slice(i, i + B);
      if (!ownsBatch(sharded?.shard, batchIndex++)) {
        prog.tick(chunk.length);
        continue;
      }
      const known = chunk.map((it) => decided.get(`${split}/${it.id}`));
      if (known.every((d) => d)) {
        known.forEach((d) => tally(d!));
        for (const d of known) await record(d!);
        prog.tick(chunk.length);
        continue;
      }
      sam ??= await loadStageSam(cfg, run.path(weights));
      const patches = await loadPatches(chunk, S);
      const cams = await Promise.all(chunk.map((it) => readCam(run, split, it, S)));
      const logits = await segmentWithCam(sam, cfg, patches, cams, {
        cache,
        split,
        purpose: 200 + iter,
        firstIndex: i,
      });
      const batch: PseudoDecision[] = [];
      for (let j = 0; j < chunk.length; j++) {
        const mask = Uint8Array.from(logits[j], (v) => (v > 0 ? 1 : 0));
        const ids = idsScore(cams[j].mask, mask);
        const d: PseudoDecision = { split, id: chunk[j].id, ids, kept: ids >= cfg.idsThreshold };
        if (d.kept) {
          await writeMask(`${dir}/${chunk[j].id}_1.png`, mask, S);
          if (split === "train" && patches[j].gt) d.counts = segCounts(mask, patches[j].gt!);
        }
        batch.push(d);
        tally(d);
      }
      for (const d of batch) await record(d);
      await Deno.writeTextFile(journal, batch.map((d) => JSON.stringify(d) + "\n").join(""), {
        append: true,
      });
      prog.tick(chunk.length);
    }
    prog.finish();
  }
  sam?.dispose();
  if (sharded) {
    const path = await sharded.recorder.finish();
    ctx.log(
      `pseudo-labels iter_${iter}: shard ${
        shardLabel(sharded.shard)
      }: ${sharded.recorder.size} patches; ${path}`,
    );
    return null;
  }
  const sm = metrics.summary();
  const stats: PseudoStats = {
    iter,
    kept,
    total,
    dice: sm.dice,
    iou: sm.iou,
    pooledDice: kept ? sm.pooledDice : NaN,
    pooledIoU: kept ? sm.pooledIoU : NaN,
    valKept,
  };
  await writeFileAtomic(done, JSON.stringify(stats, null, 2) + "\n");
  await run.appendMetrics({ stage: "pseudo", ...stats } as never);
  ctx.log(
    `pseudo-labels iter_${iter}: kept ${kept}/${total} train patches (IDS >= ${cfg.idsThreshold}), ` +
      `${valKept} val; vs ground truth (evaluation only) Dice ${fmt(sm.dice)}, IoU ${fmt(sm.iou)}`,
  );
  return stats;
}

export const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(4) : "n/a");

/** Training targets from a folder of `<id>_1.png` masks (only patches that have one). */
export async function targetsFrom(items: PatchItem[], dir: string): Promise<SamTarget[]> {
  const out: SamTarget[] = [];
  for (const it of items) {
    const p = `${dir}/${it.id}_1.png`;
    if (await exists(p)) out.push({ item: it, target: p });
  }
  return out;
}

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
