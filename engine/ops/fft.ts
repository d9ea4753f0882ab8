/**
 * Discrete Fourier transforms on complex tensors held as a pair {re, im} of f32 tensors of the
 * same shape. Power-of-two lengths use radix-2 Stockham passes (kernels/fft.ts); every other
 * length uses Bluestein's chirp-z algorithm (two power-of-two transforms of length m ≥ 2n − 1).
 * A transform returns re and im as views of one [2, ...shape] tensor.
 *
 * Normalisation follows numpy/torch: "backward" (default) scales the inverse by 1/n, "forward"
 * scales the forward transform by 1/n, "ortho" both by 1/√n. The DFT is linear, so its gradient
 * is the conjugate transpose: the opposite-direction transform with the same scale.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import { disposeCopy, empty, type Tensor, tensor } from "../tensor.ts";
import { record } from "../autograd.ts";
import { keep, tidy } from "../scope.ts";
import {
  FFT_LOCAL_MAX,
  FFT_UNIFORMS,
  FFT_WG,
  type FftFlags,
  fftLocalKernel,
  fftPassKernel,
  fftRowsPerGroup,
} from "../../kernels/fft.ts";
import { dense, normAxis, select } from "./view.ts";
import { roll } from "./shape.ts";

/** A complex tensor: real and imaginary parts of identical shape. */
export interface Complex {
  re: Tensor;
  im: Tensor;
}

export type FftNorm = "backward" | "forward" | "ortho";

export interface FftOptions {
  inverse?: boolean;
  norm?: FftNorm;
}

const isPow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(n, 1)));

// ---------------------------------------------------------------- host-side plans (float64)

/** In-place float64 radix-2 FFT (forward, unnormalised) for building Bluestein's filter. */
function hostFft(re: Float64Array, im: Float64Array): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const h = len >> 1;
    for (let k = 0; k < h; k++) {
      const a = (-2 * Math.PI * k) / len, wr = Math.cos(a), wi = Math.sin(a);
      for (let s = 0; s < n; s += len) {
        const p = s + k, q = p + h;
        const tr = re[q] * wr - im[q] * wi, ti = re[q] * wi + im[q] * wr;
        re[q] = re[p] - tr, im[q] = im[p] - ti;
        re[p] += tr, im[p] += ti;
      }
    }
  }
}

interface Plan {
  m: number;
  /** Pow2: twiddles only. Bluestein: twiddles | chirp (n) | filter (m). */
  table: Tensor;
  pre: number;
  post: number;
  /** Bluestein's second pass: twiddles | chirp (n). */
  table2?: Tensor;
}

const plans = new Map<string, Plan>();

function twiddles(m: number, extra: number): Float32Array {
  const t = new Float32Array(2 * (Math.max(1, m / 2) + extra));
  for (let k = 0; k < m / 2; k++) {
    const a = (-2 * Math.PI * k) / m;
    t[2 * k] = Math.cos(a);
    t[2 * k + 1] = Math.sin(a);
  }
  return t;
}

function planFor(n: number, inverse: boolean): Plan {
  const key = isPow2(n) ? `p${n}` : `b${n}${inverse ? "i" : "f"}`;
  let plan = plans.get(key);
  if (plan) return plan;
  if (isPow2(n)) {
    plan = { m: n, table: keep(tensor(twiddles(n, 0))), pre: 0, post: 0 };
  } else {
    const m = nextPow2(2 * n - 1);
    const tw = Math.max(1, m / 2);
    const sigma = inverse ? 1 : -1;
    // Chirp c_j = exp(σ·πi·j²/n) (j² reduced mod 2n so the angle stays small).
    const cr = new Float64Array(n), ci = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      const a = (sigma * Math.PI * ((j * j) % (2 * n))) / n;
      cr[j] = Math.cos(a);
      ci[j] = Math.sin(a);
    }
    // Filter b_d = conj(c_d) on d = −(n−1)..n−1, wrapped into length m, then transformed.
    const br = new Float64Array(m), bi = new Float64Array(m);
    for (let d = 0; d < n; d++) {
      br[d] = cr[d], bi[d] = -ci[d];
      if (d) br[m - d] = cr[d], bi[m - d] = -ci[d];
    }
    hostFft(br, bi);
    const t1 = twiddles(m, n + m), t2 = twiddles(m, n);
    for (let j = 0; j < n; j++) {
      t1[2 * (tw + j)] = cr[j], t1[2 * (tw + j) + 1] = ci[j];
      t2[2 * (tw + j)] = cr[j], t2[2 * (tw + j) + 1] = ci[j];
    }
    for (let k = 0; k < m; k++) t1[2 * (tw + n + k)] = br[k], t1[2 * (tw + n + k) + 1] = bi[k];
    plan = { m, table: keep(tensor(t1)), pre: tw, post: tw + n, table2: keep(tensor(t2)) };
  }
  plans.set(key, plan);
  return plan;
}

