/** Reductions over any axes (sum, mean, max, min, argmax, argmin, var) and `sumTo` for broadcasting. */
import { dispatch, grid1d, Params } from "../dispatch.ts";
import { contiguousStrides, empty, type Shape, Tensor, view } from "../tensor.ts";
import { record } from "../autograd.ts";
import {
  REDUCE_LARGE_WG,
  REDUCE_SMALL_WG,
  reduceKernel,
  type ReduceOp,
} from "../../kernels/reduce.ts";
import { dims8 } from "../../kernels/common.ts";
import { binaryRaw, div, mul, sub } from "./elementwise.ts";
import { expand, normAxis, reshape } from "./view.ts";

function axesOf(x: Tensor, axes?: number | number[]): number[] {
  if (axes === undefined) return [...Array(x.rank).keys()];
  const list = (typeof axes === "number" ? [axes] : axes).map((a) => normAxis(a, x.rank));
  return [...new Set(list)].sort((a, b) => a - b);
}

function keptShape(x: Tensor, axes: number[], keepdim: boolean): number[] {
  const out: number[] = [];
  x.shape.forEach((s, i) => {
    if (!axes.includes(i)) out.push(s);
    else if (keepdim) out.push(1);
  });
  return out;
}

/** Raw reduction (no autograd); result has the kept dims (size-1 dims where `keepdim`). */
export function reduceRaw(
  op: ReduceOp,
  x: Tensor,
  axes?: number | number[],
  keepdim = false,
): Tensor {
  x.assertAlive();
  if (x.dtype !== "f32") throw new Error(`${op}: expected an f32 tensor, got ${x.dtype}`);
  const ax = axesOf(x, axes);
  const kDims = [...Array(x.rank).keys()].filter((i) => !ax.includes(i));
  const inner = ax.reduce((p, a) => p * x.shape[a], 1);
  if (inner === 0 && op !== "sum") {
    throw new Error(`${op}: cannot reduce an empty dimension of [${x.shape}]`);
  }
  const out = empty(keptShape(x, ax, keepdim), op === "argmax" || op === "argmin" ? "i32" : "f32");
  const nOut = out.size;
  if (nOut === 0) return out;
  const large = inner >= 256 || (inner >= 32 && nOut < 2048);
  // llvmpipe/lavapipe silently ends an invocation's loops after 65535 iterations: beyond CHUNK
  // elements per output, workgroups reduce chunks and a second pass combines them.
  const chunks = large && inner > REDUCE_CHUNK ? Math.ceil(inner / REDUCE_CHUNK) : 1;
  if (chunks > 1 && (op === "argmax" || op === "argmin")) {
    throw new Error(
      `${op}: ${inner} elements per output exceed the ${REDUCE_CHUNK} one pass handles`,
    );
  }
  const target = chunks > 1 ? empty([nOut, chunks]) : out;
  const p = new Params().u32(
    nOut,
    inner,
    kDims.length,
    ax.length,
    x.offset,
    chunks,
    REDUCE_CHUNK,
    0,
  )
    .u32(...dims8(kDims.map((i) => x.shape[i])))
    .u32(...dims8(kDims.map((i) => x.strides[i]), 0))
    .u32(...dims8(ax.map((i) => x.shape[i])))
    .u32(...dims8(ax.map((i) => x.strides[i]), 0));
  dispatch(
    reduceKernel(op, large),
    [x.storageBinding(), target.binding()],
    p,
    large ? grid1d(nOut * chunks, 1) : grid1d(nOut, REDUCE_SMALL_WG),
  );
  if (chunks > 1) {
    out.dispose();
    const combined = reduceRaw(op, target, 1);
    target.dispose();
    const shape = keptShape(x, ax, keepdim);
    const y = view(combined, shape, contiguousStrides(shape), 0);
    combined.dispose();
    return y;
  }
  return out;
}

/** Elements one workgroup reduces in one pass (16384 loop iterations per invocation). */
export const REDUCE_CHUNK = REDUCE_LARGE_WG * 16384;

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = axesOf(x, axes);
  const y = reduceRaw("sum", x, ax, keepdim);
  return record("sum", [x], y, (g) => [expand(reshape(g, keptShape(x, ax, true)), x.shape)]);
}

export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = axesOf(x, axes);
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  return div(sum(x, ax, keepdim), n);
}

function extremum(op: "max" | "min", x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = axesOf(x, axes);
  const y = reduceRaw(op, x, ax, keepdim);
  // Ties share the gradient evenly (as torch.amax/amin).
  return record(op, [x], y, (g) => {
    const yk = reshape(y, keptShape(x, ax, true));
    const mask = binaryRaw("eq", x, yk);
    const count = reduceRaw("sum", mask, ax, true);
    return [div(mul(mask, reshape(g, keptShape(x, ax, true))), count)];
  }, [x, y]);
}
export const max = (x: Tensor, axes?: number | number[], keepdim = false): Tensor =>
  extremum("max", x, axes, keepdim);
export const min = (x: Tensor, axes?: number | number[], keepdim = false): Tensor =>
  extremum("min", x, axes, keepdim);

/** Index of the maximum along `axis` (first on ties), as i32. */
export function argmax(x: Tensor, axis: number, keepdim = false): Tensor {
  return reduceRaw("argmax", x, axis, keepdim);
}
export function argmin(x: Tensor, axis: number, keepdim = false): Tensor {
  return reduceRaw("argmin", x, axis, keepdim);
}

/** Variance over `axes` with Bessel's correction by default (as torch.var). */
export function variance(
  x: Tensor,
  axes?: number | number[],
  opts: { correction?: number; keepdim?: boolean } = {},
): Tensor {
  const ax = axesOf(x, axes);
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  const c = opts.correction ?? 1;
  const m = mean(x, ax, true);
  const d = sub(x, m);
  return div(sum(mul(d, d), ax, opts.keepdim ?? false), Math.max(n - c, 0));
}

/** Sums a broadcast gradient back to `shape` (leading dims and size-1 dims). */
export function sumTo(x: Tensor, shape: Shape): Tensor {
  const lead = x.rank - shape.length;
  if (lead < 0) throw new Error(`sumTo: [${x.shape}] has fewer dims than [${shape}]`);
  const axes: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    if (i < lead) axes.push(i);
    else if (shape[i - lead] === 1 && x.shape[i] !== 1) axes.push(i);
    else if (shape[i - lead] !== x.shape[i]) {
      throw new Error(`sumTo: cannot reduce [${x.shape}] to [${shape}]`);
    }
  }
  if (!axes.length) return x;
  return reshape(sum(x, axes, true), shape);
}
