/**
 * The measuring half of the matmul autotuner (engine/autotune.ts holds the cache and the lookup):
 * for one problem, run every candidate tile once and keep those whose output equals the default
 * tile's bit for bit, then time the survivors in interleaved rounds (each round visits every
 * candidate once, so machine load drifts over all of them alike) with the engine's honest timer
 * (`timeGpu`: timestamps only where they agree with the wall clock), within a time budget, and
 * choose the fastest best-of-rounds time. Run by `deno task tune` (bench/tune.ts), never by an op or a test.
 */
import { timeGpu } from "./dispatch.ts";
import { gpu } from "./device.ts";
import { matmulRaw } from "./ops/matmul.ts";
import { matmulVariantFor, setMatmulVariant } from "./routing.ts";
import { type Tensor, tensor } from "./tensor.ts";
import {
  adapterCache,
  adapterIdentity,
  cachePath,
  defaultTile,
  generatorHash,
  shapeClass,
  tileCandidates,
  type TunedFamily,
  type TunedTile,
  type TuneEntry,
  writeCache,
} from "./autotune.ts";
import { matmulTileName } from "../kernels/matmul.ts";
import { mulberry32 } from "./mulberry32.ts";

/** How a search runs a candidate: its output, and one timed batch of `iterations` runs. */
export interface SearchHooks {
  output(tile: TunedTile): Promise<Float32Array>;
  time(tile: TunedTile, iterations: number): Promise<{ ms: number; method: string }>;
}

export interface SearchOptions {
  /** Time budget for the timed rounds (ms); the first round always completes. Default 20 000. */
  budgetMs?: number;
  /** Most timed rounds (default 5). */
  rounds?: number;
  /** After the first round, candidates slower than this × the fastest are dropped (default 1.5). */
  prune?: number;
  /** The default tile is kept unless the best is faster by more than this fraction (0.03). */
  margin?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /**
   * What "fastest" means (tuneMatmul; default "wall"): the honest timer, or on software adapters
   * "cpu", an estimate of the quiet-machine wall time from the rasteriser workers' CPU time (see
   * {@link cpuObjectiveMs}): far less disturbed by other processes on a shared machine.
   */
  objective?: "wall" | "cpu";
  /** Length a timed batch aims for (ms of the objective, default 100) and its most iterations. */
  batchMs?: number;
  maxIterations?: number;
}

