/**
 * TensorFlow.js WebGPU peer (bench only): the same matmul shapes on the same adapter, timed with
 * tf's own sync (`data()` of the result) around repeated runs.
 */
import type { BenchRow } from "../registry.ts";

type Tf = typeof import("@tensorflow/tfjs-core");

let tfPromise: Promise<Tf> | null = null;

/** Loads tfjs-core + the WebGPU backend and selects it; throws if it does not initialise. */
export function loadTf(): Promise<Tf> {
  tfPromise ??= (async () => {
    const tf = await import("@tensorflow/tfjs-core");
    await import("@tensorflow/tfjs-backend-webgpu");
    const ok = await tf.setBackend("webgpu");
    await tf.ready();
    if (!ok || tf.getBackend() !== "webgpu") {
      throw new Error(`tf.setBackend('webgpu') failed (backend ${tf.getBackend()})`);
    }
    return tf;
  })();
  return tfPromise;
}

/**
 * Median ms of `C = A·B` for A [batch, M, K] (or [M, K] when batch is 1), B [batch, K, N], each
 * run ending in `await c.data()` (so each includes one readback of C; see BENCHMARKS.md).
 */
export async function tfMatmul(
  batch: number,
  M: number,
  N: number,
  K: number,
  runs: number,
  warmup = 1,
): Promise<number> {
  const tf = await loadTf();
  const shapeA = batch > 1 ? [batch, M, K] : [M, K];
  const shapeB = batch > 1 ? [batch, K, N] : [K, N];
  const a = tf.randomUniform(shapeA, -1, 1), b = tf.randomUniform(shapeB, -1, 1);
  const times: number[] = [];
  for (let r = 0; r < warmup + runs; r++) {
    const t0 = performance.now();
    const c = tf.matMul(a as never, b as never);
    await c.data();
    const ms = performance.now() - t0;
    c.dispose();
    if (r >= warmup) times.push(ms);
  }
  a.dispose();
  b.dispose();
  times.sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)];
}

export type { BenchRow };
