/**
 * Splitting work over the adapter's per-binding limit (`maxStorageBufferBindingSize`, 128 MiB on
 * lavapipe): an op whose tensors are too large to bind whole dispatches several times, each
 * binding only the range of every tensor that the chunk touches. A range starts at an offset
 * aligned to `minStorageBufferOffsetAlignment`; the rest of the tensor's offset (elements between
 * that aligned start and the view's first element) travels in the kernel's uniform block.
 *
 * Two planners: `splitViews` cuts the index space of views that share one shape (elementwise,
 * strided copies) along its leading dims, and `splitBatch` cuts dense tensors that share a leading
 * batch dim (convolutions, normalisation, pooling: samples are independent). Both use the smallest
 * number of chunks whose bindings all fit.
 *
 * The limit they plan for is `bindingLimit()` (engine/routing.ts), which tests lower with
 * `setBindingLimitForTests` (not the limit `dispatch` enforces) to run the split paths on small
 * tensors.
 */
import { gpu } from "./device.ts";
import { bindingLimit } from "./routing.ts";
import type { BufferBinding } from "./dispatch.ts";
import { bytesPerElement, type Shape, type Tensor } from "./tensor.ts";

function alignment(): number {
  return gpu().limits.minStorageBufferOffsetAlignment;
}

/** A strided view over a buffer (borrowed; nothing is retained). Strides are non-negative. */
export interface ViewRange {
  buffer: GPUBuffer;
  /** Bytes of the whole storage. */
  storageBytes: number;
  /** Byte offset of the storage in `buffer` (a slab range's start; 0 for a whole buffer). */
  base: number;
  elemBytes: number;
  shape: number[];
  strides: number[];
  /** Element offset of index 0. */
  offset: number;
}

/** `t` (or `t` seen with another shape/strides/offset over the same storage) as a ViewRange. */
export function viewOf(
  t: Tensor,
  shape: Shape = t.shape,
  strides: Shape = t.strides,
  offset = t.offset,
): ViewRange {
  t.assertAlive();
  return {
    buffer: t.storage.buffer,
    storageBytes: t.storage.bytes,
    base: t.storage.offset,
    elemBytes: bytesPerElement(t.dtype),
    shape: shape.slice(),
    strides: strides.slice(),
    offset,
  };
}

/** [first, last + 1) element offsets the view touches (empty views: [offset, offset]). */
function extent(v: ViewRange): [number, number] {
  let hi = v.offset;
  for (let i = 0; i < v.shape.length; i++) {
    if (v.shape[i] === 0) return [v.offset, v.offset];
    hi += (v.shape[i] - 1) * v.strides[i];
  }
  return [v.offset, hi + 1];
}

/** Bytes the smallest aligned binding holding every element of `v` spans. */
export function boundBytes(v: ViewRange): number {
  const [lo, hi] = extent(v);
  const a = alignment();
  const start = Math.floor((lo * v.elemBytes) / a) * a;
  return Math.max(4, Math.ceil((hi * v.elemBytes) / 4) * 4 - start);
}

/** Whether `v` binds within `limit` bytes. */
export function fits(v: ViewRange, limit = bindingLimit()): boolean {
  return boundBytes(v) <= limit;
}

/** A binding of a view's range and the view's element offset from the binding's start. */
export interface RangeBinding {
  binding: BufferBinding;
  off: number;
}

/** Binds the smallest aligned range holding every element of `v`. */
export function rangeBinding(v: ViewRange): RangeBinding {
  const [lo, hi] = extent(v);
  const a = alignment();
  let start = Math.floor((lo * v.elemBytes) / a) * a;
  const end = Math.min(v.storageBytes, Math.max(Math.ceil((hi * v.elemBytes) / 4) * 4, start + 4));
  if (end - start < 4) start = Math.max(0, Math.floor((end - 4) / a) * a);
  return {
    binding: { buffer: v.buffer, offset: v.base + start, size: end - start },
    off: (lo * v.elemBytes - start) / v.elemBytes,
  };
}

/** One chunk of `splitViews`: the chunk's shape and each view restricted to it. */
export interface ViewChunk {
  shape: number[];
  views: ViewRange[];
}

