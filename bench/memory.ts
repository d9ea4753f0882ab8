/**
 * GPU memory of a checkpointed ResNet-50-ADL training step (the paper profile's classifier step):
 * per step the live peak (tensors + scratch textures, in size classes), the bytes tensors asked for
 * at that peak, the held peak (live + buffers and scratch textures parked: what the device had), their
 * ratio and the time of the step. For the step that set the held peak it says where the held − live
 * gap came from: parked buffers by size class, and how many of those the rest of the step never took
 * again. `--trace F` writes the pool's events (replayable through other policies by
 * bench/memory_sim.ts).
 *
 *   deno run -A bench/memory.ts                       # quick: b2@256 and b4@512
 *   deno run -A bench/memory.ts --case b2@256 --policies classes,slabs --rounds 3   # A/B
 *   ENGINE_SLAB_THRESHOLD=Infinity deno run -A bench/memory.ts --case b16@512 --steps 1  # paper,
 *   deno run -A bench/memory.ts --case b16@512 --steps 1                                 # before/after
 */
import { F, flush, initGpu, memoryStats, pool, sync, tensor, trimPool } from "../engine/mod.ts";
import { dispatchStats } from "../engine/dispatch.ts";
import { type Allocation, fmtBytes, type PoolTracer, SLAB_THRESHOLD } from "../engine/pool.ts";
import { Adam } from "../engine/optim/adam.ts";
import { TrainStep } from "./train_step.ts";
import {
  cachedTextureBytes,
  recordTextureRequests,
  setTextureCacheBytes,
  type TextureStats,
  textureStats,
} from "../engine/texture_pool.ts";
import { defaultTexturePolicies, simulateTextures } from "./texture_sim.ts";
import { RESNET50_ADL, ResNetAdl } from "../model/resnet_adl.ts";
import { mulberry32 } from "../engine/mulberry32.ts";
import { loadavg, processCpuMs } from "./registry.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";
import { writeFileAtomic } from "../engine/io/atomic.ts";

const USAGE = `usage: deno run -A bench/memory.ts [--case L] [--policies P] [--rounds R] [--steps N]
       [--trace FILE]
  --case L      comma-separated batch@size cases of the checkpointed classifier step
                (default b2@256,b4@512; the paper profile is b16@512: ~4 min a step, ~8 GB RSS)
  --policies P  pool policies to compare, interleaved: slabs (tensors of 1 MiB and more as
                ranges of slabs), classes (whole buffers by size class only); default: the
                process's (slabs; classes under ENGINE_SLAB_THRESHOLD=Infinity, which also
                keeps the model's own tensors out of slabs: the clean "before" figure);
                a policy may end in :texMIB, the bytes of scratch textures kept parked
                (engine/texture_pool.ts; default: its own cap), then :keepslabs (empty slabs
                are not destroyed before a new one is made); slabs:tex256:keepslabs is the
                pool before both (the A/B: --policies slabs:tex256:keepslabs,slabs)
  --rounds R    times through the policies (default 1)
  --steps N     measured steps per policy and round, after one warm-up step (default 2)
  --dry         skip the kernels (dispatches dropped; allocation, frees and submits as in a real
                run): memory figures only, fast; step times are meaningless
  --texture-sim replay each measured step's scratch-texture requests through other pool policies
              (bench/texture_sim.ts: exact shape or a larger one, caps): textures made, held
  --trace F   write the last case's pool events (from the model's creation on) as JSON, for
              bench/memory_sim.ts`;

/**
 * One pool event: "a" acquire [id, requested bytes, size class], "r" release, "s" submit, "t"
 * scratch textures taken or given back, "m" a measured step begins.
 */
export type TraceEvent =
  | [kind: "a", id: number, bytes: number, size: number]
  | [
    kind: "r",
    id: number,
  ]
  | [kind: "s"]
  | [kind: "t", delta: number]
  | [kind: "m"];

