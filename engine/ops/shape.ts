/**
 * Shape ops that move data: concat, stack, pad, indexSelect, gather, flip, roll, rot90, repeat,
 * tile, and arange. Forward launch and backward rule side by side (backward of a gather is a
 * deterministic scatter-add without atomics; see kernels/shape.ts).
 */
import { dispatch, grid1d } from "../dispatch.ts";
import {
  contiguousStrides,
  disposeCopy,
  type DType,
  empty,
  type Shape,
  Tensor,
} from "../tensor.ts";
import { record } from "../autograd.ts";
import { tidy } from "../scope.ts";
import { dims8, LOOP_BUDGET } from "../../kernels/common.ts";
import {
  ARANGE_UNIFORMS,
  arangeKernel,
  GATHER_UNIFORMS,
  GATHER_WORKGROUP as WG,
  gatherKernel,
  REMAP_UNIFORMS,
  remapKernel,
  SCATTER_ADD_UNIFORMS,
  scatterAddKernel,
} from "../../kernels/shape.ts";
import { fill } from "./elementwise.ts";
import {
  dense,
  expand,
  normAxis,
  reshape,
  slice,
  transpose,
  unsqueeze,
  writeInto,
} from "./view.ts";

function shapeStr(ts: readonly Tensor[]): string {
  return ts.map((t) => `[${t.shape}]`).join(", ");
}

function fourByte(op: string, t: Tensor): void {
  t.assertAlive();
  if (t.dtype === "f16") {
    throw new Error(`${op}: f16 tensors are not supported (tensor [${t.shape}])`);
  }
}

// ---------------------------------------------------------------- concat / stack / pad

/** Concatenates along `axis` (as torch.cat). All inputs share dtype and every other dim. */
export function concat(ts: Tensor[], axis = 0): Tensor {
  if (!ts.length) throw new Error("concat: needs at least one tensor");
  const first = ts[0];
  const a = normAxis(axis, first.rank, "concat: axis");
  for (const t of ts) {
    fourByte("concat", t);
    const ok = t.rank === first.rank && t.dtype === first.dtype &&
      t.shape.every((s, i) => i === a || s === first.shape[i]);
    if (!ok) {
      throw new Error(
        `concat: along axis ${axis} every tensor needs the same dtype, rank and other dims; got ` +
          `${ts.map((x) => `${x.dtype}[${x.shape}]`).join(", ")}`,
      );
    }
  }
  const shape = first.shape.slice();
  shape[a] = ts.reduce((s, t) => s + t.shape[a], 0);
  const out = empty(shape, first.dtype);
  const starts: number[] = [];
  let off = 0;
  for (const t of ts) {
    starts.push(off);
    if (t.size) {
      const dst = sliceView(out, a, off, t.shape[a]);
      writeInto(dst, t);
      dst.dispose();
    }
    off += t.shape[a];
  }
  return record(
    "concat",
    ts,
    out,
    (g) => ts.map((t, k) => slice(g, a, starts[k], starts[k] + t.shape[a])),
  );
}

/** A plain (unrecorded) view of `x` restricted to [start, start+len) along axis `a`. */
function sliceView(x: Tensor, a: number, start: number, len: number): Tensor {
  const shape = x.shape.slice();
  shape[a] = len;
  return new Tensor(x.storage, shape, x.dtype, x.strides, x.offset + start * x.strides[a]);
}

/** Stacks along a new axis (as torch.stack). */
export function stack(ts: Tensor[], axis = 0): Tensor {
  if (!ts.length) throw new Error("stack: needs at least one tensor");
  const a = normAxis(axis, ts[0].rank + 1, "stack: axis");
  for (const t of ts) {
    if (t.rank !== ts[0].rank || !t.shape.every((s, i) => s === ts[0].shape[i])) {
      throw new Error(`stack: every tensor needs the same shape; got ${shapeStr(ts)}`);
    }
  }
  return tidy(() => concat(ts.map((t) => unsqueeze(t, a)), a));
}

/**
 * Constant padding in torch.nn.functional.pad order: `pads` = [left, right] of the last dim, then
 * [top, bottom] of the one before, and so on. Negative amounts crop. f32 only.
 */
