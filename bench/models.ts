/**
 * Model-level benchmarks ("speed to reach"): ResNet-50-ADL training step (forward, BCE, backward,
 * Adam step) and forward-only throughput, SAM ViT-B image encoder forward at 1024×1024, one
 * windowed and one global-attention encoder block, and EP-SAM's decoder-only training step
 * (50 positive points, embeddings cached). Wall clock around `sync()` (not `timeGpu`: these are
 * thousands of dispatches); median of `runs` after one warm-up run that compiles the pipelines.
 * Each row carries images/s (where meaningful), peak GPU memory (`memoryStats().peakBytes` after
 * `pool.resetPeak()`), the largest single buffer allocated, and, with `peers`, the PyTorch CPU time
 * of the same work (bench/peers/torch_models.py, 2 threads) and the ratio.
 *
 * GFLOP/s counts the matmul/conv multiply-adds only (×2), training = 3× forward.
 *
 * Run alone: `deno run -A bench/models.ts [filter|alt] [--runs N] [--peers] [--batch B]
 * [--no-warmup | --quick]` (--quick: no warm-up run for the 512²/1024² cases, which then reuse the
 * pipelines the smaller cases compiled).
 * Through the runner: `benchModels({ filter, peers, runs })`.
 */
import {
  backward,
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
import { RESNET50_ADL, ResNetAdl } from "../model/resnet_adl.ts";
import { Sam } from "../model/sam/sam.ts";
import { SAM_CONFIGS } from "../model/sam/configs.ts";
import { attentionImpl } from "../model/sam/attention.ts";
import { SamPredictor } from "../model/sam/predictor.ts";
import type { BenchRow } from "./registry.ts";

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

function randomData(n: number, seed: number, lo = 0, hi = 1): Float32Array {
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
    maxAllocMB: maxAlloc / MB,
  };
}

// ---------------------------------------------------------------------------------------------
// FLOP counts (multiply-adds × 2 of convs / matmuls)

/** ResNet-50-ADL forward FLOPs per image at size S (convs + fc). */
export function resnetForwardFlops(S: number, cfg = RESNET50_ADL): number {
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
export function samBlockFlops(g: number, d: number, ws: number): number {
  const n = ws > 0 ? Math.ceil(g / ws) ** 2 * ws * ws : g * g;
  const t = ws > 0 ? ws * ws : g * g;
  const lin = 2 * n * d * (3 * d + d + 8 * d);
  const attn = 4 * n * t * d;
  const rel = 2 * n * d / 12 * 2 * (ws > 0 ? ws : g) * 12; // q·Rh and q·Rw per head
  return lin + attn + rel;
}

export function samEncoderFlops(cfg = SAM_CONFIGS.vit_b.encoder): number {
  const g = cfg.img_size / cfg.patch_size, d = cfg.embed_dim, oc = cfg.out_chans;
  let f = 2 * g * g * d * 3 * cfg.patch_size ** 2;
  for (let i = 0; i < cfg.depth; i++) {
    f += samBlockFlops(g, d, cfg.global_attn_indexes.includes(i) ? 0 : cfg.window_size);
  }
  return f + 2 * g * g * d * oc + 2 * g * g * oc * oc * 9;
}

// ---------------------------------------------------------------------------------------------
// PyTorch peer

interface PeerRow {
  case: string;
  ms: number;
  all?: number[];
  error?: string;
}

/**
 * Runs bench/peers/torch_models.py with Debian's python3 (2 threads, OMP_WAIT_POLICY=PASSIVE,
 * OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed). The SAM cases need EP-SAM's
 * code/segment_anything/modeling copied to $EPSAM_CODE/segment_anything_modeling (default
 * /tmp/epsam_code); the script says so when it is missing.
 */
export async function runTorchPeer(cases: string[], runs: number): Promise<Map<string, PeerRow>> {
  const out = new Map<string, PeerRow>();
  if (!cases.length) return out;
  const env = Deno.env.toObject();
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  env.OMP_NUM_THREADS = "2";
  // On a shared 2-core machine OpenMP's default spin-waiting collapses 2-thread runs (measured
  // 78 ms with 1 thread vs 2000+ ms with 2 on ResNet 1×64² under load); passive waits fix that.
  env.OMP_WAIT_POLICY ??= "PASSIVE";
  const script = new URL("./peers/torch_models.py", import.meta.url).pathname;
  const epsam = Deno.env.get("EPSAM_CODE") ?? "/tmp/epsam_code";
  try {
    const p = new Deno.Command("/usr/bin/python3", {
      args: [script, "--threads", "2", "--runs", String(runs), "--sam-code", epsam, ...cases],
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "inherit",
    });
    const r = await p.output();
    const text = new TextDecoder().decode(r.stdout);
    const json = JSON.parse(text.trim().split("\n").pop() ?? "{}") as {
      rows?: PeerRow[];
      torch?: string;
    };
    for (const row of json.rows ?? []) out.set(row.case, { ...row });
    if (json.torch) console.error(`torch peer: torch ${json.torch}, 2 threads`);
  } catch (e) {
    console.error(`torch peer did not run: ${(e as Error).message}`);
  }
  return out;
}

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
  /** Extra note (e.g. which attention path ran). */
  note?: () => string;
  /** Case id for the torch peer (null: no peer). */
  peer: string | null;
  /** Prepares the model and returns the step to time plus a cleanup. */
  setup: () => Promise<
    { step: () => void | Promise<void>; done: () => void; verify?: () => Promise<string> }
  >;
}

