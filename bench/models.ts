/**
 * Model-level benchmarks ("speed to reach"): ResNet-50-ADL training step (forward, BCE, backward,
 * Adam step) and forward-only throughput, SAM ViT-B image encoder forward at 1024×1024, one
 * windowed and one global-attention encoder block, and EP-SAM's decoder-only training step
 * (50 positive points, embeddings cached). Wall clock around `sync()` (not `timeGpu`: these are
 * thousands of dispatches); median of `runs` after one warm-up run that compiles the pipelines.
 * Each row carries images/s (where meaningful), peak GPU memory (`memoryStats().peakBytes` after
 * `pool.resetPeak()`), the largest single buffer allocated, and, with `peers`, the peers of the
 * same work run right after it (PyTorch CPU, and ONNX Runtime Web/CPU where the case has an ONNX
 * export; bench/peers/) with the ratios.
 *
 * GFLOP/s counts the matmul/conv multiply-adds only (×2), training = 3× forward.
 *
 * Run alone: `deno run -A bench/models.ts --help` for the flags.
 * Through the runner: `benchModels({ filter, peers, runs })`.
 */
import {
  F,
  gpu,
  initGpu,
  memoryStats,
  noGrad,
  pool,
  sync,
  type Tensor,
  tensor,
  tidy,
} from "../engine/mod.ts";
import { Adam } from "../engine/optim/adam.ts";
import { TrainStep } from "./train_step.ts";
import { RESNET50_ADL, ResNetAdl } from "../model/resnet_adl.ts";
import { Sam } from "../model/sam/sam.ts";
import { SAM_CONFIGS } from "../model/sam/configs.ts";
import { attentionImpl } from "../model/sam/attention.ts";
import { SamPredictor } from "../model/sam/predictor.ts";
import { type BenchRow, loadavg } from "./registry.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";
import { writeFileAtomic } from "../engine/io/atomic.ts";
import { reportRefused, withinCeiling } from "./ceiling.ts";
import { runTorchPeer } from "./peers/torch.ts";
import { describeTorch, torchInfo } from "./peers/launcher.ts";
import { describePeers, onnxPeers, type Peers } from "./peers/onnx_peers.ts";

export interface ModelBenchOptions {
  filter?: string;
  peers?: boolean;
  runs?: number;
  /** ResNet training/forward batch at 512² (default 16, or MODELS_BATCH). */
  batch?: number;
  /**
   * One untimed run first (compiles pipelines; default true). false: the first run is timed;
   * "small": warm-up only for the small cases (the big ones follow them in the same process).
   */
  warmup?: boolean | "small";
}

const MB = 2 ** 20;

/** The largest single buffer requested from the pool while `fn` runs. */
let maxAlloc = 0;
function trackAllocs(): void {
  const p = pool as unknown as {
    acquire: (b: number, l?: string) => GPUBuffer;
    __wrapped?: boolean;
  };
  if (p.__wrapped) return;
  const orig = p.acquire.bind(pool);
  p.acquire = (bytes: number, label?: string) => {
    if (bytes > maxAlloc) maxAlloc = bytes;
    return orig(bytes, label);
  };
  p.__wrapped = true;
}

/** n uniform values in [lo, hi) from a fixed LCG (the benches' inputs, the same on every run). */
export function randomData(n: number, seed: number, lo = 0, hi = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = lo + (s / 4294967296) * (hi - lo);
  }
  return a;
}

/** "name finite" or a description of the non-finite values (tensor read back). */
async function finiteNote(what: string, t: Tensor | null): Promise<string> {
  if (!t) return `${what}: none`;
  const d = await t.data() as Float32Array;
  let bad = 0, maxAbs = 0;
  for (const v of d) {
    if (!Number.isFinite(v)) bad++;
    else if (Math.abs(v) > maxAbs) maxAbs = Math.abs(v);
  }
  return bad
    ? `${what} [${t.shape}]: ${bad} NON-FINITE of ${d.length}`
    : `${what} [${t.shape}] finite (max |v| ${maxAbs.toPrecision(3)})`;
}

interface Measured {
  ms: number;
  all: number[];
  peakMB: number;
  /** Peak of what the device held in buffers (tensors + the pool's parked buffers). */
  heldMB: number;
  maxAllocMB: number;
}

