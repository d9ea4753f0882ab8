/**
 * Seeded, counter-based random numbers (Philox-4x32-10, kernels/random.ts) on the GPU, with a CPU
 * mirror that produces the same values for host-side sampling (prompt points, shuffles).
 *
 * Every draw — GPU or host — consumes one value of the generator's call counter; element i of
 * that draw depends only on (seed, counter, i). So two generators with the same seed that make the
 * same sequence of calls give the same numbers, whatever the workgroup size, dispatch order or
 * whether a given call ran on the GPU or the host mirror.
 */
import type { Shape, Tensor } from "./tensor.ts";
import { randomRaw, type RngStream } from "./ops/random.ts";

const M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;
const TWO32 = 4294967296;

/** High 32 bits of the 64-bit product of two u32 values. */
function mulhi(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const mid = ah * bl + al * bh; // < 2^33, exact
  return (ah * bh + Math.floor((mid * 65536 + al * bl) / TWO32)) >>> 0;
}

/** Philox-4x32-10 of counter (c0..c3) under key (k0, k1): four u32 words. */
export function philox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
): Uint32Array {
  c0 >>>= 0, c1 >>>= 0, c2 >>>= 0, c3 >>>= 0, k0 >>>= 0, k1 >>>= 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0, n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
    k0 = (k0 + W0) >>> 0, k1 = (k1 + W1) >>> 0;
  }
  return Uint32Array.of(c0, c1, c2, c3);
}

/** u32 → [0, 1) with 24 random bits (exact in f32), as the GPU kernel. */
const unit = (x: number): number => (x >>> 8) * 5.9604644775390625e-8;

/** A serialisable generator state (seed and call counter), for checkpoints. */
export interface RngState {
  seed: number;
  counter: number;
}

export class Rng {
  readonly seed: number;
  /** Number of draws made so far (the stream of the next draw). */
  counter = 0;

  /** `seed`: a non-negative safe integer (both 32-bit halves are used as the Philox key). */
  constructor(seed: number, counter = 0) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new Error(`Rng: seed must be a non-negative safe integer, got ${seed}`);
    }
    if (!Number.isSafeInteger(counter) || counter < 0) {
      throw new Error(`Rng: bad counter ${counter}`);
    }
    this.seed = seed;
    this.counter = counter;
  }

  get state(): RngState {
    return { seed: this.seed, counter: this.counter };
  }
  static fromState(s: RngState): Rng {
    return new Rng(s.seed, s.counter);
  }

  /** The key/stream of the next draw; advances the counter. */
  private take(): RngStream {
    const c = this.counter++;
    return {
      key: [this.seed % TWO32, Math.floor(this.seed / TWO32)],
      stream: [c % TWO32, Math.floor(c / TWO32)],
    };
  }

  // ------------------------------------------------------------ GPU draws

  /** Raw Philox words (u32). */
  bits(shape: Shape): Tensor {
    return randomRaw("bits", shape, this.take());
  }
  /** Uniform in [lo, hi) (24-bit resolution). */
  uniform(shape: Shape, lo = 0, hi = 1): Tensor {
    return randomRaw("uniform", shape, this.take(), lo, hi);
  }
  /** Normal(mean, std²) by Box–Muller. */
  normal(shape: Shape, mean = 0, std = 1): Tensor {
    return randomRaw("normal", shape, this.take(), mean, std);
  }
  /** 1.0 with probability p, else 0.0. */
  bernoulli(shape: Shape, p: number): Tensor {
    if (!(p >= 0 && p <= 1)) throw new Error(`bernoulli: p must be in [0, 1], got ${p}`);
    return randomRaw("bernoulli", shape, this.take(), p, 0);
  }

  // ------------------------------------------------------------ host mirror (same values)

  /** What `bits(shape)` would give, computed on the host. */
  bitsHost(n: number): Uint32Array {
    return hostWords(this.take(), n);
  }
  /** What `uniform([n], lo, hi)` would give (bit-exact). */
  uniformHost(n: number, lo = 0, hi = 1): Float32Array {
    const w = hostWords(this.take(), n);
    const flo = Math.fround(lo), span = Math.fround(Math.fround(hi) - flo);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = flo + Math.fround(span * unit(w[i]));
    return out;
  }
  /** What `normal([n], mean, std)` would give (float64 transcendentals: equal to ~1e-6). */
  normalHost(n: number, mean = 0, std = 1): Float32Array {
    const w = hostWords(this.take(), n + 1);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const pair = i & ~1;
      const u1 = ((w[pair] >>> 8) + 1) * 5.9604644775390625e-8, u2 = unit(w[pair + 1]);
      const r = Math.sqrt(-2 * Math.log(u1)), th = 2 * Math.PI * u2;
      out[i] = mean + std * r * (i & 1 ? Math.sin(th) : Math.cos(th));
    }
    return out;
  }
  /** What `bernoulli([n], p)` would give (bit-exact). */
  bernoulliHost(n: number, p: number): Float32Array {
    const w = hostWords(this.take(), n);
    const fp = Math.fround(p);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = unit(w[i]) < fp ? 1 : 0;
    return out;
  }
  /** n integers uniform in [lo, hi) (32-bit resolution; host only). */
  integersHost(n: number, lo: number, hi: number): number[] {
    if (!(Number.isInteger(lo) && Number.isInteger(hi) && hi > lo)) {
      throw new Error(`integersHost: need integers lo < hi, got ${lo}, ${hi}`);
    }
    const w = hostWords(this.take(), n);
    return Array.from(w, (x) => lo + Math.floor((x / TWO32) * (hi - lo)));
  }
  /** A uniformly random permutation of 0..n-1 (Fisher–Yates; host only). */
  permutationHost(n: number): number[] {
    const w = hostWords(this.take(), n);
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor((w[i] / TWO32) * (i + 1));
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  }
}

/** The first n Philox words of a draw (block i/4, lane i%4). */
function hostWords(src: RngStream, n: number): Uint32Array {
  const out = new Uint32Array(Math.ceil(n / 4) * 4);
  for (let b = 0; b < out.length / 4; b++) {
    out.set(philox4x32(b, 0, src.stream[0], src.stream[1], src.key[0], src.key[1]), 4 * b);
  }
  return out.subarray(0, n);
}