function resnetTrainCase(b: number, s: number): Case {
  return {
    name: `resnet50-adl train-step b${b} @${s}`,
    shape: [b, 3, s, s],
    images: b,
    flops: 3 * b * resnetForwardFlops(s),
    peer: `resnet_train:${b}:${s}`,
    big: s >= 512,
    setup: () => {
      const m = new ResNetAdl(RESNET50_ADL).train();
      const opt = new Adam(m.parameters(), { lr: 1e-4, weightDecay: 1e-4 });
      const x = tensor(randomData(b * 3 * s * s, 1), [b, 3, s, s]);
      const y = tensor(Float32Array.from({ length: b }, (_, i) => i % 2), [b]);
      let lastLoss: Tensor | null = null;
      return Promise.resolve({
        step: () => {
          const loss = tidy(() => {
            const logits = F.reshape(m.forward(x), [b]);
            const l = F.bceWithLogits(logits, y);
            backward(l);
            return l;
          });
          opt.step();
          opt.zeroGrad();
          lastLoss?.dispose();
          lastLoss = loss;
        },
        verify: () => finiteNote("loss", lastLoss),
        done: () => {
          lastLoss?.dispose();
          opt.dispose();
          x.dispose();
          y.dispose();
          m.dispose();
        },
      });
    },
  };
}

function resnetForwardCase(b: number, s: number): Case {
  return {
    name: `resnet50-adl forward b${b} @${s}`,
    shape: [b, 3, s, s],
    images: b,
    flops: b * resnetForwardFlops(s),
    peer: `resnet_fwd:${b}:${s}`,
    big: s >= 512,
    setup: () => {
      const m = new ResNetAdl(RESNET50_ADL).eval();
      const x = tensor(randomData(b * 3 * s * s, 1), [b, 3, s, s]);
      let last: Tensor | null = null;
      return Promise.resolve({
        step: () => {
          last?.dispose();
          last = tidy(() => noGrad(() => m.forward(x)));
        },
        verify: () => finiteNote("logits", last),
        done: () => {
          last?.dispose();
          x.dispose();
          m.dispose();
        },
      });
    },
  };
}

function samEncoderCase(): Case {
  const cfg = SAM_CONFIGS.vit_b;
  const S = cfg.encoder.img_size;
  return {
    name: `sam-vit_b encoder fwd @${S}`,
    shape: [1, 3, S, S],
    images: 1,
    flops: samEncoderFlops(cfg.encoder),
    peer: "sam_encoder",
    note: () => `attention ${attentionImpl()}`,
    big: true,
    setup: () => {
      const sam = new Sam(cfg, 0);
      sam.eval();
      const x = tensor(randomData(3 * S * S, 3, -2, 2), [1, 3, S, S]);
      let last: Tensor | null = null;
      return Promise.resolve({
        step: () => {
          last?.dispose();
          last = tidy(() => noGrad(() => sam.embed(x)));
        },
        verify: () => finiteNote("embeddings", last),
        done: () => {
          last?.dispose();
          x.dispose();
          sam.dispose();
        },
      });
    },
  };
}

