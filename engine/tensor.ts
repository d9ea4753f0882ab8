/**
 * Tensor: a strided view (shape, strides, element offset) of a reference-counted GPU storage.
 * Views (reshape, permute, slice, broadcast) share storage and cost nothing; kernels that need
 * dense data ask for it (`isDense`) and ops copy only then.
 *
 * Lifetime is explicit: `dispose()` (idempotent) or a scope (`tidy`). The autograd graph may hold a
 * tensor it saved for backward past the user's `dispose()`; the storage goes back to the pool when
 * both have let go.
 */
import type { BufferBinding } from "./dispatch.ts";
import { ensureBatch, readBuffer, writeBuffer } from "./dispatch.ts";
import { gpu } from "./device.ts";
import { type Allocation, fmtBytes, pool } from "./pool.ts";
import { trackTensor } from "./scope.ts";
import { f16ToF32, f32ToF16 } from "./half.ts";
import type { Node } from "./autograd.ts";

export type DType = "f32" | "i32" | "u32" | "f16";
export type Shape = readonly number[];
export function bytesPerElement(d: DType): number {
  return d === "f16" ? 2 : 4;
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function contiguousStrides(shape: Shape): number[] {
  const st = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

/**
 * The bytes of a tensor, shared by every view of it: `bytes` at byte `offset` of `buffer` (a whole
 * buffer, or a range of a slab the pool shares among big tensors: engine/pool.ts). Every binding,
 * upload and readback adds `offset`.
 */
export class Storage {
  refs = 0;
  readonly buffer: GPUBuffer;
  /** Byte offset in `buffer` (a multiple of minStorageBufferOffsetAlignment). */
  readonly offset: number;
  constructor(readonly allocation: Allocation, readonly bytes: number) {
    this.buffer = allocation.buffer;
    this.offset = allocation.offset;
  }
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) pool.deallocate(this.allocation);
  }
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  /** Element offset of index 0 in the storage. */
  readonly offset: number;
  readonly dtype: DType;
  readonly storage: Storage;
  requiresGrad = false;
  /** Accumulated gradient of a leaf (a parameter, or any tensor with requiresGrad and no node). */
  grad: Tensor | null = null;
  /** The op that produced this tensor, when gradients flow through it. */
  node: Node | null = null;
  private userDisposed = false;
  private holds = 0;
  private dead = false;

  constructor(storage: Storage, shape: Shape, dtype: DType, strides?: Shape, offset = 0) {
    for (const s of shape) {
      if (!Number.isInteger(s) || s < 0) throw new Error(`invalid tensor shape [${shape}]`);
    }
    this.storage = storage;
    this.shape = shape.slice();
    this.strides = strides ? strides.slice() : contiguousStrides(shape);
    this.offset = offset;
    this.dtype = dtype;
    storage.retain();
    trackTensor(this);
  }

  get size(): number {
    return numel(this.shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  get isDisposed(): boolean {
    return this.dead;
  }

  /** Row-major contiguous (the offset may be non-zero). */
  isContiguous(): boolean {
    let acc = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== acc) return false;
      acc *= this.shape[i];
    }
    return true;
  }

  /** Contiguous and bindable at its offset (byte offset aligned as the adapter requires). */
  isDense(): boolean {
    if (!this.isContiguous()) return false;
    const align = gpu().limits.minStorageBufferOffsetAlignment;
    return (this.offset * bytesPerElement(this.dtype)) % align === 0;
  }

  /** Binding of exactly this dense tensor's elements. */
  binding(): BufferBinding {
    this.assertAlive();
    if (!this.isDense()) {
      throw new Error(`tensor [${this.shape}] is a strided view: make it dense first (ops.dense)`);
    }
    const b = bytesPerElement(this.dtype);
    return {
      buffer: this.storage.buffer,
      offset: this.storage.offset + this.offset * b,
      size: Math.max(4, Math.ceil((this.size * b) / 4) * 4),
    };
  }

  /** Binding of the whole storage, for strided kernels that apply offset and strides themselves. */
  storageBinding(): BufferBinding {
    this.assertAlive();
    const s = this.storage;
    return { buffer: s.buffer, offset: s.offset, size: s.bytes };
  }

  assertAlive(): void {
    if (this.dead) throw new Error(`tensor #${this.id} [${this.shape}] was used after dispose()`);
  }

  /** Releases the caller's reference; idempotent. */
  dispose(): void {
    if (this.userDisposed) return;
    this.userDisposed = true;
    this.maybeFree();
  }

  /** Held by an autograd node that saved it for backward. */
  hold(): void {
    this.holds++;
  }
  unhold(): void {
    this.holds--;
    this.maybeFree();
  }

  private maybeFree(): void {
    if (!this.dead && this.userDisposed && this.holds <= 0) {
      this.dead = true;
      this.storage.release();
    }
  }

  /** Downloads the elements in row-major order (flushes pending work). */
  async data(): Promise<Float32Array | Int32Array | Uint32Array> {
    this.assertAlive();
    if (!this.isContiguous()) {
      const { dense } = await import("./ops/view.ts");
      const d = dense(this, true);
      try {
        return await d.data();
      } finally {
        d.dispose();
      }
    }
    const b = bytesPerElement(this.dtype);
    if (this.size === 0) return new Float32Array(0);
    const s = this.storage;
    const raw = await readBuffer(s.buffer, s.offset + this.offset * b, this.size * b);
    switch (this.dtype) {
      case "f32":
        return new Float32Array(raw);
      case "i32":
        return new Int32Array(raw);
      case "u32":
        return new Uint32Array(raw);
      case "f16":
        return f16ToF32(new Uint16Array(raw));
    }
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw new Error(`item() needs one element, tensor has shape [${this.shape}]`);
    }
    return (await this.data())[0];
  }

  toString(): string {
    return `Tensor#${this.id}(${this.dtype}[${this.shape}]${this.requiresGrad ? ", grad" : ""})`;
  }
}

