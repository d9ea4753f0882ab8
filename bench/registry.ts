/**
 * Benchmark registry: each bench module registers a named group that returns rows; `main.ts` runs
 * the groups (filtered by name substring) and prints/serialises the rows.
 */
import type { Peers } from "./peers/onnx_peers.ts";

/** One measured figure. `shape` is op-specific (matmul: [M, N, K], batched: [batch, M, N, K]). */
export interface BenchRow {
  name: string;
  shape: number[];
  /** Median milliseconds per run. */
  ms: number;
  /** Useful floating-point work per second, 1e9 (null where not meaningful). */
  gflops: number | null;
  /** Bytes moved per second (minimum traffic: inputs read once, outputs written once), 1e9. */
  gbps: number | null;
  adapter: string;
  /** Free-form extras: variant, timing method, peer ratios. */
  notes?: string;
  /** The peers of the same work in the same run (bench/peers/onnx_peers.ts), output-checked. */
  peers?: Peers;
  /** /proc/loadavg (1, 5, 15 min) when the row was measured: other processes share the CPU. */
  load?: string;
}

export interface BenchContext {
  /** Substring filter on row names (already applied to groups; benches may use it per row). */
  filter: string;
  /** Run peers (TF.js, PyTorch) too. */
  peers: boolean;
  /** Timed runs per measurement (median taken). */
  runs: number;
  adapter: string;
}

export interface BenchGroup {
  name: string;
  /** The group filters its own rows by `ctx.filter` (else it runs only when the filter names it). */
  filterable?: boolean;
  run: (ctx: BenchContext) => Promise<BenchRow[]>;
}

const groups: BenchGroup[] = [];

/** Adds a group (call at module load). */
export function registerBench(group: BenchGroup): void {
  if (groups.some((g) => g.name === group.name)) {
    throw new Error(`bench group ${group.name} registered twice`);
  }
  groups.push(group);
}

export function benchGroups(): readonly BenchGroup[] {
  return groups;
}

/**
 * CPU milliseconds this process has used, all threads (lavapipe's rasteriser threads included):
 * utime + stime at 100 ticks a second; NaN without /proc. On a shared machine it says more than
 * the wall clock about what a change saves.
 */
export function processCpuMs(): number {
  try {
    const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/** The 1, 5 and 15 minute load averages ("?" where /proc/loadavg is not readable). */
export function loadavg(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

/** Whether `name` passes a `--filter`: empty, or containing one of its "|"-separated parts. */
export function matchesFilter(name: string, filter: string | undefined): boolean {
  return !filter || filter.split("|").some((a) => a !== "" && name.includes(a));
}

/**
 * The element at index ⌊n/2⌋ of the sorted list: the median for an odd count, the upper of the two
 * middle values for an even one (what the interleaved A/B benches print; {@link median} averages).
 */
export function upperMedian(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1];
}

/** Median of a list. */
export function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
