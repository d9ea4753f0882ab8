/** Test helpers: one engine init per test file, float64 comparisons, finite-difference gradients. */
import {
  backward,
  F,
  initGpu,
  requireGrad,
  type Tensor,
  tensor,
  tidy,
  tidyAsync,
} from "../../engine/mod.ts";
import { mulberry32 } from "../../engine/mulberry32.ts";

/** Initialises the engine (once per process). */
export async function setup(): Promise<void> {
  await initGpu();
}

/** Deterministic pseudo-random floats in [lo, hi) (mulberry32), for test inputs. */
export function randArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const rnd = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rnd();
  return out;
}

/** Uploads a random tensor. */
export function randTensor(shape: number[], seed: number, lo = -1, hi = 1): Tensor {
  return tensor(randArray(shape.reduce((a, b) => a * b, 1), seed, lo, hi), shape);
}

/**
 * Asserts |actual - expected| <= atol + rtol·|expected| elementwise, reporting the worst element.
 * `expected` is a float64 reference.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { atol?: number; rtol?: number; what?: string } = {},
): void {
  const { atol = 1e-5, rtol = 1e-4, what = "values" } = opts;
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length} != expected ${expected.length}`);
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(atol ${atol}, rtol ${rtol})`,
    );
  }
}

/**
 * Finite-difference gradient check of `f` (inputs → tensor) at `inputs`.
 * The scalar is L = Σ f(x)·R for a fixed random R, so every output element is tested. Compares
 * the analytic gradient along random directions (central differences of L(x ± εv)) and at a few
 * single coordinates. Everything runs in f32 on the GPU, hence the loose default tolerance.
 *
 * The finite differences evaluate `f` exactly as the analytic pass does: inputs that require
 * grad, gradients recorded (then dropped), never under `noGrad`. Code may take another path where
 * no gradient is recorded (ResNet-ADL fuses conv + eval BatchNorm + ReLU there,
 * engine/ops/conv_fused.ts); checking the gradient of one path against differences of another
 * would hide a bug in either, or report one that is not there.
 */
export async function gradCheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: { shape: number[]; data?: Float32Array; lo?: number; hi?: number }[],
  opts: {
    eps?: number;
    rtol?: number;
    atol?: number;
    directions?: number;
    coords?: number;
    seed?: number;
  } = {},
): Promise<void> {
  const { eps = 1e-2, rtol = 2e-2, atol = 2e-3, directions = 2, coords = 3, seed = 7 } = opts;
  const datas = inputs.map((inp, k) =>
    inp.data ??
      randArray(inp.shape.reduce((a, b) => a * b, 1), seed + 31 * k, inp.lo ?? -1, inp.hi ?? 1)
  );
  const leaves = (ds: Float32Array[]) => ds.map((d, k) => requireGrad(tensor(d, inputs[k].shape)));
  const outShape = tidy(() => f(...leaves(datas)).shape.slice());
  const R = randArray(outShape.reduce((a, b) => a * b, 1), seed + 999, -1, 1);
  const Rt = tensor(R, outShape);
  // The graph recorded here is abandoned: tidyAsync frees what its nodes saved.
  const loss = (ds: Float32Array[]): Promise<number> =>
    tidyAsync(() => F.sum(F.mul(f(...leaves(ds)), Rt)).item());
  // Analytic gradients.
  const xs = leaves(datas);
  const L = tidy(() => F.sum(F.mul(f(...xs), Rt)));
  backward(L);
  const grads: Float64Array[] = [];
  for (const x of xs) {
    grads.push(x.grad ? Float64Array.from(await x.grad.data()) : new Float64Array(x.size));
    x.grad?.dispose();
    x.dispose();
  }
  L.dispose();
  const check = async (dirs: Float32Array[], label: string) => {
    let analytic = 0, scale = 0;
    dirs.forEach((v, k) => {
      for (let i = 0; i < v.length; i++) {
        analytic += grads[k][i] * v[i];
        scale += Math.abs(grads[k][i] * v[i]);
      }
    });
    const plus = datas.map((d, k) => d.map((x, i) => x + eps * dirs[k][i]));
    const minus = datas.map((d, k) => d.map((x, i) => x - eps * dirs[k][i]));
    const numeric = ((await loss(plus)) - (await loss(minus))) / (2 * eps);
    const tol = atol + rtol * Math.max(Math.abs(numeric), scale);
    if (!(Math.abs(numeric - analytic) <= tol)) {
      throw new Error(
        `gradCheck ${label}: numeric ${numeric} vs analytic ${analytic} (tolerance ${
          tol.toFixed(5)
        })`,
      );
    }
  };
  for (let d = 0; d < directions; d++) {
    await check(
      datas.map((x, k) => randArray(x.length, seed + 100 * d + k + 1, -1, 1)),
      `direction ${d}`,
    );
  }
  for (let c = 0; c < coords; c++) {
    const k = c % datas.length;
    const idx = Math.floor(randArray(1, seed + 555 + c, 0, 1)[0] * datas[k].length);
    const dirs = datas.map((x, j) => {
      const v = new Float32Array(x.length);
      if (j === k) v[idx] = 1;
      return v;
    });
    await check(dirs, `input ${k} element ${idx}`);
  }
  Rt.dispose();
}

/** Largest magnitude of a reference tensor: the scale for "relative to the tensor" tolerances. */
export function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}