interface StepFigures {
  ms: number;
  /** CPU time of the whole process in the step (lavapipe's threads included): steadier under load. */
  cpuMs: number;
  /**
   * Scratch textures made in the step (those the texture pool had not kept), and their bytes; how
   * many were asked for, the CPU ms in createTexture, and the shapes made ("W×H" texels: count).
   */
  texturesMade: {
    count: number;
    bytes: number;
    acquired: number;
    createMs: number;
    shapes: [string, number][];
  };
  /** Buffers and slabs made in the step, and their bytes; bind groups made (engine/dispatch.ts). */
  buffersMade: { count: number; bytes: number };
  bindGroupsMade: number;
  livePeak: number;
  heldPeak: number;
  /** Bytes tensors asked for at the moment of the live peak (the classes round these up). */
  requestedAtLivePeak: number;
  /** At the moment of the held peak. */
  atHeldPeak: {
    live: number;
    textures: number;
    /** Scratch textures parked in engine/texture_pool.ts (in the held bytes, as pooled). */
    cachedTextures: number;
    parked: Map<number, number>;
  };
  /** Of the parked bytes at the held peak, those whose class the rest of the step never takes. */
  parkedNeverTakenAgain: number;
  events: TraceEvent[];
}

/** What {@link StepRecorder} reads of the pool at each event (the pool itself, or a test's fake). */
export interface PoolState {
  readonly liveBytes: number;
  readonly pooledBytes: number;
  parkedBySize(): Map<number, number>;
  /** Scratch textures parked in engine/texture_pool.ts. */
  cachedTextureBytes(): number;
}

const POOL_STATE: PoolState = {
  get liveBytes() {
    return pool.liveBytes;
  },
  get pooledBytes() {
    return pool.pooledBytes;
  },
  parkedBySize: () => pool.parkedBySize(),
  cachedTextureBytes,
};

/** Records one step's traffic through the pool and the moments of its peaks. */
export class StepRecorder implements PoolTracer {
  events: TraceEvent[] = [];
  private ids = new Map<Allocation, [number, number]>();
  private nextId = 1;
  private requested = 0;
  private textures = 0;
  livePeak = 0;
  requestedAtLivePeak = 0;
  heldPeak = 0;
  heldPeakEvent = -1;
  atHeldPeak = { live: 0, textures: 0, cachedTextures: 0, parked: new Map<number, number>() };

  constructor(private readonly state: PoolState = POOL_STATE) {}

  /**
   * Starts a measured step: peaks afresh (events go on, after a marker). The pool as it stands is
   * the step's first held peak, so that a step whose held peak is its start (nothing it took grew
   * the pool) reports what was held then, not zeros.
   */
  beginStep(): void {
    this.events.push(["m"]);
    const live = this.state.liveBytes;
    this.livePeak = live;
    this.requestedAtLivePeak = this.requested + this.textures;
    this.heldPeak = live + this.state.pooledBytes;
    this.heldPeakEvent = this.events.length - 1;
    this.atHeldPeak = this.snapshot(live);
  }

  private snapshot(live: number): StepFigures["atHeldPeak"] {
    return {
      live,
      textures: this.textures,
      cachedTextures: this.state.cachedTextureBytes(),
      parked: this.state.parkedBySize(),
    };
  }

  acquire(a: Allocation, bytes: number): void {
    const id = this.nextId++;
    this.ids.set(a, [id, bytes]);
    this.requested += bytes;
    this.events.push(["a", id, bytes, a.size]);
    this.note();
  }
  release(a: Allocation): void {
    const e = this.ids.get(a);
    if (!e) return; // acquired before recording began (the input, made before the model)
    this.ids.delete(a);
    this.requested -= e[1];
    this.events.push(["r", e[0]]);
  }
  submit(): void {
    this.events.push(["s"]);
  }
  account(delta: number): void {
    this.textures += delta;
    this.events.push(["t", delta]);
    this.note();
  }
  private note(): void {
    const live = this.state.liveBytes;
    if (live > this.livePeak) {
      this.livePeak = live;
      this.requestedAtLivePeak = this.requested + this.textures;
    }
    const held = live + this.state.pooledBytes;
    if (held > this.heldPeak) {
      this.heldPeak = held;
      this.heldPeakEvent = this.events.length - 1;
      this.atHeldPeak = this.snapshot(live);
    }
  }
  /** Parked bytes at the held peak whose size class no later acquire in the step asked for. */
  parkedNeverTakenAgain(): number {
    const later = new Set<number>();
    for (let i = this.heldPeakEvent + 1; i < this.events.length; i++) {
      const e = this.events[i];
      if (e[0] === "a") later.add(e[3]);
    }
    let n = 0;
    for (const [size, count] of this.atHeldPeak.parked) {
      if (size > 0 && !later.has(size)) n += size * count;
    }
    return n;
  }
}

