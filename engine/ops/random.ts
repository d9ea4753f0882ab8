/**
 * GPU random draws (raw launches of the Philox kernel; `Rng` in engine/rng.ts owns the seed and the
 * per-call stream counter) and dropout.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import { empty, type Shape, type Tensor } from "../tensor.ts";
import { RNG_UNIFORMS, RNG_WORKGROUP, rngKernel, type RngMode } from "../../kernels/random.ts";
import { mul } from "./elementwise.ts";

/** Where a draw comes from: the Philox key (seed) and counter words 2..3 (the stream). */
export interface RngStream {
  key: [number, number];
  stream: [number, number];
}

/** A raw draw of `shape` (u32 for "bits", else f32) with parameters a, b (see kernels/random.ts). */
export function randomRaw(mode: RngMode, shape: Shape, src: RngStream, a = 0, b = 0): Tensor {
  const out = empty(shape, mode === "bits" ? "u32" : "f32");
  const n = out.size;
  if (n === 0) return out;
  if (n > 2 ** 34) throw new Error(`random: ${n} elements exceed the generator's 2^34 per call`);
  const p = RNG_UNIFORMS.pack({
    n,
    key0: src.key[0],
    key1: src.key[1],
    s0: src.stream[0],
    s1: src.stream[1],
    a,
    b,
  });
  dispatch(rngKernel(mode), [out.binding()], p, grid1d(Math.ceil(n / 4), RNG_WORKGROUP));
  return out;
}

/** Anything that draws a Bernoulli mask (an `Rng`). */
export interface BernoulliSource {
  bernoulli(shape: Shape, p: number): Tensor;
}

/**
 * Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1−p);
 * the identity when not training or p = 0.
 */
export function dropout(x: Tensor, p: number, rng: BernoulliSource, training = true): Tensor {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout: p must be in [0, 1), got ${p}`);
  if (!training || p === 0) return x;
  const keep = rng.bernoulli(x.shape, 1 - p);
  const scaled = mul(keep, 1 / (1 - p));
  keep.dispose();
  const y = mul(x, scaled);
  scaled.dispose();
  return y;
}