/** Allocates an uninitialised dense tensor. */
export function empty(shape: Shape, dtype: DType = "f32"): Tensor {
  const bytes = numel(shape) * bytesPerElement(dtype);
  const g = gpu();
  if (bytes > g.limits.maxBufferSize) {
    throw new Error(
      `a ${dtype} tensor of shape [${shape}] needs ${fmtBytes(bytes)}, over this adapter's ` +
        `maxBufferSize of ${
          fmtBytes(g.limits.maxBufferSize)
        }: lower the batch size or tile the work`,
    );
  }
  ensureBatch();
  const a = pool.allocate(Math.max(4, bytes));
  return new Tensor(new Storage(a, Math.max(4, Math.ceil(bytes / 4) * 4)), shape, dtype);
}

/** Uploads host data as a new dense tensor. */
export function tensor(
  data: ArrayLike<number> | Float32Array | Int32Array | Uint32Array,
  shape?: Shape,
  dtype: DType = data instanceof Int32Array ? "i32" : data instanceof Uint32Array ? "u32" : "f32",
): Tensor {
  const sh = shape ?? [data.length];
  if (numel(sh) !== data.length) {
    throw new Error(`tensor(): ${data.length} values do not fill shape [${sh}] (${numel(sh)})`);
  }
  const t = empty(sh, dtype);
  if (data.length === 0) return t;
  let host: ArrayBufferView;
  switch (dtype) {
    case "f32":
      host = data instanceof Float32Array ? data : Float32Array.from(data);
      break;
    case "i32":
      host = data instanceof Int32Array ? data : Int32Array.from(data);
      break;
    case "u32":
      host = data instanceof Uint32Array ? data : Uint32Array.from(data);
      break;
    case "f16":
      host = f32ToF16(Float32Array.from(data));
      break;
  }
  writeBuffer(t.storage.buffer, t.storage.offset, host);
  return t;
}

/**
 * Disposes `made` when it is a tensor an op made from `original` (a dense copy, a cast, a promoted
 * view) rather than `original` itself: the op owns the one and not the other.
 */
export function disposeCopy(
  made: Tensor | null | undefined,
  original: Tensor | null | undefined,
): void {
  if (made && made !== original) made.dispose();
}

/** A new tensor object sharing `t`'s storage and layout (its own lifetime; no copy). */
export function alias(t: Tensor): Tensor {
  t.assertAlive();
  return new Tensor(t.storage, t.shape, t.dtype, t.strides, t.offset);
}

/** A view of `t` with another shape/strides/offset over the same storage. */
export function view(t: Tensor, shape: Shape, strides: Shape, offset: number): Tensor {
  t.assertAlive();
  return new Tensor(t.storage, shape, t.dtype, strides, offset);
}
