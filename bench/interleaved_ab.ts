/**
 * Whole-pass A/B timing, interleaved in one process (the shared machine's load then moves every
 * variant alike): each round runs every variant once, the order reversed on odd rounds; per
 * variant the median wall clock and process CPU time (the rasteriser's threads included), the
 * peak GPU memory in tensors, the load at each run, and how far each variant's last output lies
 * from the first variant's. Used by bench/sam_encoder_ab.ts and bench/sam_attention.ts.
 */
import { memoryStats, pool, sync, type Tensor } from "../engine/mod.ts";
import { loadavg, median, processCpuMs } from "./registry.ts";

export interface InterleavedCase<V extends string> {
  /** Prefix of the per-run progress lines (stderr). */
  tag: string;
  name: string;
  variants: readonly V[];
  /** Switches the process to variant `v` (module toggles). */
  select: (v: V) => void;
  /** One run; returns the output compared across variants (read back after timing). */
  step: () => Promise<Tensor>;
  rounds: number;
  /** One untimed run per variant first (compiles its pipelines); default true. */
  warmup?: boolean;
}

export interface InterleavedResult<V extends string> {
  runs: Record<V, number[]>;
  cpuRuns: Record<V, number[]>;
  /** Median wall-clock ms and process CPU ms per variant. */
  ms: Record<V, number>;
  cpuMs: Record<V, number>;
  peakMB: Record<V, number>;
  /** 1-minute load average at each run. */
  loads: number[];
  /** Largest |difference| of each variant's last output from the first variant's. */
  maxAbsDiff: Record<V, number>;
  /** Largest |value| of the first variant's last output. */
  maxAbs: number;
}

function perVariant<V extends string, T>(vs: readonly V[], f: (v: V) => T): Record<V, T> {
  return Object.fromEntries(vs.map((v) => [v, f(v)])) as Record<V, T>;
}

/** Runs `c` as described in the module comment. */
export async function timeInterleaved<V extends string>(
  c: InterleavedCase<V>,
): Promise<InterleavedResult<V>> {
  const vs = c.variants;
  const runs = perVariant(vs, () => [] as number[]);
  const cpuRuns = perVariant(vs, () => [] as number[]);
  const peakMB = perVariant(vs, () => 0);
  const last = perVariant(vs, () => null as Tensor | null);
  const loads: number[] = [];
  try {
    if (c.warmup ?? true) {
      for (const v of vs) {
        c.select(v);
        (await c.step()).dispose();
        await sync();
      }
    }
    for (let i = 0; i < c.rounds; i++) {
      for (const v of i % 2 ? vs.slice().reverse() : vs) {
        c.select(v);
        last[v]?.dispose();
        last[v] = null;
        await sync();
        pool.resetPeak();
        const c0 = processCpuMs(), t0 = performance.now();
        last[v] = await c.step();
        await sync();
        const ms = performance.now() - t0, cpu = processCpuMs() - c0;
        runs[v].push(ms);
        cpuRuns[v].push(cpu);
        peakMB[v] = Math.max(peakMB[v], memoryStats().peakBytes / 2 ** 20);
        loads.push(Number(loadavg().split(" ")[0]));
        console.error(
          `[${c.tag}] ${c.name} ${v} ${ms.toFixed(0)} ms, CPU ${
            cpu.toFixed(0)
          } ms (load ${loadavg()})`,
        );
      }
    }
    const outs = await Promise.all(vs.map((v) => last[v]!.data())) as Float32Array[];
    const ref = outs[0];
    let maxAbs = 0;
    for (const x of ref) maxAbs = Math.max(maxAbs, Math.abs(x));
    const maxAbsDiff = perVariant(vs, (v) => {
      const o = outs[vs.indexOf(v)];
      let d = 0;
      for (let i = 0; i < ref.length; i++) d = Math.max(d, Math.abs(o[i] - ref[i]));
      return d;
    });
    return {
      runs,
      cpuRuns,
      ms: perVariant(vs, (v) => median(runs[v])),
      cpuMs: perVariant(vs, (v) => median(cpuRuns[v])),
      peakMB,
      loads,
      maxAbsDiff,
      maxAbs,
    };
  } finally {
    for (const v of vs) last[v]?.dispose();
  }
}