export function pad(x: Tensor, pads: number[], value = 0): Tensor {
  x.assertAlive();
  if (pads.length % 2 || pads.length / 2 > x.rank || pads.some((p) => !Number.isInteger(p))) {
    throw new Error(
      `pad: pads [${pads}] must be integer pairs for at most ${x.rank} dims of [${x.shape}]`,
    );
  }
  if (x.dtype !== "f32") {
    throw new Error(`pad: expected an f32 tensor, got ${x.dtype} [${x.shape}]`);
  }
  const lo = new Array<number>(x.rank).fill(0), hi = new Array<number>(x.rank).fill(0);
  for (let k = 0; k < pads.length / 2; k++) {
    const d = x.rank - 1 - k;
    lo[d] = pads[2 * k];
    hi[d] = pads[2 * k + 1];
    if (x.shape[d] + lo[d] + hi[d] < 0) {
      throw new Error(`pad: pads [${pads}] crop dim ${d} of [${x.shape}] below zero`);
    }
  }
  return tidy(() => {
    // Crop first (negative pads), as views.
    let src = x;
    for (let d = 0; d < x.rank; d++) {
      const a = Math.max(0, -lo[d]), b = Math.max(0, -hi[d]);
      if (a || b) src = slice(src, d, a, src.shape[d] - b);
    }
    const plo = lo.map((v) => Math.max(v, 0)), phi = hi.map((v) => Math.max(v, 0));
    const shape = src.shape.map((s, d) => s + plo[d] + phi[d]);
    const out = fill(shape, value);
    if (src.size) {
      const inner = new Tensor(
        out.storage,
        src.shape,
        "f32",
        out.strides,
        plo.reduce((o, p, d) => o + p * out.strides[d], 0),
      );
      writeInto(inner, src);
      inner.dispose();
    }
    const s = src;
    return record("pad", [s], out, (g) => {
      let r = g;
      for (let d = 0; d < s.rank; d++) {
        if (plo[d] || phi[d]) r = slice(r, d, plo[d], plo[d] + s.shape[d]);
      }
      return [r];
    });
  });
}

// ---------------------------------------------------------------- gathers

function checkIndex(op: string, index: Tensor): void {
  index.assertAlive();
  if (index.dtype !== "i32") {
    throw new Error(`${op}: the index must be an i32 tensor, got ${index.dtype} [${index.shape}]`);
  }
}

function gatherRaw(
  x: Tensor,
  a: number,
  idx: Tensor,
  mode: "select" | "gather",
  kernelShape: Shape,
  outShape: Shape,
): Tensor {
  const out = empty(outShape, x.dtype);
  if (out.size === 0) return out;
  const p = GATHER_UNIFORMS.pack({
    n: out.size,
    rank: x.rank,
    axis: a,
    off: x.offset,
    axisLen: x.shape[a],
    oshape: dims8(kernelShape),
    xst: dims8(x.strides, 0),
  });
  dispatch(
    gatherKernel(x.dtype, mode),
    [x.storageBinding(), idx.binding(), out.binding()],
    p,
    grid1d(out.size, WG),
  );
  return out;
}

function scatterAddRaw(
  g: Tensor,
  a: number,
  idx: Tensor,
  mode: "select" | "gather",
  xShape: Shape,
  gShape: Shape,
): Tensor {
  const out = empty(xShape, "f32");
  if (out.size === 0) return out;
  const gd = dense(g);
  // Each thread loops over the index: LOOP_BUDGET entries per dispatch, later ones accumulating.
  const m = gShape[a];
  for (let j0 = 0; j0 === 0 || j0 < m; j0 += LOOP_BUDGET) {
    const p = SCATTER_ADD_UNIFORMS.pack({
      n: out.size,
      rank: xShape.length,
      axis: a,
      m,
      axisLen: xShape[a],
      j0,
      j1: j0 + LOOP_BUDGET,
      accum: j0 > 0 ? 1 : 0,
      xshape: dims8(xShape),
      gshape: dims8(gShape),
      gst: dims8(contiguousStrides(gShape), 0),
    });
    dispatch(
      scatterAddKernel(mode),
      [gd.binding(), idx.binding(), out.binding()],
      p,
      grid1d(out.size, WG),
    );
  }
  disposeCopy(gd, g);
  return out;
}