function samBlockCase(kind: "window" | "global"): Case {
  const cfg = SAM_CONFIGS.vit_b;
  const g = cfg.encoder.img_size / cfg.encoder.patch_size, d = cfg.encoder.embed_dim;
  const idx = kind === "global" ? cfg.encoder.global_attn_indexes[0] : 0;
  return {
    name: `sam-vit_b ${kind} block fwd ${g}x${g}x${d}`,
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
      let last: Tensor | null = null;
      return Promise.resolve({
        step: () => {
          last?.dispose();
          last = tidy(() => noGrad(() => block.forward(x)));
        },
        verify: () => finiteNote("block output", last),
        done: () => {
          last?.dispose();
          x.dispose();
          sam.dispose();
        },
      });
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
    name: `sam-vit_b mask-decoder fwd+bwd ${nPoints} points`,
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
      let lastLoss: Tensor | null = null;
      return Promise.resolve({
        step: () => {
          const loss = tidy(() => {
            const r = sam.decode(emb, { points: { coords, labels, n: nPoints } }, false);
            const probs = F.sigmoid(
              F.reshape(sam.postprocess(r.lowRes, [sam.imgSize, sam.imgSize], [orig, orig]), [
                1,
                orig,
                orig,
              ]),
            );
            const l = F.add(F.diceLoss(probs, target), F.iouLoss(probs, target));
            backward(l);
            return l;
          });
          opt.step();
          opt.zeroGrad();
          lastLoss?.dispose();
          lastLoss = loss;
        },
        verify: () => finiteNote("loss", lastLoss),
        done: () => {
          lastLoss?.dispose();
          opt.dispose();
          emb.dispose();
          target.dispose();
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
    name: `sam-vit_b pseudo-label (encoder + ${nPoints} points) @${orig}`,
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
    samBlockCase("window"),
    samBlockCase("global"),
    samDecoderCase(50),
    samEncoderCase(),
    samPseudoLabelCase(50),
  ];
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
    !alts.length || alts.some((a) => c.name.includes(a))
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
        r = await measure(s.step, runs, warm === "small" ? !c.big : warm);
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
      name: `${c.name}${ips}, peak ${r.peakMB.toFixed(0)} MB`,
      shape: c.shape,
      ms: r.ms,
      gflops: c.flops ? c.flops / r.ms / 1e6 : null,
      gbps: null,
      adapter,
      notes: `runs ${r.all.map((v) => v.toFixed(0)).join("/")} ms${
        opts.warmup === false || (opts.warmup === "small" && c.big) ? " (no warm-up)" : ""
      }; live before ${live0.toFixed(0)} MB; largest buffer ${
        r.maxAllocMB.toFixed(1)
      } MB; ${check}${c.note ? `; ${c.note()}` : ""}; load ${loadavg()}`,
    };
    console.error(`[models]   ${row.name}: ${r.ms.toFixed(0)} ms (${row.notes})`);
    rows.push(row);
  }
  if (opts.peers) {
    const want = cases.map((c) => c.peer).filter((p): p is string => !!p);
    const peer = await runTorchPeer(want, Math.max(1, Math.min(runs, 3)));
    for (const c of cases) {
      const p = c.peer ? peer.get(c.peer) : undefined;
      if (!p) continue;
      const ours = rows.find((r) => r.name.startsWith(c.name));
      if (p.error || !(p.ms > 0)) {
        console.error(`torch peer ${c.peer}: ${p.error ?? "no time"}`);
        continue;
      }
      const ratio = ours && Number.isFinite(ours.ms) ? ours.ms / p.ms : NaN;
      if (ours) {
        ours.notes = `${ours.notes}; torch CPU ${p.ms.toFixed(0)} ms → ours/torch ${
          ratio.toFixed(2)
        }×`;
      }
      rows.push({
        name: `torch-cpu(2 thr) ${c.name}${
          c.images ? ` ${(c.images * 1000 / p.ms).toFixed(3)} img/s` : ""
        }`,
        shape: c.shape,
        ms: p.ms,
        gflops: c.flops ? c.flops / p.ms / 1e6 : null,
        gbps: null,
        adapter: "PyTorch CPU, 2 threads",
        notes: `runs ${(p.all ?? []).map((v) => v.toFixed(0)).join("/")} ms; ours/torch ${
          ratio.toFixed(2)
        }×`,
      });
    }
  }
  return rows;
}

function loadavg(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

if (import.meta.main) {
  const args = Deno.args.slice();
  const opt = (k: string) => {
    const i = args.indexOf(k);
    if (i < 0) return undefined;
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
  };
  const runs = Number(opt("--runs") ?? 3);
  const batch = opt("--batch");
  const noWarm = args.includes("--no-warmup");
  if (noWarm) args.splice(args.indexOf("--no-warmup"), 1);
  const quick = args.includes("--quick");
  if (quick) args.splice(args.indexOf("--quick"), 1);
  const peers = args.includes("--peers");
  const filter = args.filter((a) => a !== "--peers")[0];
  const rows = await benchModels({
    filter,
    peers,
    runs,
    batch: batch ? Number(batch) : undefined,
    warmup: noWarm ? false : quick ? "small" : true,
  });
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(72)} ${r.ms.toFixed(0).padStart(9)} ms ${
        r.gflops === null ? "        -" : r.gflops.toFixed(2).padStart(9)
      } GFLOP/s  ${r.notes ?? ""}`,
    );
  }
  console.log(`adapter: ${rows[0]?.adapter}`);
}
