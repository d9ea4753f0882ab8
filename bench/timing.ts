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
  await timeGpu(fn); // warm-up: compiles pipelines
  const first = await timeGpu(fn); // sizes the batch
  await sync();
  const iterations = Math.max(
    1,
    Math.min(MAX_ITERATIONS, Math.round(BATCH_MS / Math.max(first.wallMs, 0.01))),
  );
  const ms: number[] = [], wall: number[] = [];
  let method: "timestamp" | "wall" = "timestamp";
  let why = "";
  for (let r = 0; r < runs; r++) {
    const t = await timeGpu(fn, { iterations });
    ms.push(t.ms);
    wall.push(t.wallMs);
    if (t.method === "wall") {
      method = "wall";
      why ||= t.note;
    }
  }
  const w = median(wall), m = method === "wall" ? w : median(ms);
  return {
    ms: m,
    method,
    wallMs: w,
    iterations,
    runs,
    note: `${method}, median of ${runs} batches × ${iterations}` +
      (method === "timestamp" ? `, wall ${w.toPrecision(3)} ms` : "") + (why ? `; ${why}` : ""),
  };
}