// ---------------------------------------------------------------- launches

interface Planar {
  /** Storage binding and element offsets of the real and (optional) imaginary parts. */
  re: Tensor;
  offRe: number;
  im: Tensor | null;
  offIm: number;
}

interface Run {
  m: number;
  flags: FftFlags;
  rows: number;
  nIn: number;
  nOut: number;
  innerIn: number;
  innerOut: number;
  scale: number;
  table: Tensor;
  pre: number;
  post: number;
}

function params(r: Run, src: Planar, outIm: number, ns = 0): Uint8Array {
  return FFT_UNIFORMS.pack({
    rows: r.rows,
    nIn: r.nIn,
    nOut: r.nOut,
    inner: r.innerIn,
    offRe: src.offRe,
    offIm: src.offIm,
    outIm,
    tw: 0,
    pre: r.pre,
    post: r.post,
    scale: r.scale,
    m: r.m,
    ns,
    innerOut: r.innerOut,
  });
}

/** Runs one power-of-two transform (local or multi-pass) from `src` into planar `out`. */
function runFft(r: Run, src: Planar, out: Tensor, outIm: number): void {
  const inB = [src.re.storageBinding()];
  if (!r.flags.real) inB.push(src.im!.storageBinding());
  if (r.m <= FFT_LOCAL_MAX) {
    const groups = Math.ceil(r.rows / fftRowsPerGroup(r.m));
    dispatch(
      fftLocalKernel(r.m, r.flags),
      [...inB, r.table.binding(), out.binding()],
      params(r, src, outIm),
      grid1d(groups, 1),
    );
    return;
  }
  const L = Math.round(Math.log2(r.m));
  const bufs = [empty([r.rows * r.m * 2]), empty([r.rows * r.m * 2])];
  const grid = grid1d((r.rows * r.m) / 2, FFT_WG);
  for (let s = 0; s < L; s++) {
    const first = s === 0, last = s === L - 1;
    const ins = first ? inB : [bufs[s % 2].binding()];
    const o = last ? out.binding() : bufs[(s + 1) % 2].binding();
    dispatch(
      fftPassKernel(r.flags, first, last),
      [...ins, r.table.binding(), o],
      params(r, src, outIm, 1 << s),
      grid,
    );
  }
  bufs.forEach((b) => b.dispose());
}

/**
 * Raw transform along `axis` of planar (re, im|null) with a real `scale`: a new dense tensor of
 * shape [2, ...shape] (real part first). No autograd.
 */
function fftRaw(
  re: Tensor,
  im: Tensor | null,
  axis: number,
  inverse: boolean,
  scale: number,
): Tensor {
  re.assertAlive();
  im?.assertAlive();
  if (re.dtype !== "f32" || (im && im.dtype !== "f32")) {
    throw new Error(
      `fft: expected f32 parts, got ${re.dtype}${im ? `/${im.dtype}` : ""} [${re.shape}]`,
    );
  }
  if (im && (im.rank !== re.rank || im.shape.some((s, i) => s !== re.shape[i]))) {
    throw new Error(
      `fft: real part [${re.shape}] and imaginary part [${im.shape}] differ in shape`,
    );
  }
  if (re.rank === 0) throw new Error("fft: needs at least one dim");
  const a = normAxis(axis, re.rank, "fft: axis");
  const n = re.shape[a];
  const out = empty([2, ...re.shape]);
  if (out.size === 0) return out;
  const r = re.isContiguous() ? re : dense(re);
  const i = im ? (im.isContiguous() ? im : dense(im)) : null;
  const inner = re.shape.slice(a + 1).reduce((p, s) => p * s, 1);
  const rows = re.size / n;
  const plan = planFor(n, inverse);
  const src: Planar = { re: r, offRe: r.offset, im: i, offIm: i ? i.offset : 0 };
  const flags: FftFlags = { real: !i, pre: false, post: false, inverse };
  if (plan.m === n) {
    runFft(
      {
        m: n,
        flags,
        rows,
        nIn: n,
        nOut: n,
        innerIn: inner,
        innerOut: inner,
        scale,
        table: plan.table,
        pre: 0,
        post: 0,
      },
      src,
      out,
      re.size,
    );
  } else {
    const m = plan.m;
    const tmp = empty([2, rows, m]);
    runFft(
      {
        m,
        flags: { ...flags, pre: true, post: true, inverse: false },
        rows,
        nIn: n,
        nOut: m,
        innerIn: inner,
        innerOut: 1,
        scale: 1,
        table: plan.table,
        pre: plan.pre,
        post: plan.post,
      },
      src,
      tmp,
      rows * m,
    );
    runFft(
      {
        m,
        flags: { real: false, pre: false, post: true, inverse: true },
        rows,
        nIn: m,
        nOut: n,
        innerIn: 1,
        innerOut: inner,
        scale: scale / m,
        table: plan.table2!,
        pre: 0,
        post: plan.pre,
      },
      { re: tmp, offRe: tmp.offset, im: tmp, offIm: tmp.offset + rows * m },
      out,
      re.size,
    );
    tmp.dispose();
  }
  disposeCopy(r, re);
  disposeCopy(i, im);
  return out;
}

