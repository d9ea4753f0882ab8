/**
 * Parameter initialisers (host-side, seeded, uploaded once): PyTorch's defaults and the ones the
 * models ask for. Host-side because initialisation runs once per model and must be reproducible
 * from a seed whatever the adapter.
 */
import { type Tensor, tensor } from "../tensor.ts";

/** A seeded host PRNG (splitmix32 → uniform [0,1)). */
export class HostRng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x9e3779b9) >>> 0;
    let z = this.s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  }
  normal(): number {
    const u = Math.max(this.next(), 1e-12), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

/** Fan-in and fan-out as torch.nn.init computes them ([out, in, ...kernel]). */
function fans(shape: number[]): [number, number] {
  const rf = shape.slice(2).reduce((a, b) => a * b, 1);
  return [(shape[1] ?? 1) * rf, shape[0] * rf];
}

export function uniform(shape: number[], lo: number, hi: number, rng: HostRng): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = lo + (hi - lo) * rng.next();
  return tensor(d, shape);
}

export function normal(shape: number[], mean: number, std: number, rng: HostRng): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = mean + std * rng.normal();
  return tensor(d, shape);
}

export function constant(shape: number[], value: number): Tensor {
  return tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value), shape);
}

/** torch.nn.init.xavier_uniform_. */
export function xavierUniform(shape: number[], rng: HostRng, gain = 1): Tensor {
  const [fi, fo] = fans(shape);
  const a = gain * Math.sqrt(6 / (fi + fo));
  return uniform(shape, -a, a, rng);
}

/** PyTorch's default for Conv/Linear weights: kaiming_uniform_(a=√5) = U(±1/√fan_in). */
export function defaultWeight(shape: number[], rng: HostRng): Tensor {
  const b = 1 / Math.sqrt(fans(shape)[0]);
  return uniform(shape, -b, b, rng);
}

/** PyTorch's default bias: U(±1/√fan_in) of the weight. */
export function defaultBias(n: number, fanIn: number, rng: HostRng): Tensor {
  const b = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  return uniform([n], -b, b, rng);
}
