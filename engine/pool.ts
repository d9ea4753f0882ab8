/**
 * Storage-buffer pool. Tensors under {@link SLAB_THRESHOLD} get whole buffers by size class; a
 * released buffer is parked as "pending" until the command buffer that may still read or write it
 * has been submitted. Until then only dispatches may reuse it (they are encoded after its last
 * users); a queue write into it would run before them, so `writeBuffer` submits the open batch
 * first ({@link BufferPool.mustSubmitBefore}). Larger tensors get aligned ranges of slabs
 * (engine/range_heap.ts: best fit, freed neighbours merged; empty slabs destroyed before a new one
 * is made), reusable by dispatches at once on the same terms; a queue write into a slab that handed out a range freed in the open batch submits
 * first likewise. Two tensors in one slab may meet in one dispatch, one read and one written:
 * dispatch() then runs the kernel's variant whose storage bindings are all read_write (a buffer
 * bound read-only and writable in one dispatch is a usage conflict); their ranges never overlap,
 * which Dawn requires of writable bindings (engine/dispatch.ts `sharedBuffers`). Parked whole
 * buffers go out oldest first, so a repeated program gets the same buffers each time and its bind
 * groups hit the dispatch cache.
 */
import { gpu, onNewDevice } from "./device.ts";
import { RangeHeap } from "./range_heap.ts";

const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** A tensor's bytes: a whole buffer (offset 0) or a range of a slab. */
export interface Allocation {
  readonly buffer: GPUBuffer;
  /** Byte offset in `buffer` (a multiple of minStorageBufferOffsetAlignment). */
  readonly offset: number;
  /** Bytes counted live: the size class, or the range's aligned length. */
  readonly size: number;
}

/**
 * Requests of at least this many bytes are ranges of slabs. A new slab holds the request or as
 * many bytes as the slabs already held, whichever is more, but at most {@link SLAB_GROWTH_CAP}
 * beyond the request (and at most maxBufferSize): slabs grow with the program, so a small one
 * holds little. Chosen by replaying the pool traffic of checkpointed ResNet-50-ADL training steps
 * (bench/memory_sim.ts; BENCHMARKS.md, "Allocator"): held/live at b4 @512² 1.31 with classes
 * only, 1.11 with slabs of exactly the request, 1.03 with these.
 */
export const SLAB_THRESHOLD = 2 ** 20;
export const SLAB_GROWTH_CAP = 64 * 2 ** 20;