/**
 * Warm-up once, then `runs` timed runs of `step` (wall clock, `sync()` before and after).
 * Peak memory and the largest allocation cover the timed runs.
 */
async function measure(
  step: () => void | Promise<void>,
  runs: number,
  warmup: boolean,
): Promise<Measured> {
  if (warmup) {
    await step();
    await sync();
  }
  pool.resetPeak();
  maxAlloc = 0;
  const all: number[] = [];
  for (let i = 0; i < runs; i++) {
    await sync();
    const t0 = performance.now();
    await step();
    await sync();
    all.push(performance.now() - t0);
  }
  const s = all.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return {
    ms: s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2,
    all,
    peakMB: memoryStats().peakBytes / MB,
    heldMB: memoryStats().peakAllocatedBytes / MB,
    maxAllocMB: maxAlloc / MB,
  };
}

// ---------------------------------------------------------------------------------------------
// FLOP counts (multiply-adds × 2 of convs / matmuls)

/** ResNet-50-ADL forward FLOPs per image at size S (convs + fc). */
function resnetForwardFlops(S: number, cfg = RESNET50_ADL): number {
  const conv = (h: number, cin: number, cout: number, k: number) => 2 * h * h * cin * cout * k * k;
  const w = cfg.width;
  let f = conv(S / 2, cfg.highFreq ? 4 : 3, w, 7);
  let h = S / 4, inp = w;
  const strides = [1, 2, 2, 1];
  for (let s = 0; s < 4; s++) {
    const p = w * 2 ** s;
    for (let b = 0; b < cfg.layers[s]; b++) {
      const st = b === 0 ? strides[s] : 1;
      const ho = h / st;
      f += conv(h, inp, p, 1) + conv(ho, p, p, 3) + conv(ho, p, 4 * p, 1);
      if (b === 0 && (st !== 1 || inp !== 4 * p)) f += conv(ho, inp, 4 * p, 1);
      inp = 4 * p;
      h = ho;
    }
  }
  return f + 2 * inp;
}

/** One SAM encoder block's FLOPs on a g×g grid (window ws, 0 = global), embed d. */
function samBlockFlops(g: number, d: number, ws: number): number {
  const n = ws > 0 ? Math.ceil(g / ws) ** 2 * ws * ws : g * g;
  const t = ws > 0 ? ws * ws : g * g;
  const lin = 2 * n * d * (3 * d + d + 8 * d);
  const attn = 4 * n * t * d;
  const rel = 2 * n * d / 12 * 2 * (ws > 0 ? ws : g) * 12; // q·Rh and q·Rw per head
  return lin + attn + rel;
}

function samEncoderFlops(cfg = SAM_CONFIGS.vit_b.encoder): number {
  const g = cfg.img_size / cfg.patch_size, d = cfg.embed_dim, oc = cfg.out_chans;
  let f = 2 * g * g * d * 3 * cfg.patch_size ** 2;
  for (let i = 0; i < cfg.depth; i++) {
    f += samBlockFlops(g, d, cfg.global_attn_indexes.includes(i) ? 0 : cfg.window_size);
  }
  return f + 2 * g * g * d * oc + 2 * g * g * oc * oc * 9;
}

// ---------------------------------------------------------------------------------------------
// PyTorch peer

// ---------------------------------------------------------------------------------------------
// Cases

interface Case {
  name: string;
  shape: number[];
  /** Images per run (for images/s), 0 = not meaningful. */
  images: number;
  flops: number | null;
  /** Slow at this size: skipped warm-up under `warmup: "small"`. */
  big?: boolean;
  /** Runs only when the filter names it (not in a full run). */
  explicit?: boolean;
  /** Extra note (e.g. which attention path ran). */
  note?: () => string;
  /** Case id for the torch peer (null: no peer). */
  peer: string | null;
  /**
   * ONNX export case (bench/peers/onnx_peers.ts): PyTorch's time of the exported module replaces
   * `peer`'s, and the ONNX Runtime peers run on it.
   */
  onnx?: string;
  /** Prepares the model and returns the step to time plus a cleanup. */
  setup: () => Promise<
    { step: () => void | Promise<void>; done: () => void; verify?: () => Promise<string> }
  >;
}

/** What a case's `setup` resolves to. */
type CaseRun = Awaited<ReturnType<Case["setup"]>>;