/**
 * The differentiable gather both ops are: x along axis `a` by `index` in `mode`, the kernel's
 * output `kShape` viewed as `outShape`; the gradient (of `outShape`, seen as `kShape` in mode
 * "select") is scatter-added back onto x's shape.
 */
function gatherOp(
  op: string,
  x: Tensor,
  a: number,
  index: Tensor,
  mode: "select" | "gather",
  kShape: Shape,
  outShape: Shape,
): Tensor {
  const idx = dense(index);
  const out = gatherRaw(x, a, idx, mode, kShape, outShape);
  const y = record(
    op,
    [x],
    out,
    (g) => [
      scatterAddRaw(mode === "select" ? reshape(g, kShape) : g, a, idx, mode, x.shape, kShape),
    ],
    [idx],
  );
  disposeCopy(idx, index);
  return y;
}

/**
 * x indexed by `index` (i32, any shape) along `axis`, as torch.index_select for a 1-D index and
 * x[..., index, ...] in general: the result's shape is x.shape[:axis] + index.shape +
 * x.shape[axis+1:]. Negative indices count from the end; out-of-range ones give 0 (not checked on
 * the host, which would need a readback). The gradient sums over repeated indices.
 */
export function indexSelect(x: Tensor, axis: number, index: Tensor): Tensor {
  fourByte("indexSelect", x);
  checkIndex("indexSelect", index);
  const a = normAxis(axis, x.rank, "indexSelect: axis");
  const m = index.size;
  const kShape = x.shape.slice();
  kShape[a] = m;
  const outShape = [...x.shape.slice(0, a), ...index.shape, ...x.shape.slice(a + 1)];
  return gatherOp("indexSelect", x, a, index, "select", kShape, outShape);
}

/**
 * torch.gather: out[i][j][k] = x[i][index[i][j][k]][k] for axis 1. `index` (i32) has x's rank and
 * index.shape[d] <= x.shape[d] for d != axis; the output has index's shape.
 */
export function gather(x: Tensor, axis: number, index: Tensor): Tensor {
  fourByte("gather", x);
  checkIndex("gather", index);
  const a = normAxis(axis, x.rank, "gather: axis");
  if (index.rank !== x.rank || index.shape.some((s, d) => d !== a && s > x.shape[d])) {
    throw new Error(
      `gather: index [${index.shape}] must have the rank of x [${x.shape}] and dims no larger off axis ${axis}`,
    );
  }
  return gatherOp("gather", x, a, index, "gather", index.shape, index.shape);
}

// ---------------------------------------------------------------- flip / roll / rot90

/** One dense copy of x with per-dim flips and cyclic shifts (y[c] = x[remap(c)]). */
function remapRaw(x: Tensor, flips: boolean[], shift: number[]): Tensor {
  const out = empty(x.shape, x.dtype);
  if (out.size === 0) return out;
  let mask = 0;
  flips.forEach((f, d) => mask |= f ? 1 << d : 0);
  const p = REMAP_UNIFORMS.pack({
    n: out.size,
    rank: x.rank,
    off: x.offset,
    flips: mask,
    shape: dims8(x.shape),
    st: dims8(x.strides, 0),
    shift: dims8(shift, 0),
  });
  dispatch(remapKernel(x.dtype), [x.storageBinding(), out.binding()], p, grid1d(out.size, WG));
  return out;
}

function axesList(op: string, x: Tensor, axes: number | number[]): number[] {
  const list = (typeof axes === "number" ? [axes] : axes).map((a) =>
    normAxis(a, x.rank, `${op}: axis`)
  );
  if (new Set(list).size !== list.length) {
    throw new Error(`${op}: repeated axes [${axes}] for [${x.shape}]`);
  }
  return list;
}

