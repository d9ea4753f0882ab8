/**
 * Views (reshape, permute, slice, expand, squeeze) cost no kernel: they change shape, strides and
 * offset over the same storage. `dense` copies only when a kernel needs contiguous data.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import {
  contiguousStrides,
  disposeCopy,
  empty,
  numel,
  type Shape,
  Tensor,
  view,
} from "../tensor.ts";
import { record } from "../autograd.ts";
import { type RangeBinding, rangeBinding, splitViews, viewOf, type ViewRange } from "../split.ts";
import {
  COPY_WORKGROUP as WG,
  STRIDED_COPY_UNIFORMS,
  STRIDED_WRITE_UNIFORMS,
  stridedCopyKernel,
  stridedWriteKernel,
} from "../../kernels/view.ts";
import { dims8 } from "../../kernels/common.ts";
import { fill } from "./elementwise.ts";

function normAxis(axis: number, rank: number, what = "axis"): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${what} ${axis} is out of range for rank ${rank}`);
  return a;
}
export { normAxis };

/**
 * Runs a strided copy (gather or scatter) over `views` of `shape`, split into leading-dim chunks
 * over the binding limit: `launch` dispatches one chunk of `n` elements, given the views' ranges
 * (in `views` order) and the chunk's shape as dims8.
 */
function eachChunk(
  op: string,
  shape: Shape,
  views: ViewRange[],
  launch: (ranges: RangeBinding[], n: number, shape8: number[]) => void,
): void {
  for (const ch of splitViews(op, shape, views)) {
    launch(ch.views.map(rangeBinding), numel(ch.shape), dims8(ch.shape));
  }
}

/** Dense copy of `x` (raw; no autograd); split into leading-dim ranges over the binding limit. */
function copyRaw(x: Tensor): Tensor {
  const out = empty(x.shape, x.dtype);
  if (out.size === 0) return out;
  const dt = x.dtype === "f16" ? "f32" : x.dtype;
  eachChunk("dense", x.shape, [viewOf(x), viewOf(out)], ([rx, ry], n, shape) => {
    const p = STRIDED_COPY_UNIFORMS.pack({
      n,
      rank: x.rank,
      off: rx.off,
      yOff: ry.off,
      shape,
      st: dims8(x.strides, 0),
    });
    dispatch(stridedCopyKernel(dt), [rx.binding, ry.binding], p, grid1d(n, WG));
  });
  return out;
}

/**
 * `x` itself if a kernel can bind it directly, else a dense copy. With `force`, always a new tensor
 * the caller owns (a copy when `x` is already dense would be wasteful, so an alias is returned).
 */
export function dense(x: Tensor, force = false): Tensor {
  x.assertAlive();
  if (x.isDense()) return force ? view(x, x.shape, x.strides, x.offset) : x;
  const y = copyRaw(x);
  return record("dense", [x], y, (g) => [g]);
}

/** Writes dense `src` into the (strided) view `dst` of another tensor's storage (raw). */
export function writeInto(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size) {
    throw new Error(`writeInto: sizes differ ([${dst.shape}] vs [${src.shape}])`);
  }
  if (dst.size === 0) return;
  const s = dense(src);
  const views = [viewOf(s, dst.shape, contiguousStrides(dst.shape)), viewOf(dst)];
  eachChunk("writeInto", dst.shape, views, ([rs, rd], n, shape) => {
    const p = STRIDED_WRITE_UNIFORMS.pack({
      n,
      rank: dst.rank,
      off: rd.off,
      srcOff: rs.off,
      shape,
      st: dims8(dst.strides, 0),
    });
    dispatch(stridedWriteKernel(dst.dtype), [rs.binding, rd.binding], p, grid1d(n, WG));
  });
  disposeCopy(s, src);
}

/** Reshape; a view when the layout allows, else a copy. One dim may be -1. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const sh = shape.slice();
  const neg = sh.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(sh.filter((_, i) => i !== neg));
    sh[neg] = rest === 0 ? 0 : x.size / rest;
  }
  if (numel(sh) !== x.size || sh.some((s) => !Number.isInteger(s) || s < 0)) {
    throw new Error(`reshape: cannot view [${x.shape}] (${x.size} elements) as [${shape}]`);
  }
  const src = x.isContiguous() ? x : dense(x);
  const y = view(src, sh, contiguousStrides(sh), src.offset);
  disposeCopy(src, x);
  return record("reshape", [x], y, (g) => [reshape(g, x.shape)]);
}

export const flatten = (x: Tensor, start = 0): Tensor =>
  reshape(x, [...x.shape.slice(0, start), numel(x.shape.slice(start))]);

/** Permutes dims (a view). */
export function permute(x: Tensor, perm: number[]): Tensor {
  if (perm.length !== x.rank || new Set(perm.map((p) => normAxis(p, x.rank))).size !== x.rank) {
    throw new Error(`permute: [${perm}] is not a permutation of ${x.rank} dims`);
  }
  const p = perm.map((a) => normAxis(a, x.rank));
  const y = view(x, p.map((a) => x.shape[a]), p.map((a) => x.strides[a]), x.offset);
  const inv = new Array<number>(p.length);
  p.forEach((a, i) => inv[a] = i);
  return record("permute", [x], y, (g) => [permute(g, inv)]);
}