/**
 * A case that computes a tensor per step (inside `tidy`), keeping only the last one: `verify`
 * checks it is finite; `done` disposes it, then `owned` in order.
 */
function lastResultRun(
  what: string,
  compute: () => Tensor,
  owned: { dispose(): void }[],
): CaseRun {
  let last: Tensor | null = null;
  return {
    step: () => {
      last?.dispose();
      last = tidy(compute);
    },
    verify: () => finiteNote(what, last),
    done: () => {
      last?.dispose();
      for (const o of owned) o.dispose();
    },
  };
}

/**
 * A training-step case ({@link TrainStep}): the loss (inside `tidy`), its backward and one
 * optimiser step; the last loss is kept for `verify`; `done` disposes it, the optimiser, then
 * `owned` in order.
 */
function trainRun(lossOf: () => Tensor, opt: Adam, owned: { dispose(): void }[]): CaseRun {
  const train = new TrainStep(lossOf, opt);
  return {
    step: () => train.step(),
    verify: () => finiteNote("loss", train.lastLoss),
    done: () => {
      train.dispose();
      opt.dispose();
      for (const o of owned) o.dispose();
    },
  };
}

function resnetTrainCase(b: number, s: number, checkpointed = false): Case {
  return {
    name: `resnet50-train-step b${b} @${s}${checkpointed ? " checkpointed" : ""}`,
    shape: [b, 3, s, s],
    images: b,
    flops: 3 * b * resnetForwardFlops(s),
    peer: checkpointed ? null : `resnet_train:${b}:${s}`,
    explicit: checkpointed,
    big: s >= 512,
    setup: () => {
      // The paper profile's classifier step checkpoints every bottleneck (classifier.checkpoint).
      const m = new ResNetAdl(RESNET50_ADL).train().setCheckpointing(checkpointed);
      const opt = new Adam(m.parameters(), { lr: 1e-4, weightDecay: 1e-4 });
      const x = tensor(randomData(b * 3 * s * s, 1), [b, 3, s, s]);
      const y = tensor(Float32Array.from({ length: b }, (_, i) => i % 2), [b]);
      return Promise.resolve(
        trainRun(
          () => {
            const logits = F.reshape(m.forward(x), [b]);
            return F.bceWithLogits(logits, y);
          },
          opt,
          [x, y, m],
        ),
      );
    },
  };
}

function resnetForwardCase(b: number, s: number): Case {
  return {
    name: `resnet50-forward b${b} @${s}`,
    shape: [b, 3, s, s],
    images: b,
    flops: b * resnetForwardFlops(s),
    peer: `resnet_fwd:${b}:${s}`,
    onnx: s === 256 ? `onnx:resnet_fwd:${b}:${s}` : undefined,
    big: s >= 512,
    setup: () => {
      const m = new ResNetAdl(RESNET50_ADL).eval();
      const x = tensor(randomData(b * 3 * s * s, 1), [b, 3, s, s]);
      return Promise.resolve(lastResultRun("logits", () => noGrad(() => m.forward(x)), [x, m]));
    },
  };
}

function samEncoderCase(): Case {
  const cfg = SAM_CONFIGS.vit_b;
  const S = cfg.encoder.img_size;
  return {
    name: `sam-encoder vit_b fwd @${S}`,
    shape: [1, 3, S, S],
    images: 1,
    flops: samEncoderFlops(cfg.encoder),
    peer: "sam_encoder",
    onnx: "onnx:sam_encoder",
    note: () => `attention ${attentionImpl()}`,
    big: true,
    setup: () => {
      const sam = new Sam(cfg, 0);
      sam.eval();
      const x = tensor(randomData(3 * S * S, 3, -2, 2), [1, 3, S, S]);
      return Promise.resolve(
        lastResultRun("embeddings", () => noGrad(() => sam.embed(x)), [x, sam]),
      );
    },
  };
}