/** Reverses the order along `axes` (as torch.flip; a copy, strides stay non-negative). */
export function flip(x: Tensor, axes: number | number[]): Tensor {
  fourByte("flip", x);
  const ax = axesList("flip", x, axes);
  const y = remapRaw(x, x.shape.map((_, d) => ax.includes(d)), x.shape.map(() => 0));
  return record("flip", [x], y, (g) => [flip(g, ax)]);
}

/**
 * Cyclic shift as torch.roll: y[(i + s) mod n] = x[i] along each axis. Without axes the tensor is
 * rolled as if flattened.
 */
export function roll(x: Tensor, shifts: number | number[], axes?: number | number[]): Tensor {
  fourByte("roll", x);
  if (axes === undefined) {
    if (typeof shifts !== "number") {
      throw new Error("roll: without axes, shifts must be one number");
    }
    return tidy(() => reshape(roll(reshape(x, [x.size]), shifts, 0), x.shape));
  }
  const ax = axesList("roll", x, axes);
  const sh = typeof shifts === "number" ? [shifts] : shifts;
  if (sh.length !== ax.length || sh.some((s) => !Number.isInteger(s))) {
    throw new Error(`roll: shifts [${sh}] must be integers, one per axis [${ax}]`);
  }
  const shift = x.shape.map(() => 0);
  ax.forEach((a, k) => {
    const n = x.shape[a];
    shift[a] = n ? (((-sh[k]) % n) + n) % n : 0;
  });
  const y = remapRaw(x, x.shape.map(() => false), shift);
  return record("roll", [x], y, (g) => [roll(g, sh.map((s) => -s), ax)]);
}

/**
 * Rotates by k·90° in the plane of `axes` (as torch.rot90: from the first axis towards the
 * second). One strided copy (a transposed view read with a flip).
 */
export function rot90(x: Tensor, k = 1, axes: [number, number] = [-2, -1]): Tensor {
  fourByte("rot90", x);
  if (axes.length !== 2) throw new Error(`rot90: needs exactly two axes, got [${axes}]`);
  const [a0, a1] = axesList("rot90", x, axes);
  const r = ((k % 4) + 4) % 4;
  if (r === 0) return flip(x, []);
  if (r === 2) return flip(x, [a0, a1]);
  return tidy(() => flip(transpose(x, a0, a1), r === 1 ? a0 : a1));
}

// ---------------------------------------------------------------- repeat / tile / arange

/** torch.Tensor.repeat: tiles x `reps[d]` times along each dim (reps may add leading dims). */
export function repeat(x: Tensor, reps: number[]): Tensor {
  x.assertAlive();
  if (reps.length < x.rank || reps.some((r) => !Number.isInteger(r) || r < 0)) {
    throw new Error(
      `repeat: reps [${reps}] must be non-negative integers, at least one per dim of [${x.shape}]`,
    );
  }
  const shape = [...new Array<number>(reps.length - x.rank).fill(1), ...x.shape];
  const inter: number[] = [], big: number[] = [];
  shape.forEach((s, d) => {
    inter.push(1, s);
    big.push(reps[d], s);
  });
  return tidy(() => reshape(expand(reshape(x, inter), big), shape.map((s, d) => s * reps[d])));
}

/** numpy/torch tile: as repeat, with reps padded by leading ones when shorter than the rank. */
export function tile(x: Tensor, reps: number[]): Tensor {
  const r = reps.length < x.rank
    ? [...new Array<number>(x.rank - reps.length).fill(1), ...reps]
    : reps;
  return repeat(x, r);
}

/** n values start, start+step, … (f32 or i32). */
export function arange(
  n: number,
  opts: { start?: number; step?: number; dtype?: "f32" | "i32" } = {},
): Tensor {
  const { start = 0, step = 1, dtype = "f32" } = opts;
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`arange: n must be a non-negative integer, got ${n}`);
  }
  if (dtype === "i32" && (!Number.isInteger(start) || !Number.isInteger(step))) {
    throw new Error(`arange: i32 needs integer start and step, got ${start}, ${step}`);
  }
  const out = empty([n], dtype as DType);
  if (n === 0) return out;
  const p = ARANGE_UNIFORMS[dtype].pack({ n, start, step });
  dispatch(arangeKernel(dtype), [out.binding()], p, grid1d(n, WG));
  return out;
}