/** Observer of the pool's traffic (bench/memory.ts records a training step with it). */
export interface PoolTracer {
  /** A tensor took `a` (its size class or range length `a.size`) for `bytes` requested. */
  acquire(a: Allocation, bytes: number): void;
  release(a: Allocation): void;
  /** The open batch was submitted. */
  submit(): void;
  /** Scratch textures taken for a launch (+) or given back (−): their in-use (live) bytes. */
  account(deltaBytes: number): void;
}

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
  /**
   * Creation order of every buffer. Parked lists are kept newest first, so `pop()` hands out the
   * oldest parked buffer of a class: a program that repeats (a training step) then gets the same
   * buffers for the same tensors every time, and its bind groups hit engine/dispatch.ts's cache
   * (taking the last parked one instead, the assignment wandered from step to step: ~1 000 new
   * bind groups a ResNet-50 step, 7 a step this way).
   */
  private serials = new WeakMap<GPUBuffer, number>();
  private nextSerial = 0;
  /** See {@link setOldestFirst}. */
  private oldestFirst = true;
  /** Buffers and slabs created so far, and their bytes (bench/memory.ts: what reclaiming costs). */
  readonly made = { count: 0, bytes: 0 };
  /** Bytes held by tensors (handed out and not yet released). */
  liveBytes = 0;
  peakBytes = 0;
  /** Bytes parked in the pool (free or pending). */
  pooledBytes = 0;
  /** Highest live + pooled bytes: what the device actually held in buffers and scratch textures. */
  peakAllocatedBytes = 0;
  /**
   * Bytes of scratch textures the device holds (engine/texture_pool.ts), in use (counted in
   * `liveBytes`) or parked for reuse (counted in `pooledBytes`).
   */
  textureBytes = 0;
  /** Called by {@link trim}: caches of other resources (scratch textures) give theirs back too. */
  private trimHooks: (() => void)[] = [];
  /** Called by {@link afterSubmit}: engine/texture_pool.ts destroys the textures it evicted. */
  private submitHooks: (() => void)[] = [];
  /** Called when buffers are destroyed, so caches holding bind groups can drop them. */
  onDestroy: (() => void) | null = null;
  tracer: PoolTracer | null = null;
  /** Whether work is encoded but not submitted (set by engine/dispatch.ts). */
  batchOpen: () => boolean = () => true;
  /** Ranges of slabs for tensors of {@link SLAB_THRESHOLD} bytes and more (per device). */
  private heap: RangeHeap<GPUBuffer> | null = null;
  /** Slabs in which a range was freed in the open batch. */
  private dirty = new Set<GPUBuffer>();
  /**
   * Requests of this many bytes and more go to slabs (Infinity: none; bench/memory.ts compares).
   * `ENGINE_SLAB_THRESHOLD=0` puts every tensor in a slab, so that a test run checks that every
   * binding, upload and readback path adds the storage's offset.
   */
  slabThreshold = Number(Deno.env.get("ENGINE_SLAB_THRESHOLD") ?? SLAB_THRESHOLD);
  /**
   * Before making a slab, destroy the empty ones (room too small for the request, or where it
   * cannot grow, given back before more is taken; a slab with a range freed in the open batch
   * stays). Without it the paper's classifier step (b16 @512²) made its last 256 MiB slab beside
   * 2.4 GiB of free slab room: held 6.09 GiB for 4.98 live, 5.34 with it (bench/memory.ts --dry;
   * replayed first by bench/memory_sim.ts "reclaim"); no slab is made in the steps after the first.
   * false: bench/memory.ts's `:keepslabs` policy, the A/B.
   */
  reclaimEmptySlabs = true;

  /** Bytes for a tensor: a range of a slab when large, else a whole buffer of its size class. */
  allocate(bytes: number, label?: string): Allocation {
    const a = bytes >= this.slabThreshold
      ? this.allocateRange(bytes, label)
      : { buffer: this.acquire(bytes, label), offset: 0, size: sizeClass(bytes) };
    this.tracer?.acquire(a, bytes);
    return a;
  }

  /** Gives back what {@link allocate} handed out. */
  deallocate(a: Allocation): void {
    this.tracer?.release(a);
    if (a.offset === 0 && this.sizes.has(a.buffer)) return this.release(a.buffer);
    if (!this.heap?.has(a.buffer)) {
      // A slab of a device that has since been lost: forget it.
      this.liveBytes -= a.size;
      return;
    }
    this.heap.release(a.buffer, a.offset, a.size);
    if (this.batchOpen()) this.dirty.add(a.buffer);
    this.liveBytes -= a.size;
    this.pooledBytes += a.size;
  }

  private allocateRange(bytes: number, label?: string): Allocation {
    const g = gpu();
    this.checkSize(bytes, label);
    const align = Math.max(256, g.limits.minStorageBufferOffsetAlignment);
    this.heap ??= new RangeHeap<GPUBuffer>(align);
    const heap = this.heap;
    let r = heap.alloc(bytes);
    if (!r && this.reclaimEmptySlabs) this.destroyEmptySlabs();
    if (!r) {
      const most = Math.floor(g.limits.maxBufferSize / align) * align;
      const grown = Math.min(SLAB_GROWTH_CAP, heap.heldBytes, most);
      const size = Math.max(heap.rangeLength(bytes), grown);
      const buf = g.device.createBuffer({ size, usage: USAGE, label: label ?? "slab" });
      this.made.count++;
      this.made.bytes += size;
      heap.addSlab(buf, size);
      this.pooledBytes += size;
      r = heap.alloc(bytes)!;
    }
    const buffer = r.slab.buffer;
    if (this.dirty.has(buffer)) this.early.add(buffer);
    this.pooledBytes -= r.length;
    this.liveBytes += r.length;
    this.notePeaks();
    return { buffer, offset: r.offset, size: r.length };
  }

  private checkSize(bytes: number, label?: string): void {
    const max = gpu().limits.maxBufferSize;
    if (bytes > max) {
      throw new Error(
        `tensor of ${fmtBytes(bytes)} exceeds this adapter's maxBufferSize (${fmtBytes(max)})${
          label ? ` (${label})` : ""
        }: split the work into smaller batches or tiles`,
      );
    }
  }

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
    this.checkSize(bytes, label);
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
      this.made.count++;
      this.made.bytes += alloc;
      this.sizes.set(buf, size);
      this.serials.set(buf, this.nextSerial++);
    }
    this.liveBytes += size;
    this.notePeaks();
    return buf;
  }

  /**
   * True when `buf` (or a range of it, for a slab) was reused before the batch that last used it
   * was submitted.
   */
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
    // With no work encoded and unsubmitted, nothing can still use it: free at once.
    const parked = this.batchOpen() ? this.pending : this.free;
    let list = parked.get(size);
    if (!list) parked.set(size, list = []);
    this.park(list, buf);
  }

  /**
   * false: the last parked buffer of a class is handed out first, as before this order existed
   * (bench/bind_groups.ts compares the two); true (the default) sorts the parked lists again.
   */
  setOldestFirst(on: boolean): void {
    this.oldestFirst = on;
    if (!on) return;
    for (const m of [this.free, this.pending]) {
      for (const list of m.values()) {
        list.sort((a, b) => this.serials.get(b)! - this.serials.get(a)!);
      }
    }
  }

  /** Inserts `buf` into a parked list, kept newest first (see {@link serials}). */
  private park(list: GPUBuffer[], buf: GPUBuffer): void {
    if (!this.oldestFirst) {
      list.push(buf);
      return;
    }
    const serial = this.serials.get(buf)!;
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.serials.get(list[mid])! > serial) lo = mid + 1;
      else hi = mid;
    }
    if (lo === list.length) list.push(buf);
    else list.splice(lo, 0, buf);
  }

  /** How many buffers of each size class are parked (free or pending); slabs' free bytes as -1. */
  parkedBySize(): Map<number, number> {
    const out = new Map<number, number>();
    for (const m of [this.free, this.pending]) {
      for (const [size, list] of m) out.set(size, (out.get(size) ?? 0) + list.length);
    }
    if (this.heap) {
      let free = 0;
      for (const s of this.heap.slabs) free += s.size - s.used;
      if (free) out.set(-1, free);
    }
    return out;
  }

  /** Slab sizes and the bytes in use in each (tests, bench/memory.ts). */
  slabUse(): { size: number; used: number }[] {
    return (this.heap?.slabs ?? []).map((s) => ({ size: s.size, used: s.used }));
  }

  /** Called right after a queue submit: pending buffers are now free. */
  afterSubmit(): void {
    this.tracer?.submit();
    for (const h of this.submitHooks) h();
    for (const [size, bufs] of this.pending) {
      let list = this.free.get(size);
      if (!list) this.free.set(size, list = []);
      for (const b of bufs) this.park(list, b);
    }
    this.pending.clear();
    this.early.clear();
    this.dirty.clear();
  }

  private notePeaks(): void {
    if (this.liveBytes > this.peakBytes) this.peakBytes = this.liveBytes;
    const held = this.liveBytes + this.pooledBytes;
    if (held > this.peakAllocatedBytes) this.peakAllocatedBytes = held;
  }

  /**
   * Destroys every free (not pending) buffer and every empty slab no range of which was freed in
   * the open batch, giving the memory back to the driver. The pool keeps one buffer per size class
   * a phase used; a later phase with other shapes (validation after a training step, another batch
   * size, another model) would add its own on top, so long programs trim between phases.
   */
  trim(): void {
    let destroyed = this.destroyEmptySlabs(false);
    for (const [size, list] of this.free) {
      for (const b of list) {
        b.destroy();
        this.pooledBytes -= size;
        destroyed = true;
      }
    }
    this.free.clear();
    for (const h of this.trimHooks) h();
    if (destroyed) this.onDestroy?.();
  }

  /**
   * Destroys every empty slab no range of which was freed in the open batch; true if any was.
   * `notify`: tell the caches holding bind groups at once.
   */
  private destroyEmptySlabs(notify = true): boolean {
    let destroyed = false;
    for (const s of [...(this.heap?.slabs ?? [])]) {
      if (s.used !== 0 || this.dirty.has(s.buffer)) continue;
      this.heap!.removeSlab(s.buffer);
      s.buffer.destroy();
      this.pooledBytes -= s.size;
      destroyed = true;
    }
    if (destroyed && notify) this.onDestroy?.();
    return destroyed;
  }

  /** Runs `hook` on every {@link trim} (engine/texture_pool.ts destroys its parked textures). */
  onTrim(hook: () => void): void {
    this.trimHooks.push(hook);
  }

  /** Runs `hook` right after every submit. */
  onSubmit(hook: () => void): void {
    this.submitHooks.push(hook);
  }

  /** Forgets every parked buffer (they belong to a lost device). */
  forgetDevice(): void {
    this.free.clear();
    this.pending.clear();
    this.early.clear();
    this.dirty.clear();
    this.heap = null;
    this.pooledBytes = 0;
    this.sizes = new WeakMap();
    this.serials = new WeakMap();
    // Scratch textures: engine/texture_pool.ts forgets its parked ones; those in use stay counted
    // until given back.
  }

  /**
   * Counts scratch textures (engine/texture_pool.ts) with the buffers: `inUseDelta` bytes taken for
   * a launch (+, live) or given back (−, parked), `heldDelta` bytes created (+) or destroyed (−).
   * Parked textures count in `pooledBytes`, so held (live + pooled) and its peak include them.
   */
  accountTextures(inUseDelta: number, heldDelta: number): void {
    this.liveBytes += inUseDelta;
    this.pooledBytes += heldDelta - inUseDelta;
    this.textureBytes += heldDelta;
    this.notePeaks();
    if (inUseDelta) this.tracer?.account(inUseDelta);
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
  /** Parked for reuse: buffers, free ranges of slabs and scratch textures. */
  pooledBytes: number;
  /** Live + pooled at most: the buffers and textures the device really held. */
  peakAllocatedBytes: number;
  /** Scratch textures held now (in use or parked; part of live + pooled). */
  textureBytes: number;
}

export function memoryStats(): MemoryStats {
  return {
    liveBytes: pool.liveBytes,
    peakBytes: pool.peakBytes,
    pooledBytes: pool.pooledBytes,
    peakAllocatedBytes: pool.peakAllocatedBytes,
    textureBytes: pool.textureBytes,
  };
}

/** Gives parked buffers back to the driver (between phases of a long program; see trim). */
export function trimPool(): void {
  pool.trim();
}