function restrict(v: ViewRange, d: number, lo: number, len: number): ViewRange {
  const shape = v.shape.slice();
  shape[d] = len;
  return { ...v, shape, offset: v.offset + lo * v.strides[d] };
}

/**
 * Cuts the index space `shape` shared by `views` into chunks whose every view binds within the
 * limit: ranges of dim 0; when one index of dim 0 is still too large, each index of dim 0 with
 * ranges of dim 1, and so on. A chunk keeps the rank (fixed dims become size 1), so its elements
 * in row-major order are a contiguous run of the full index space. One chunk when all fit.
 */
export function splitViews(
  op: string,
  shape: Shape,
  views: ViewRange[],
  limit = bindingLimit(),
): ViewChunk[] {
  const out: ViewChunk[] = [];
  const rank = shape.length;
  const rec = (vs: ViewRange[], d: number): void => {
    if (vs.every((v) => fits(v, limit))) {
      out.push({ shape: vs[0]?.shape.slice() ?? shape.slice(), views: vs });
      return;
    }
    if (d >= rank) {
      throw new Error(`${op}: one element does not fit a binding of ${limit} bytes`);
    }
    const n = vs[0].shape[d];
    const worst = Math.max(...vs.map(boundBytes));
    for (let c = Math.max(2, Math.ceil(worst / limit)); c <= n; c++) {
      const k = Math.ceil(n / c);
      const chunks: ViewRange[][] = [];
      let ok = true;
      for (let lo = 0; lo < n && ok; lo += k) {
        const sub = vs.map((v) => restrict(v, d, lo, Math.min(k, n - lo)));
        ok = sub.every((v) => fits(v, limit));
        chunks.push(sub);
      }
      if (ok) {
        for (const sub of chunks) out.push({ shape: sub[0].shape.slice(), views: sub });
        return;
      }
      // Chunks cannot shrink below one index: go to the next dim.
      if (k === 1) break;
    }
    for (let i = 0; i < n; i++) rec(vs.map((v) => restrict(v, d, i, 1)), d + 1);
  };
  rec(views, 0);
  return out;
}

/** One chunk of `splitBatch`: samples [n0, n1) and each tensor's binding for them. */
export interface BatchChunk {
  n0: number;
  n1: number;
  ranges: RangeBinding[];
}

/**
 * Cuts dense tensors sharing a leading batch dim of `n` samples into runs of samples whose
 * bindings all fit the limit (one chunk when all fit). Throws when one sample does not fit.
 */
export function splitBatch(
  op: string,
  n: number,
  ts: Tensor[],
  limit = bindingLimit(),
): BatchChunk[] {
  for (const t of ts) {
    if (!t.isContiguous() || t.shape[0] !== n) {
      throw new Error(
        `${op}: splitBatch needs contiguous tensors with ${n} samples, got [${t.shape}]`,
      );
    }
  }
  const per = ts.map((t) => (n ? t.size / n : 0));
  const views = (n0: number, n1: number) =>
    ts.map((t, i) => viewOf(t, [n1 - n0, per[i]], [per[i], 1], t.offset + n0 * per[i]));
  const chunk = (n0: number, n1: number): BatchChunk | null => {
    const vs = views(n0, n1);
    return vs.every((v) => fits(v, limit)) ? { n0, n1, ranges: vs.map(rangeBinding) } : null;
  };
  const whole = chunk(0, n);
  if (whole || n <= 1) {
    if (whole) return [whole];
  } else {
    const worst = Math.max(...views(0, n).map(boundBytes));
    for (let c = Math.max(2, Math.ceil(worst / limit)); c <= n; c++) {
      const k = Math.ceil(n / c);
      const out: BatchChunk[] = [];
      for (let n0 = 0; n0 < n; n0 += k) {
        const ch = chunk(n0, Math.min(n, n0 + k));
        if (!ch) break;
        out.push(ch);
      }
      if (out.length && out[out.length - 1].n1 === n) return out;
      if (k === 1) break;
    }
  }
  const big = ts.map((t, i) => `[${t.shape}] (${per[i] * bytesPerElement(t.dtype)} bytes/sample)`);
  throw new Error(
    `${op}: one sample of ${big.join(", ")} does not fit this adapter's per-binding limit of ` +
      `${limit} bytes; this op splits only over the batch`,
  );
}