function samBlockCase(kind: "window" | "global"): Case {
  const cfg = SAM_CONFIGS.vit_b;
  const g = cfg.encoder.img_size / cfg.encoder.patch_size, d = cfg.encoder.embed_dim;
  const idx = kind === "global" ? cfg.encoder.global_attn_indexes[0] : 0;
  return {
    name: `sam-block ${kind} vit_b fwd ${g}x${g}x${d}`,
    shape: [1, g, g, d],
    images: 0,
    flops: samBlockFlops(g, d, kind === "global" ? 0 : cfg.encoder.window_size),
    peer: `sam_block_${kind}`,
    note: () => `attention ${attentionImpl()}`,
    setup: () => {
      const sam = new Sam(cfg, 0);
      sam.eval();
      const block = sam.imageEncoder.blocks[idx];
      const x = tensor(randomData(g * g * d, 5, -1, 1), [1, g, g, d]);
      return Promise.resolve(
        lastResultRun("block output", () => noGrad(() => block.forward(x)), [x, sam]),
      );
    },
  };
}

/** EP-SAM decoder-only step: 50 positive points on one 512² patch (resized to 1024), dice + IoU loss. */
function samDecoderCase(nPoints = 50): Case {
  const cfg = SAM_CONFIGS.vit_b;
  const [eh, ew] = cfg.prompt_encoder.image_embedding_size;
  const c = cfg.prompt_encoder.embed_dim;
  const orig = 512;
  return {
    name: `sam-decoder vit_b fwd+bwd ${nPoints} points`,
    shape: [1, c, eh, ew, nPoints],
    images: 1,
    flops: null,
    peer: `sam_decoder:${nPoints}`,
    setup: () => {
      const sam = new Sam(cfg, 0);
      sam.train();
      sam.imageEncoder.requiresGrad(false);
      sam.promptEncoder.requiresGrad(false);
      const emb = tensor(randomData(c * eh * ew, 7, -1, 1), [1, c, eh, ew]);
      const coords = randomData(nPoints * 2, 9, 0, sam.imgSize - 1);
      const labels = new Float32Array(nPoints).fill(1);
      const tgt = new Float32Array(orig * orig);
      for (let y = 0; y < orig; y++) {
        for (let x = 0; x < orig; x++) {
          tgt[y * orig + x] = (x - 256) ** 2 + (y - 256) ** 2 < 150 ** 2 ? 1 : 0;
        }
      }
      const target = tensor(tgt, [1, orig, orig]);
      const opt = new Adam(sam.maskDecoder.parameters(), { lr: 1e-5 });
      return Promise.resolve(
        trainRun(
          () => {
            const r = sam.decode(emb, { points: { coords, labels, n: nPoints } }, false);
            const probs = F.sigmoid(
              F.reshape(sam.postprocess(r.lowRes, [sam.imgSize, sam.imgSize], [orig, orig]), [
                1,
                orig,
                orig,
              ]),
            );
            return F.add(F.diceLoss(probs, target), F.iouLoss(probs, target));
          },
          opt,
          [emb, target, sam],
        ),
      );
    },
  };
}

/**
 * The ViT-B mask decoder's forward alone on a cached embedding (50 positive points, no gradient):
 * what click-to-segment and the pseudo-label pass pay per prompt set once the image is embedded.
 */
function samDecoderForwardCase(nPoints = 50): Case {
  const cfg = SAM_CONFIGS.vit_b;
  const [eh, ew] = cfg.prompt_encoder.image_embedding_size;
  const c = cfg.prompt_encoder.embed_dim;
  return {
    name: `sam-decoder vit_b fwd ${nPoints} points (cached embedding)`,
    shape: [1, c, eh, ew, nPoints],
    images: 1,
    flops: null,
    peer: null,
    setup: () => {
      const sam = new Sam(cfg, 0);
      sam.eval();
      const emb = tensor(randomData(c * eh * ew, 7, -1, 1), [1, c, eh, ew]);
      const coords = randomData(nPoints * 2, 9, 0, sam.imgSize - 1);
      const labels = new Float32Array(nPoints).fill(1);
      let last: Tensor | null = null;
      return Promise.resolve({
        step: () => {
          last?.dispose();
          last = tidy(() =>
            noGrad(() => sam.decode(emb, { points: { coords, labels, n: nPoints } }, false).lowRes)
          );
        },
        verify: () => finiteNote("low-res logits", last),
        done: () => {
          last?.dispose();
          emb.dispose();
          sam.dispose();
        },
      });
    },
  };
}