function scaleOf(n: number, inverse: boolean, norm: FftNorm): number {
  if (norm === "ortho") return 1 / Math.sqrt(n);
  if (norm === "backward") return inverse ? 1 / n : 1;
  if (norm === "forward") return inverse ? 1 : 1 / n;
  throw new Error(`fft: unknown norm "${norm}" (backward, forward or ortho)`);
}

function parts(x: Complex | Tensor): [Tensor, Tensor | null] {
  return "storage" in x ? [x as Tensor, null] : [(x as Complex).re, (x as Complex).im ?? null];
}

/**
 * 1-D DFT along `axis` (any length). A real tensor is taken as a complex one with zero imaginary
 * part. Differentiable with respect to both parts.
 */
export function fft(x: Complex | Tensor, axis = -1, opts: FftOptions = {}): Complex {
  const [re, im] = parts(x);
  const inverse = opts.inverse ?? false;
  const a = normAxis(axis, re.rank, "fft: axis");
  const scale = scaleOf(re.shape[a], inverse, opts.norm ?? "backward");
  return tidy(() => {
    const z = fftRaw(re, im, a, inverse, scale);
    const inputs = im ? [re, im] : [re];
    record("fft", inputs, z, (g) => {
      const gz = fftRaw(select(g, 0, 0), select(g, 0, 1), a, !inverse, scale);
      return [select(gz, 0, 0), select(gz, 0, 1)];
    });
    return { re: select(z, 0, 0), im: select(z, 0, 1) };
  });
}

/** Inverse 1-D DFT (numpy's ifft; norm "backward" scales by 1/n). */
export function ifft(x: Complex | Tensor, axis = -1, opts: { norm?: FftNorm } = {}): Complex {
  return fft(x, axis, { ...opts, inverse: true });
}

/** 2-D DFT over the last two dims. */
export function fft2(x: Complex | Tensor, opts: FftOptions = {}): Complex {
  const [re] = parts(x);
  if (re.rank < 2) throw new Error(`fft2: needs at least two dims, got [${re.shape}]`);
  return tidy(() => fft(fft(x, -1, opts), -2, opts));
}

/** Inverse 2-D DFT over the last two dims. */
export function ifft2(x: Complex | Tensor, opts: { norm?: FftNorm } = {}): Complex {
  return fft2(x, { ...opts, inverse: true });
}

function shiftBy(
  x: Complex | Tensor,
  axes: number | number[] | undefined,
  sign: 1 | -1,
  name: string,
): Complex | Tensor {
  const [re, im] = parts(x);
  const ax = axes === undefined
    ? [...Array(re.rank).keys()]
    : (typeof axes === "number" ? [axes] : axes).map((a) => normAxis(a, re.rank, `${name}: axis`));
  const shifts = ax.map((a) => sign * Math.floor(re.shape[a] / 2));
  if ("storage" in x) return roll(x as Tensor, shifts, ax);
  return { re: roll(re, shifts, ax), im: roll(im!, shifts, ax) };
}

/** numpy.fft.fftshift: rolls each axis (all by default) by floor(n/2), zero frequency to the centre. */
export function fftshift<T extends Complex | Tensor>(x: T, axes?: number | number[]): T {
  return shiftBy(x, axes, 1, "fftshift") as T;
}

/** numpy.fft.ifftshift: the inverse of fftshift (rolls by −floor(n/2)); differs for odd n. */
export function ifftshift<T extends Complex | Tensor>(x: T, axes?: number | number[]): T {
  return shiftBy(x, axes, -1, "ifftshift") as T;
}