/** Whether each step's scratch-texture requests are replayed through other policies (--texture-sim). */
let textureSim = false;

/** The step's texture requests through bench/texture_sim.ts's policies, one line each. */
function reportTextureSim(requests: ReturnType<typeof recordTextureRequests>): void {
  const asked = requests.filter((e) => e[0] === "a").length;
  console.log(`  texture policies replayed on this step's ${asked} requests:`);
  for (const p of defaultTexturePolicies()) {
    const f = simulateTextures(requests, p);
    console.log(
      `    ${p.name.padEnd(20)} made ${String(f.made).padStart(4)} (${fmtBytes(f.madeBytes)}; ${
        fmtBytes(f.madeBytesOver64MiB)
      } in textures over 64 MiB), textures held at most ${fmtBytes(f.heldPeak)}`,
    );
  }
}

/** Whether kernels are skipped (--dry): memory figures only. */
let dryRun = false;

/**
 * --dry: every compute pass's dispatches are dropped, so the adapter does no arithmetic while the
 * engine encodes, allocates, frees and submits exactly as it would (no step of the classifier reads
 * GPU data back on the host, so its pool traffic does not depend on the values): the memory figures
 * of the paper's b16 @512² in minutes instead of an hour on a loaded machine. Times and the loss
 * mean nothing then.
 */
function skipKernels(): void {
  dryRun = true;
  GPUComputePassEncoder.prototype.dispatchWorkgroups = function () {};
}

function parseCase(s: string): { b: number; s: number } {
  const m = /^b(\d+)@(\d+)$/.exec(s.trim());
  if (!m) throw new UsageError(`--case: "${s}" is not batch@size like b2@256`);
  return { b: Number(m[1]), s: Number(m[2]) };
}

/**
 * Pool policies bench/memory.ts compares: the threshold above which tensors go to slabs. The
 * model, its optimizer state and the input are made under the process's setting
 * (`ENGINE_SLAB_THRESHOLD=Infinity`: classes only), so a "before" figure free of slabs is a run of
 * its own with that variable; interleaved policies compare the step's own tensors.
 */
const START_THRESHOLD = pool.slabThreshold;
/** The texture pool's own cap (null; restored after each case). */
const DEFAULT_TEXTURE_CACHE = null;
const POLICIES: Record<string, number> = {
  slabs: Number.isFinite(START_THRESHOLD) ? START_THRESHOLD : SLAB_THRESHOLD,
  classes: Infinity,
};

/** A policy and, after `:tex`, the MiB of scratch textures the texture pool may keep parked. */
function parsePolicy(
  p: string,
): { threshold: number; textureCache: number | null; reclaim: boolean } {
  const m = /^(\w+)(?::tex(\d+(?:\.\d+)?))?(:keepslabs)?$/.exec(p);
  if (!m || !(m[1] in POLICIES)) {
    throw new UsageError(
      `--policies: "${p}" is not one of ${
        Object.keys(POLICIES)
      }, optionally with :texMIB, then :keepslabs`,
    );
  }
  return {
    threshold: POLICIES[m[1]],
    textureCache: m[2] === undefined ? DEFAULT_TEXTURE_CACHE : Number(m[2]) * 2 ** 20,
    reclaim: !m[3],
  };
}

interface PolicyFigures extends StepFigures {
  policy: string;
}

/**
 * Builds the checkpointed classifier at batch `b`, size `s`; then `rounds` times, for each policy
 * in turn: the pool trimmed, one warm-up step (the pool filled), `steps` measured steps. The
 * policies interleave so that the machine's load falls on each alike.
 */