/**
 * One EP-SAM pseudo-label at ViT-B size: a 512² RGB patch through ResizeLongestSide, the encoder,
 * 50 CAM-sampled points through the decoder, post-processing to 512², and the mask read back.
 */
function samPseudoLabelCase(nPoints = 50): Case {
  const cfg = SAM_CONFIGS.vit_b;
  const orig = 512;
  return {
    name: `sam-pseudo-label vit_b (encoder + ${nPoints} points) @${orig}`,
    shape: [1, 3, orig, orig],
    images: 1,
    flops: samEncoderFlops(cfg.encoder),
    peer: null,
    note: () => `attention ${attentionImpl()}`,
    big: true,
    setup: () => {
      const sam = new Sam(cfg, 0);
      sam.eval();
      const predictor = new SamPredictor(sam);
      const img = Uint8Array.from(randomData(orig * orig * 3, 11, 0, 255), Math.floor);
      const pointCoords = randomData(nPoints * 2, 13, 0, orig - 1);
      const pointLabels = new Float32Array(nPoints).fill(1);
      let kept = 0;
      return Promise.resolve({
        step: async () => {
          predictor.setImage(img, orig, orig);
          const r = predictor.predict({ pointCoords, pointLabels, multimask: false });
          const logits = await r.masksLogits.data() as Float32Array;
          kept = 0;
          for (const v of logits) if (v > 0) kept++;
          r.masksLogits.dispose();
          r.lowResLogits.dispose();
          r.iou.dispose();
        },
        verify: () => Promise.resolve(`mask ${kept} px`),
        done: () => {
          predictor.dispose();
          sam.dispose();
        },
      });
    },
  };
}

export function modelCases(batch = 16): Case[] {
  return [
    resnetTrainCase(2, 256),
    resnetForwardCase(2, 256),
    resnetTrainCase(batch, 512),
    resnetForwardCase(batch, 512),
    resnetTrainCase(batch, 512, true),
    samBlockCase("window"),
    samBlockCase("global"),
    samDecoderCase(50),
    samDecoderForwardCase(50),
    samEncoderCase(),
    samPseudoLabelCase(50),
  ];
}

/**
 * The peers of one case, run right after ours so that both meet the same load: PyTorch CPU (the
 * exported module where the case has an ONNX export, then ONNX Runtime Web and CPU on it too).
 */
async function casePeers(c: Case, runs: number): Promise<Peers> {
  const info = await torchInfo();
  // The encoder's peers take minutes a run: one timed run after the checked one.
  if (c.onnx) return (await onnxPeers([c.onnx], c.big ? 1 : runs)).get(c.onnx)!;
  const runtime = info ? describeTorch(info) : "-";
  if (!info) {
    return {
      "pytorch-cpu": {
        ms: null,
        ok: false,
        error: "/usr/bin/python3 cannot import torch",
        runtime,
      },
    };
  }
  if (info.refused) return { "pytorch-cpu": { ms: null, ok: false, error: info.refused, runtime } };
  const p = (await runTorchPeer([c.peer!], runs)).get(c.peer!);
  return {
    "pytorch-cpu": p && !p.error && p.ms > 0
      ? { ms: p.ms, ok: true, runtime }
      : { ms: null, ok: false, error: p?.error ?? "no result", runtime },
  };
}

