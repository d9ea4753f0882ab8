/**
 * Storage-buffer pool by size class. A released buffer is parked as "pending" until the command
 * buffer that may still read or write it has been submitted. Until then only dispatches may reuse
 * it (they are encoded after its last users); a queue write into it would run before them, so
 * `writeBuffer` submits the open batch first ({@link BufferPool.mustSubmitBefore}).
 */
import { gpu, onNewDevice } from "./device.ts";

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Rounds a request up to its size class: powers of two below 1 MiB, eighths of an octave above. */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 4) * 4);
  if (b <= 1 << 20) return 2 ** Math.ceil(Math.log2(b));
  const octave = 2 ** Math.floor(Math.log2(b));
  const step = octave / 8;
  return Math.ceil(b / step) * step;
}

class BufferPool {
  /** Parked buffers whose last users have been submitted, by size class. */
  private free = new Map<number, GPUBuffer[]>();
  /** Parked buffers that work encoded but not yet submitted may still use, by size class. */
  private pending = new Map<number, GPUBuffer[]>();
  /** Buffers handed out of `pending` in the open batch: a queue write must submit first. */
  private early = new Set<GPUBuffer>();
  /** Size class of every buffer of the current device (buffers of a lost device are absent). */
  private sizes = new WeakMap<GPUBuffer, number>();
  /** Bytes held by tensors (handed out and not yet released). */
  liveBytes = 0;
  peakBytes = 0;
  /** Bytes parked in the pool (free or pending). */
  pooledBytes = 0;
  /** Highest live + pooled bytes: what the device actually held in buffers. */
  peakAllocatedBytes = 0;
  /** Called when buffers are destroyed, so caches holding bind groups can drop them. */
  onDestroy: (() => void) | null = null;

  /**
   * A buffer of at least `bytes`: a free one of its size class, else a pending one (dispatches
   * encoded later run after the ones still using it; {@link mustSubmitBefore} covers queue writes,
   * which would run before them), else a new one. On a ResNet-50 training step (b2, 256²) taking
   * pending buffers cut the buffers held from 1.34× to 1.13× the live bytes (0.744 → 0.626 GiB);
   * also lending larger free buffers (up to 1.25× or 2×) gained under 1 % or lost.
   */
  acquire(bytes: number, label?: string): GPUBuffer {
    const g = gpu();
    const size = sizeClass(bytes);
    if (bytes > g.limits.maxBufferSize) {
      throw new Error(
        `tensor of ${fmtBytes(bytes)} exceeds this adapter's maxBufferSize (${
          fmtBytes(g.limits.maxBufferSize)
        })${label ? ` (${label})` : ""}: split the work into smaller batches or tiles`,
      );
    }
    let buf = this.free.get(size)?.pop();
    if (!buf) {
      buf = this.pending.get(size)?.pop();
      if (buf) this.early.add(buf);
    }
    if (buf) {
      this.pooledBytes -= size;
    } else {
      const alloc = Math.min(size, g.limits.maxBufferSize);
      buf = g.device.createBuffer({ size: alloc, usage: USAGE, label });
      this.sizes.set(buf, size);
    }
    this.liveBytes += size;
    this.notePeaks();
    return buf;
  }

  /** True when `buf` was reused before the batch that last used it was submitted. */
  mustSubmitBefore(buf: GPUBuffer): boolean {
    return this.early.has(buf);
  }

  /** Returns a buffer: reusable at once by dispatches, by queue writes after the next submit. */
  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) {
      // Allocated on a device that has since been lost: forget it.
      this.liveBytes -= sizeClass(buf.size);
      return;
    }
    this.liveBytes -= size;
    this.pooledBytes += size;
    let list = this.pending.get(size);
    if (!list) this.pending.set(size, list = []);
    list.push(buf);
  }

  /** Called right after a queue submit: pending buffers are now free. */
  afterSubmit(): void {
    for (const [size, bufs] of this.pending) {
      let list = this.free.get(size);
      if (!list) this.free.set(size, list = []);
      list.push(...bufs);
    }
    this.pending.clear();
    this.early.clear();
  }

  private notePeaks(): void {
    if (this.liveBytes > this.peakBytes) this.peakBytes = this.liveBytes;
    const held = this.liveBytes + this.pooledBytes;
    if (held > this.peakAllocatedBytes) this.peakAllocatedBytes = held;
  }

  /**
   * Destroys every free (not pending) buffer, giving the memory back to the driver. The pool keeps
   * one buffer per size class a phase used; a later phase with other shapes (validation after a
   * training step, another batch size, another model) would add its own on top, so long programs
   * trim between phases.
   */
  trim(): void {
    let destroyed = false;
    for (const [size, list] of this.free) {
      for (const b of list) {
        b.destroy();
        this.pooledBytes -= size;
        destroyed = true;
      }
    }
    this.free.clear();
    if (destroyed) this.onDestroy?.();
  }

  /** Forgets every parked buffer (they belong to a lost device). */
  forgetDevice(): void {
    this.free.clear();
    this.pending.clear();
    this.early.clear();
    this.pooledBytes = 0;
    this.sizes = new WeakMap();
  }

  /** Counts memory held outside the pool (scratch textures) in the live/peak figures. */
  account(deltaBytes: number): void {
    this.liveBytes += deltaBytes;
    this.notePeaks();
  }

  resetPeak(): void {
    this.peakBytes = this.liveBytes;
    this.peakAllocatedBytes = this.liveBytes + this.pooledBytes;
  }
}

export const pool = new BufferPool();
onNewDevice(() => pool.forgetDevice());

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/** GPU memory in bytes since the last {@link BufferPool.resetPeak}. */
export interface MemoryStats {
  /** Held by tensors and scratch textures now, and at most. */
  liveBytes: number;
  peakBytes: number;
  /** Parked in the pool for reuse. */
  pooledBytes: number;
  /** Live + pooled at most: the buffers the device really held. */
  peakAllocatedBytes: number;
}

export function memoryStats(): MemoryStats {
  return {
    liveBytes: pool.liveBytes,
    peakBytes: pool.peakBytes,
    pooledBytes: pool.pooledBytes,
    peakAllocatedBytes: pool.peakAllocatedBytes,
  };
}

/** Gives parked buffers back to the driver (between phases of a long program; see trim). */
export function trimPool(): void {
  pool.trim();
}