/** Batch length a timed run aims for, so launch and sync costs stay small (ms). */
const BATCH_MS = 100;

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Index and size of the first differing element, for the rejection note. */
function firstDifference(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `${a.length} elements against ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) return `element ${i}: ${a[i]} against ${b[i]}`;
  }
  return "none";
}

/**
 * Chooses among `candidates` (the default tile `def` is always among them) as the module comment
 * says. Pure apart from the hooks, so tests drive it with fakes.
 */
export async function searchTiles(
  def: TunedTile,
  candidates: TunedTile[],
  hooks: SearchHooks,
  opts: SearchOptions = {},
): Promise<Omit<TuneEntry, "shape" | "at">> {
  const budget = opts.budgetMs ?? 20_000, rounds = opts.rounds ?? 5;
  const prune = opts.prune ?? 1.5, margin = opts.margin ?? 0.03;
  const log = opts.log ?? (() => {});
  const batchMs = opts.batchMs ?? BATCH_MS, maxIt = opts.maxIterations ?? 16;
  const defName = matmulTileName(def);
  const all = [def, ...candidates.filter((c) => matmulTileName(c) !== defName)];
  const notes = new Map<string, { ms?: number; rejected?: string }>();
  const ref = await hooks.output(def);
  const alive: TunedTile[] = [def];
  for (const [i, c] of all.entries()) {
    if (i === 0) continue;
    const name = matmulTileName(c);
    let out: Float32Array;
    try {
      out = await hooks.output(c);
    } catch (e) {
      notes.set(name, { rejected: `failed: ${(e as Error).message}` });
      log(`  check ${i}/${all.length - 1} ${name}: failed (${(e as Error).message})`);
      continue;
    }
    if (!sameBits(out, ref)) {
      const why = `output differs from the default tile's (${firstDifference(out, ref)})`;
      notes.set(name, { rejected: why });
      log(`  check ${i}/${all.length - 1} ${name}: rejected, ${why}`);
      continue;
    }
    alive.push(c);
    log(`  check ${i}/${all.length - 1} ${name}: output bitwise the default's`);
  }
  const times = new Map<string, number[]>(alive.map((c) => [matmulTileName(c), []]));
  let methods = new Set<string>();
  const t0 = performance.now();
  // Untimed runs of the default size the batches: the first after the checks is slow (the timer
  // probes the adapter's timestamps once), the second is representative.
  await hooks.time(def, 1);
  const probe = await hooks.time(def, 1);
  const iterations = Math.max(1, Math.min(maxIt, Math.round(batchMs / Math.max(probe.ms, 1e-3))));
  let pool = alive;
  for (let r = 0; r < rounds; r++) {
    if (r > 0 && performance.now() - t0 > budget) break;
    for (const [i, c] of pool.entries()) {
      const name = matmulTileName(c);
      const t = await hooks.time(c, iterations);
      times.get(name)!.push(t.ms);
      methods.add(t.method);
      log(`  round ${r + 1}/${rounds} ${i + 1}/${pool.length} ${name}: ${t.ms.toFixed(2)} ms`);
    }
    if (r === 0) {
      const best = Math.min(...pool.map((c) => times.get(matmulTileName(c))![0]));
      pool = pool.filter((c, i) => i === 0 || times.get(matmulTileName(c))![0] <= prune * best);
    }
  }
  // Load on a shared machine only ever adds time: the best run is the least disturbed figure.
  const fastest = new Map([...times].map(([n, t]) => [n, Math.min(...t)]));
  for (const [n, ms] of fastest) notes.set(n, { ms });
  let best = def;
  for (const c of alive) {
    if (fastest.get(matmulTileName(c))! < fastest.get(matmulTileName(best))!) best = c;
  }
  const defMs = fastest.get(defName)!;
  if (fastest.get(matmulTileName(best))! > defMs * (1 - margin)) best = def;
  methods = methods.size ? methods : new Set(["none"]);
  return {
    tile: best,
    name: matmulTileName(best),
    ms: fastest.get(matmulTileName(best))!,
    defaultMs: defMs,
    method: `${[...methods].join("+")}, best of up to ${rounds} interleaved rounds × ${iterations}`,
    candidates: all.map((c) => ({ name: matmulTileName(c), ...notes.get(matmulTileName(c)) })),
  };
}

/** The 1-, 5- and 15-minute load averages (Linux), or null. */
function loadAverage(): { one: number; text: string } | null {
  try {
    const f = Deno.readTextFileSync("/proc/loadavg").split(" ");
    return { one: Number(f[0]), text: f.slice(0, 3).join(" ") };
  } catch {
    return null;
  }
}

/**
 * CPU ms used so far by this process's threads other than the main one (on llvmpipe: the
 * rasteriser's workers), or NaN where /proc is missing (not Linux).
 */
export function workerCpuMs(): number {
  try {
    let ticks = 0;
    for (const e of Deno.readDirSync("/proc/self/task")) {
      if (e.name === String(Deno.pid)) continue;
      try {
        const f = Deno.readTextFileSync(`/proc/self/task/${e.name}/stat`).split(") ")[1].split(" ");
        ticks += Number(f[11]) + Number(f[12]);
      } catch { /* the thread ended */ }
    }
    return ticks * 10; // USER_HZ = 100 on Linux
  } catch {
    return NaN;
  }
}

/**
 * The "cpu" objective: workers' CPU ms per product spread over the rasteriser's threads
 * (`LP_NUM_THREADS`, else the CPU count), times the imbalance of the last wave of workgroups
 * (`groups` workgroups: ⌈groups/threads⌉ ÷ (groups/threads)). What a quiet machine's wall clock
 * would show if the workers never waited; unlike the wall clock, other processes barely move it.
 */
export function cpuObjectiveMs(cpuMs: number, groups: number): number {
  const threads = Number(Deno.env.get("LP_NUM_THREADS")) || navigator.hardwareConcurrency || 1;
  const g = Math.max(1, groups);
  return (cpuMs / threads) * (Math.ceil(g / threads) / (g / threads));
}

/** One product to tune for: [batch, M, N, K] (batch > 1: a separate B per batch). */
export type TuneShape = [number, number, number, number];

function randomTensor(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1), rnd = mulberry32(seed);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = rnd() * 2 - 1;
  return tensor(d, shape);
}

/** The tuned family a problem runs with on this adapter, or null where its tile is fixed. */
export function familyOf(M: number, N: number, K: number): TunedFamily | null {
  const v = matmulVariantFor(M, N, K);
  return v === "register" ? null : v;
}