/** Runs the model cases whose names contain `filter`. */
export async function benchModels(opts: ModelBenchOptions = {}): Promise<BenchRow[]> {
  await initGpu();
  trackAllocs();
  const adapter = gpu().adapterName;
  const runs = opts.runs ?? 3;
  const batch = opts.batch ?? Number(Deno.env.get("MODELS_BATCH") ?? 16);
  const alts = (opts.filter ?? "").split("|").filter(Boolean);
  const cases = modelCases(batch).filter((c) =>
    c.explicit
      ? alts.some((a) => c.name.includes(a) && a.includes("checkpointed"))
      : !alts.length || alts.some((a) => c.name.includes(a))
  );
  const rows: BenchRow[] = [];
  for (const c of cases) {
    console.error(`[models] ${c.name} ...`);
    let r: Measured;
    let check = "";
    const live0 = memoryStats().liveBytes / MB;
    try {
      const s = await c.setup();
      try {
        // Big cases after smaller ones of the same model reuse their compiled pipelines.
        const warm = opts.warmup ?? true;
        // Big cases take minutes a run on a CPU adapter: at most 2 timed runs.
        r = await measure(
          s.step,
          c.big ? Math.min(runs, 2) : runs,
          warm === "small" ? !c.big : warm,
        );
        check = s.verify ? await s.verify() : "";
      } finally {
        s.done();
        await sync().catch(() => {});
        pool.trim();
      }
    } catch (e) {
      console.error(`[models] ${c.name} failed: ${(e as Error).message}`);
      rows.push({
        name: `${c.name} (FAILED)`,
        shape: c.shape,
        ms: NaN,
        gflops: null,
        gbps: null,
        adapter,
        notes: (e as Error).message.slice(0, 300),
      });
      continue;
    }
    const ips = c.images ? ` ${(c.images * 1000 / r.ms).toFixed(3)} img/s` : "";
    const row: BenchRow = {
      name: c.name,
      shape: c.shape,
      ms: r.ms,
      gflops: c.flops ? c.flops / r.ms / 1e6 : null,
      gbps: null,
      adapter,
      load: loadavg(),
      notes: `wall clock;${ips} peak ${r.peakMB.toFixed(0)} MB in tensors, ${
        r.heldMB.toFixed(0)
      } MB held; runs ${r.all.map((v) => v.toFixed(0)).join("/")} ms${
        opts.warmup === false || (opts.warmup === "small" && c.big) ? " (no warm-up)" : ""
      }; live before ${live0.toFixed(0)} MB; largest buffer ${
        r.maxAllocMB.toFixed(1)
      } MB; ${check}${c.note ? `; ${c.note()}` : ""}`,
    };
    console.error(`[models]   ${row.name}: ${r.ms.toFixed(0)} ms (${row.notes})`);
    rows.push(row);
    if (opts.peers && (c.peer || c.onnx)) {
      row.peers = await casePeers(c, Math.max(1, Math.min(runs, 3)));
      row.notes = `${row.notes}; peers: ${
        describePeers(row.peers, row.ms)
      }; load after the peers ${loadavg()}`;
      console.error(`[models] ${c.name} peers: ${describePeers(row.peers, row.ms)}`);
    }
  }
  return rows;
}

const USAGE = `usage: deno run -A bench/models.ts [FILTER] [--runs N] [--batch B] [--peers]
       [--no-warmup | --quick] [--json FILE]
  FILTER       run the cases whose names contain it ("a|b": either); all when absent
  --runs N     timed runs per case, median reported (default 3)
  --batch B    ResNet batch at 512² (default 16 or $MODELS_BATCH)
  --peers      PyTorch CPU, ONNX Runtime Web (WebGPU) and ONNX Runtime CPU on the same work
  --no-warmup  time the first run too
  --quick      no warm-up for the 512²/1024² cases (they reuse the smaller cases' pipelines)
  --json FILE  also write the rows as JSON`;

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/models.ts",
        usage: USAGE,
        positionals: true,
        options: {
          runs: { type: "string" },
          batch: { type: "string" },
          peers: { type: "boolean" },
          "no-warmup": { type: "boolean" },
          quick: { type: "boolean" },
          json: { type: "string" },
        },
      },
      Deno.args,
      async (flags, positionals) => {
        if (positionals.length > 1) throw new UsageError(`one FILTER at most, got ${positionals}`);
        const { rows, refused } = await withinCeiling(
          await benchModels({
            filter: positionals[0],
            peers: !!flags.peers,
            runs: numberFlag(flags, "runs", { def: 3, min: 1, integer: true }),
            batch: numberFlag(flags, "batch", { min: 1, integer: true }),
            warmup: flags["no-warmup"] ? false : flags.quick ? "small" : true,
          }),
        );
        for (const r of rows) {
          console.log(
            `${r.name.padEnd(56)} ${r.ms.toFixed(0).padStart(9)} ms ${
              r.gflops === null ? "        -" : r.gflops.toFixed(2).padStart(9)
            } GFLOP/s  ${r.notes ?? ""}`,
          );
        }
        console.log(`adapter: ${rows[0]?.adapter}`);
        const json = stringFlag(flags, "json");
        if (json) await writeFileAtomic(json, JSON.stringify(rows, null, 2) + "\n");
        return reportRefused(refused);
      },
    ),
  );
}