/** Swaps two dims (a view). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const perm = [...Array(x.rank).keys()];
  const i = normAxis(a, x.rank), j = normAxis(b, x.rank);
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}

/** x[start:end:step] along `axis` (a view); negative indices count from the end. */
export function slice(x: Tensor, axis: number, start: number, end?: number, step = 1): Tensor {
  const a = normAxis(axis, x.rank);
  const n = x.shape[a];
  if (step < 1 || !Number.isInteger(step)) {
    throw new Error(`slice: step must be a positive integer, got ${step}`);
  }
  let s = start < 0 ? start + n : start;
  let e = end === undefined ? n : end < 0 ? end + n : end;
  s = Math.min(Math.max(s, 0), n);
  e = Math.min(Math.max(e, s), n);
  const len = Math.ceil((e - s) / step);
  const shape = x.shape.slice();
  shape[a] = len;
  const strides = x.strides.slice();
  strides[a] = x.strides[a] * step;
  const y = view(x, shape, strides, x.offset + s * x.strides[a]);
  return record("slice", [x], y, (g) => {
    const z = fill(x.shape, 0);
    writeInto(slice(z, a, s, e, step), g);
    return [z];
  });
}

/** Selects index `i` along `axis`, removing it. */
export function select(x: Tensor, axis: number, i: number): Tensor {
  const a = normAxis(axis, x.rank);
  return squeeze(slice(x, a, i, i + 1), a);
}

/**
 * Splits dim `axis` into `sizes` (their product its length): always a view, strided or not (a
 * reshape of a non-contiguous tensor copies).
 */
export function unflatten(x: Tensor, axis: number, sizes: number[]): Tensor {
  const a = normAxis(axis, x.rank);
  if (sizes.reduce((p, s) => p * s, 1) !== x.shape[a] || sizes.some((s) => !(s >= 0))) {
    throw new Error(`unflatten: [${sizes}] does not split dim ${axis} of [${x.shape}]`);
  }
  const inner = sizes.map((_, i) => sizes.slice(i + 1).reduce((p, s) => p * s, 1) * x.strides[a]);
  const shape = [...x.shape.slice(0, a), ...sizes, ...x.shape.slice(a + 1)];
  const strides = [...x.strides.slice(0, a), ...inner, ...x.strides.slice(a + 1)];
  const y = view(x, shape, strides, x.offset);
  return record("unflatten", [x], y, (g) => [reshape(g, x.shape)]);
}

/** Inserts a size-1 dim (a view, strided or not). */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normAxis(axis, x.rank + 1);
  const shape = x.shape.slice(), strides = x.strides.slice();
  shape.splice(a, 0, 1);
  strides.splice(a, 0, a < x.rank ? x.strides[a] * x.shape[a] : 1);
  const y = view(x, shape, strides, x.offset);
  return record("unsqueeze", [x], y, (g) => [reshape(g, x.shape)]);
}

/** Removes size-1 dims (all, or the given one); a view, strided or not (select of a permute). */
export function squeeze(x: Tensor, axis?: number): Tensor {
  let keep: number[];
  if (axis === undefined) keep = [...x.shape.keys()].filter((i) => x.shape[i] !== 1);
  else {
    const a = normAxis(axis, x.rank);
    if (x.shape[a] !== 1) throw new Error(`squeeze: dim ${axis} of [${x.shape}] is not 1`);
    keep = [...x.shape.keys()].filter((i) => i !== a);
  }
  const y = view(x, keep.map((i) => x.shape[i]), keep.map((i) => x.strides[i]), x.offset);
  return record("squeeze", [x], y, (g) => [reshape(g, x.shape)]);
}

/** Broadcasts to `shape` as a view (stride 0 on expanded dims). */
export function expand(x: Tensor, shape: Shape): Tensor {
  if (shape.length < x.rank) throw new Error(`expand: [${x.shape}] has more dims than [${shape}]`);
  const lead = shape.length - x.rank;
  const strides = shape.map((s, i) => {
    if (i < lead) return 0;
    const d = x.shape[i - lead];
    if (d === s) return x.strides[i - lead];
    if (d === 1) return 0;
    throw new Error(`expand: cannot expand [${x.shape}] to [${shape}]`);
  });
  const y = view(x, shape, strides, x.offset);
  // The autograd engine sums the gradient back to x's shape.
  return record("expand", [x], y, (g) => [g]);
}