/**
 * Tunes one problem on this adapter's device with random operands and returns its entry (the
 * caller stores it: {@link tuneShapes}).
 */
export async function tuneMatmul(
  shape: TuneShape,
  family: TunedFamily,
  opts: SearchOptions = {},
): Promise<TuneEntry> {
  const [b, M, N, K] = shape;
  const cpu = opts.objective === "cpu";
  if (cpu && (!gpu().isSoftware || Number.isNaN(workerCpuMs()))) {
    throw new Error(
      "autotune: the cpu objective needs a software adapter (llvmpipe) and /proc (Linux)",
    );
  }
  const a = randomTensor(b > 1 ? [b, M, K] : [M, K], 1);
  const w = randomTensor(b > 1 ? [b, K, N] : [K, N], 2);
  const run = (t: TunedTile) => {
    setMatmulVariant(family, t);
    try {
      return matmulRaw(a, w, { variant: family });
    } finally {
      setMatmulVariant(null);
    }
  };
  try {
    const r = await searchTiles(defaultTile(family, M, N), tileCandidates(family), {
      output: async (t) => {
        const y = run(t);
        try {
          return await y.data() as Float32Array;
        } finally {
          y.dispose();
        }
      },
      time: async (t, iterations) => {
        const c0 = cpu ? workerCpuMs() : 0;
        const g = await timeGpu(() => run(t), { iterations });
        if (!cpu) return { ms: g.ms, method: g.method };
        const groups = Math.ceil(N / (t.wx * t.tn)) * Math.ceil(M / (t.wy * t.tm)) * b;
        return { ms: cpuObjectiveMs((workerCpuMs() - c0) / iterations, groups), method: "cpu" };
      },
    }, cpu ? { batchMs: 250, maxIterations: 64, ...opts } : opts);
    return { ...r, shape: [...shape], at: new Date().toISOString() };
  } finally {
    a.dispose();
    w.dispose();
  }
}

/**
 * Tunes every shape whose class this adapter's cache lacks (all of them with `force`), writing
 * the cache after each class so an interrupted run keeps what it measured. Shapes of one class are
 * tuned once (the first one listed). Returns the entries it measured, by class.
 */
export async function tuneShapes(
  shapes: TuneShape[],
  opts: SearchOptions & { force?: boolean; path?: string } = {},
): Promise<Map<string, TuneEntry>> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const cache = adapterCache();
  const path = opts.path ?? cachePath(adapterIdentity());
  const done = new Map<string, TuneEntry>();
  const todo: [string, TuneShape, TunedFamily][] = [];
  for (const s of shapes) {
    const [b, M, N, K] = s;
    const fam = familyOf(M, N, K);
    if (!fam) continue;
    const cls = shapeClass(fam, M, N, K, b);
    if (todo.some(([c]) => c === cls) || (!opts.force && cache.entries[cls])) continue;
    todo.push([cls, s, fam]);
  }
  log(`autotune: ${todo.length} shape class(es) to tune, cache ${path}`);
  const busy = loadAverage();
  if (busy && busy.one > navigator.hardwareConcurrency && opts.objective !== "cpu") {
    log(
      `autotune: warning: load average ${busy.text} on ${navigator.hardwareConcurrency} CPUs: ` +
        "other processes skew the timings; tune on a quiet machine (--force to measure again)" +
        " or, on a software adapter, with --objective cpu",
    );
  }
  const started = performance.now();
  for (const [i, [cls, s, fam]] of todo.entries()) {
    const el = (performance.now() - started) / 1000;
    const eta = i ? ` ETA ${((el / i) * (todo.length - i)).toFixed(0)} s` : "";
    log(`autotune ${i + 1}/${todo.length} ${cls} [${s}] (${el.toFixed(0)} s elapsed${eta})`);
    const e = { ...await tuneMatmul(s, fam, { ...opts, log }), load: loadAverage()?.text };
    cache.entries[cls] = e;
    done.set(cls, e);
    cache.generator = generatorHash();
    await writeCache(path, cache);
    log(
      `autotune ${i + 1}/${todo.length} ${cls}: ${e.name} ${e.ms.toFixed(1)} ms ` +
        `(default ${e.defaultMs.toFixed(1)} ms, ${(e.defaultMs / e.ms).toFixed(2)}×)`,
    );
  }
  return done;
}
