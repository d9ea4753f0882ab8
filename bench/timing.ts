/**
 * Timing one kernel (or a few) for a bench row: a warm-up run, then `runs` batches of iterations
 * timed by {@link timeGpu} (timestamps checked against the wall clock of the same batch, an empty
 * sync subtracted; the wall clock where they disagree). A batch lasts about 150 ms so that launch
 * and sync costs do not swamp small kernels.
 */
import { sync, timeGpu } from "../engine/mod.ts";
import { median } from "./registry.ts";

export interface KernelTiming {
  /** Median ms per iteration. */
  ms: number;
  /** "timestamp" only when every batch used timestamps. */
  method: "timestamp" | "wall";
  /** Median wall-clock ms per iteration (the cross-check). */
  wallMs: number;
  iterations: number;
  runs: number;
  /** Row note: method, batches, and why the wall clock was used where it was. */
  note: string;
}

const BATCH_MS = 150;
const MAX_ITERATIONS = 32;

/** Times `fn` (its result is disposed) as described in the module comment. */
export async function timeKernel(fn: () => unknown, runs: number): Promise<KernelTiming> {
  return (await timeKernelsInterleaved([fn], runs))[0];
}

/**
 * Times each of `fns` as {@link timeKernel} does, the batches interleaved round by round (A, B,
 * A, B, ...) so that load from other processes meets each alike: for A/B comparisons whose rows
 * must name their clock like every other row.
 */
export async function timeKernelsInterleaved(
  fns: (() => unknown)[],
  runs: number,
): Promise<KernelTiming[]> {
  const iterations: number[] = [];
  for (const fn of fns) {
    await timeGpu(fn); // warm-up: compiles pipelines
    const first = await timeGpu(fn); // sizes the batch
    iterations.push(
      Math.max(1, Math.min(MAX_ITERATIONS, Math.round(BATCH_MS / Math.max(first.wallMs, 0.01)))),
    );
  }
  await sync();
  const acc = fns.map(() => ({
    ms: [] as number[],
    wall: [] as number[],
    method: "timestamp" as "timestamp" | "wall",
    why: "",
  }));
  for (let r = 0; r < runs; r++) {
    for (const [i, fn] of fns.entries()) {
      const t = await timeGpu(fn, { iterations: iterations[i] });
      const a = acc[i];
      a.ms.push(t.ms);
      a.wall.push(t.wallMs);
      if (t.method === "wall") {
        a.method = "wall";
        a.why ||= t.note;
      }
    }
  }
  return acc.map(({ ms, wall, method, why }, i) => {
    const w = median(wall), m = method === "wall" ? w : median(ms);
    return {
      ms: m,
      method,
      wallMs: w,
      iterations: iterations[i],
      runs,
      note: `${method}, median of ${runs} batches × ${iterations[i]}` +
        (method === "timestamp" ? `, wall ${w.toPrecision(3)} ms` : "") + (why ? `; ${why}` : ""),
    };
  });
}
