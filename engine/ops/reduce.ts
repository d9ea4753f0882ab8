/** Reductions over any axes (sum, mean, max, min, argmax, argmin, var) and `sumTo` for broadcasting. */
import { dispatch, grid1d } from "../dispatch.ts";
import { contiguousStrides, empty, type Shape, Tensor, view } from "../tensor.ts";
import { record } from "../autograd.ts";
import {
  REDUCE_LARGE_WG,
  REDUCE_SMALL_WG,
  REDUCE_UNIFORMS,
  reduceKernel,
  type ReduceOp,
} from "../../kernels/reduce.ts";
import { dims8 } from "../../kernels/common.ts";
import { binaryRaw, div, mul, sub } from "./elementwise.ts";
import { expand, normAxis, reshape, writeInto } from "./view.ts";
import { boundBytes, fits, rangeBinding, viewOf } from "../split.ts";
import { bindingLimit } from "../routing.ts";
import { gpu } from "../device.ts";

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

/**
 * Whether a reduction takes a workgroup per output (a tree sum over its lanes) rather than a
 * thread per output. GPUs: long reductions, or mid-length ones with few outputs. Software adapters:
 * only with few outputs (< 64) or long ones (> 4096, which also bounds a thread's sequential f32
 * sum): there a workgroup's lanes run as SIMD batches that meet at every barrier of the tree, so
 * ADL's channel mean of [2, 2048, 16, 16] (512 outputs of 2048) took 54 ms of CPU a workgroup per
 * output and 3–6 ms a thread per output (under load; BENCHMARKS.md "Training step").
 */
function largeReduction(inner: number, nOut: number): boolean {
  if (gpu().isSoftware) return inner > 4096 || (inner >= 32 && nOut < 64);
  return inner >= 256 || (inner >= 32 && nOut < 2048);
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
  const xv = viewOf(x);
  if (x.size > 0 && !fits(xv)) return reduceSplit(op, x, ax, keepdim);
  const out = empty(keptShape(x, ax, keepdim), op === "argmax" || op === "argmin" ? "i32" : "f32");
  const nOut = out.size;
  if (nOut === 0) return out;
  const rx = rangeBinding(xv);
  const large = largeReduction(inner, nOut);
  // llvmpipe/lavapipe silently ends an invocation's loops after 65535 iterations: beyond CHUNK
  // elements per output, workgroups reduce chunks and a second pass combines them.
  const chunks = large && inner > REDUCE_CHUNK ? Math.ceil(inner / REDUCE_CHUNK) : 1;
  if (chunks > 1 && (op === "argmax" || op === "argmin")) {
    throw new Error(
      `${op}: ${inner} elements per output exceed the ${REDUCE_CHUNK} one pass handles`,
    );
  }
  const target = chunks > 1 ? empty([nOut, chunks]) : out;
  const p = REDUCE_UNIFORMS.pack({
    nOut,
    inner,
    keptRank: kDims.length,
    redRank: ax.length,
    off: rx.off,
    chunks,
    chunkLen: REDUCE_CHUNK,
    kShape: dims8(kDims.map((i) => x.shape[i])),
    kSt: dims8(kDims.map((i) => x.strides[i]), 0),
    rShape: dims8(ax.map((i) => x.shape[i])),
    rSt: dims8(ax.map((i) => x.strides[i]), 0),
  });
  dispatch(
    reduceKernel(op, large),
    [rx.binding, target.binding()],
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

/**
 * A reduction of a view too large for one binding: its outermost dim of size > 1 is cut into
 * ranges that each reduce on their own (recursively, if still too large), then the partial
 * results are put side by side and reduced once more along that dim when it is a reduced one.
 */
function reduceSplit(op: ReduceOp, x: Tensor, ax: number[], keepdim: boolean): Tensor {
  if (op === "argmax" || op === "argmin") {
    throw new Error(`${op}: [${x.shape}] is too large for one binding and ${op} does not split`);
  }
  const d = x.shape.findIndex((s) => s > 1);
  const n = x.shape[d];
  const c = Math.min(n, Math.max(2, Math.ceil(boundBytes(viewOf(x)) / bindingLimit())));
  const k = Math.ceil(n / c);
  const parts: Tensor[] = [];
  for (let lo = 0; lo < n; lo += k) {
    const shape = x.shape.slice();
    shape[d] = Math.min(k, n - lo);
    const sub = view(x, shape, x.strides, x.offset + lo * x.strides[d]);
    parts.push(reduceRaw(op, sub, ax, true));
    sub.dispose();
  }
  const shape = parts[0].shape.slice();
  shape[d] = parts.reduce((a, p) => a + p.shape[d], 0);
  const cat = empty(shape);
  let at = 0;
  for (const p of parts) {
    const dst = view(cat, p.shape, cat.strides, at * cat.strides[d]);
    writeInto(dst, p);
    at += p.shape[d];
    dst.dispose();
    p.dispose();
  }
  const red = ax.includes(d) ? reduceRaw(op, cat, [d], true) : cat;
  if (red !== cat) cat.dispose();
  const kept = keptShape(x, ax, keepdim);
  const y = view(red, kept, contiguousStrides(kept), red.offset);
  red.dispose();
  return y;
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
