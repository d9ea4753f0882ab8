/**
 * Storage-buffer pool by size class. A released buffer is parked as "pending" until the command
 * buffer that may still read or write it has been submitted; only then can it be handed out again,
 * because later submissions (and queue writes before them) are ordered after it.
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
  private free = new Map<number, GPUBuffer[]>();
  private pending: GPUBuffer[] = [];
  /** Size class of every buffer of the current device (buffers of a lost device are absent). */
  private sizes = new WeakMap<GPUBuffer, number>();
  /** Bytes held by tensors (handed out and not yet released). */
  liveBytes = 0;
  peakBytes = 0;
  /** Bytes parked in the pool (free or pending). */
  pooledBytes = 0;
  /** Called when buffers are destroyed, so caches holding bind groups can drop them. */
  onDestroy: (() => void) | null = null;

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
    const list = this.free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.pooledBytes -= size;
    } else {
      const alloc = Math.min(size, g.limits.maxBufferSize);
      buf = g.device.createBuffer({ size: alloc, usage: USAGE, label });
      this.sizes.set(buf, size);
    }
    this.liveBytes += size;
    if (this.liveBytes > this.peakBytes) this.peakBytes = this.liveBytes;
    return buf;
  }

  /** Returns a buffer; it becomes reusable after the next submit. */
  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf);
    if (size === undefined) {
      // Allocated on a device that has since been lost: forget it.
      this.liveBytes -= sizeClass(buf.size);
      return;
    }
    this.liveBytes -= size;
    this.pooledBytes += size;
    this.pending.push(buf);
  }

  /** Called right after a queue submit: pending buffers are now safe to reuse. */
  afterSubmit(): void {
    for (const buf of this.pending) {
      const size = this.sizes.get(buf) ?? buf.size;
      let list = this.free.get(size);
      if (!list) this.free.set(size, list = []);
      list.push(buf);
    }
    this.pending.length = 0;
  }

  /** Destroys every free (not pending) buffer, giving the memory back to the driver. */
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
    this.pending.length = 0;
    this.pooledBytes = 0;
    this.sizes = new WeakMap();
  }

  /** Counts memory held outside the pool (scratch textures) in the live/peak figures. */
  account(deltaBytes: number): void {
    this.liveBytes += deltaBytes;
    if (this.liveBytes > this.peakBytes) this.peakBytes = this.liveBytes;
  }

  resetPeak(): void {
    this.peakBytes = this.liveBytes;
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

/** Live and peak GPU bytes held by tensors, and bytes parked in the pool. */
export function memoryStats(): { liveBytes: number; peakBytes: number; pooledBytes: number } {
  return { liveBytes: pool.liveBytes, peakBytes: pool.peakBytes, pooledBytes: pool.pooledBytes };
}