async function runCase(
  b: number,
  s: number,
  steps: number,
  policies: string[],
  rounds: number,
): Promise<PolicyFigures[]> {
  const rec = new StepRecorder();
  pool.tracer = rec; // from the start, so that requested bytes count the parameters too
  const m = new ResNetAdl(RESNET50_ADL).train().setCheckpointing(true);
  const opt = new Adam(m.parameters(), { lr: 1e-4, weightDecay: 1e-4 });
  const rand = mulberry32(7);
  const x = tensor(Float32Array.from({ length: b * 3 * s * s }, rand), [b, 3, s, s]);
  const y = tensor(Float32Array.from({ length: b }, (_, i) => i % 2), [b]);
  const train = new TrainStep(() => F.bceWithLogits(F.reshape(m.forward(x), [b]), y), opt);
  const out: PolicyFigures[] = [];
  const threshold = pool.slabThreshold;
  try {
    for (let r = 0; r < rounds; r++) {
      for (const policy of policies) {
        const pol = parsePolicy(policy);
        pool.slabThreshold = pol.threshold;
        setTextureCacheBytes(pol.textureCache);
        pool.reclaimEmptySlabs = pol.reclaim;
        await sync();
        trimPool();
        train.step(); // warm-up: pipelines compiled, the pool filled
        await sync();
        for (let i = 0; i < steps; i++) {
          flush();
          pool.resetPeak();
          rec.beginStep();
          const made0 = textureStats();
          const bufs0 = { ...pool.made }, groups0 = dispatchStats().bindGroups;
          const c0 = processCpuMs();
          const t0 = performance.now();
          if (textureSim) recordTextureRequests(true);
          train.step();
          await sync();
          const requests = recordTextureRequests(false);
          const ms = performance.now() - t0;
          const cpuMs = processCpuMs() - c0;
          const made1 = textureStats();
          const st = memoryStats();
          const loss = await train.lastLoss!.item();
          if (!dryRun && !Number.isFinite(loss)) {
            throw new Error(`b${b}@${s}: step ${i + 1} loss is ${loss}`);
          }
          out.push({
            policy,
            ms,
            cpuMs,
            texturesMade: texturesMadeBetween(made0, made1),
            buffersMade: {
              count: pool.made.count - bufs0.count,
              bytes: pool.made.bytes - bufs0.bytes,
            },
            bindGroupsMade: dispatchStats().bindGroups - groups0,
            livePeak: st.peakBytes,
            heldPeak: st.peakAllocatedBytes,
            requestedAtLivePeak: rec.requestedAtLivePeak,
            atHeldPeak: rec.atHeldPeak,
            parkedNeverTakenAgain: rec.parkedNeverTakenAgain(),
            events: rec.events,
          });
          report(`b${b}@${s} ${policy} round ${r + 1} step ${i + 1}`, out[out.length - 1]);
          if (textureSim) reportTextureSim(requests);
        }
      }
    }
  } finally {
    pool.tracer = null;
    pool.slabThreshold = threshold;
    setTextureCacheBytes(DEFAULT_TEXTURE_CACHE);
    pool.reclaimEmptySlabs = true;
    train.dispose();
    opt.dispose();
    x.dispose();
    y.dispose();
    m.dispose();
    flush();
    trimPool();
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gib = (n: number) => (n / 2 ** 30).toFixed(3);

/** The scratch textures made between two readings of the texture pool's counters. */
export function texturesMadeBetween(a: TextureStats, b: TextureStats): StepFigures["texturesMade"] {
  const shapes: [string, number][] = [];
  for (const [k, n] of b.shapes) {
    const d = n - (a.shapes.get(k) ?? 0);
    if (d > 0) shapes.push([k, d]);
  }
  const texels = (k: string) => k.split("x").reduce((p, v) => p * Number(v), 1);
  shapes.sort((x, y) => texels(y[0]) * y[1] - texels(x[0]) * x[1]);
  return {
    count: b.created - a.created,
    bytes: b.createdBytes - a.createdBytes,
    acquired: b.acquired - a.acquired,
    createMs: b.createMs - a.createMs,
    shapes,
  };
}

function report(what: string, f: StepFigures): void {
  const p = f.atHeldPeak;
  const parked = [...p.parked].filter(([, n]) => n > 0).sort((a, b) =>
    a[0] < 0 ? -1 : b[0] < 0 ? 1 : b[0] - a[0]
  );
  const parkedBytes = parked.reduce((a, [sz, n]) => a + (sz < 0 ? n : sz * n), 0);
  console.log(
    `${what}: ${(f.ms / 1000).toFixed(2)} s (CPU ${(f.cpuMs / 1000).toFixed(2)} s)  live peak ${
      gib(f.livePeak)
    } GiB (tensors asked ${gib(f.requestedAtLivePeak)})  held peak ${
      gib(f.heldPeak)
    } GiB  held/live ${(f.heldPeak / f.livePeak).toFixed(3)}  ` +
      `textures made ${f.texturesMade.count} of ${f.texturesMade.acquired} asked (${
        fmtBytes(f.texturesMade.bytes)
      }; createTexture ${
        f.texturesMade.createMs.toFixed(1)
      } ms CPU), buffers made ${f.buffersMade.count} (${
        fmtBytes(f.buffersMade.bytes)
      }), bind groups made ${f.bindGroupsMade}`,
  );
  console.log(
    `  at the held peak: live ${gib(p.live)} GiB (textures ${fmtBytes(p.textures)}; ` +
      `${fmtBytes(p.cachedTextures)} more parked as textures), parked ${
        gib(parkedBytes)
      } GiB in buffers and slabs, of which ${
        gib(f.parkedNeverTakenAgain)
      } GiB in classes never taken again this ` +
      `step; largest parked: ${
        parked.slice(0, 6).map(([sz, n]) =>
          sz < 0 ? `${fmtBytes(n)} free in slabs` : `${n}×${fmtBytes(sz)}`
        ).join(", ")
      }`,
  );
  const t = f.texturesMade;
  if (t.shapes.length) {
    console.log(
      `  textures made by shape (W×H texels, 16 B each; by bytes): ${
        t.shapes.map(([k, n]) => `${n}×${k}`).join(", ")
      }`,
    );
  }
}

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/memory.ts",
        usage: USAGE,
        options: {
          case: { type: "string" },
          steps: { type: "string" },
          trace: { type: "string" },
          dry: { type: "boolean" },
          "texture-sim": { type: "boolean" },
          policies: { type: "string" },
          rounds: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const cases = (stringFlag(flags, "case") ?? "b2@256,b4@512").split(",").map(parseCase);
        const steps = numberFlag(flags, "steps", { def: 2, min: 1, max: 50, integer: true })!;
        const rounds = numberFlag(flags, "rounds", { def: 1, min: 1, max: 50, integer: true })!;
        const policies = (stringFlag(flags, "policies") ??
          (Number.isFinite(START_THRESHOLD) ? "slabs" : "classes")).split(",");
        for (const p of policies) parsePolicy(p);
        const tracePath = stringFlag(flags, "trace");
        if (flags.dry) skipKernels();
        textureSim = !!flags["texture-sim"];
        await initGpu();
        console.log(`load at start: ${loadavg()}`);
        let lastEvents: TraceEvent[] = [];
        for (const c of cases) {
          const figs = await runCase(c.b, c.s, steps, policies, rounds);
          for (const p of policies) {
            const mine = figs.filter((f) => f.policy === p);
            console.log(
              `b${c.b}@${c.s} ${p}, median of ${mine.length} steps: ${
                (median(mine.map((f) => f.ms)) / 1000).toFixed(2)
              } s/step (CPU ${(median(mine.map((f) => f.cpuMs)) / 1000).toFixed(2)} s), live peak ${
                gib(median(mine.map((f) => f.livePeak)))
              } GiB, held peak ${gib(median(mine.map((f) => f.heldPeak)))} GiB, held/live ${
                median(mine.map((f) => f.heldPeak / f.livePeak)).toFixed(3)
              }, load ${loadavg()}`,
            );
          }
          lastEvents = figs[figs.length - 1].events;
        }
        if (tracePath) {
          await writeFileAtomic(tracePath, JSON.stringify(lastEvents));
          console.log(`trace: ${lastEvents.length} events → ${tracePath}`);
        }
      },
    ),
  );
}
