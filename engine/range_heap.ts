/**
 * Best-fit allocation of aligned byte ranges inside slabs (big GPU buffers), with no GPU: the pool
 * (engine/pool.ts) places large tensors in slabs so that the room a freed tensor leaves can serve a
 * request of another size, where a pool of whole buffers by size class can only hand a buffer to a
 * request of its own class. A range is split off the smallest free range that holds it; a freed
 * range merges with free neighbours, so freed tensors side by side make room for a bigger one.
 */

/** A slab: `size` bytes, its free ranges sorted by offset, never adjacent (they are merged). */
export interface Slab<B> {
  readonly buffer: B;
  readonly size: number;
  /** Free ranges [offset, offset + length), sorted, disjoint and non-adjacent. */
  readonly free: { offset: number; length: number }[];
  /** Bytes handed out. */
  used: number;
}

export class RangeHeap<B> {
  readonly slabs: Slab<B>[] = [];
  private bySlab = new Map<B, Slab<B>>();

  /** `align`: every range's offset and length are multiples of it. */
  constructor(readonly align: number) {
    if (!(align > 0 && Number.isInteger(align))) throw new Error(`bad alignment ${align}`);
  }

  /** The length a request of `bytes` occupies. */
  rangeLength(bytes: number): number {
    return Math.max(this.align, Math.ceil(bytes / this.align) * this.align);
  }

  /** Adds an empty slab of `size` bytes (a multiple of the alignment). */
  addSlab(buffer: B, size: number): Slab<B> {
    if (size % this.align !== 0 || size <= 0) {
      throw new Error(`slab of ${size} bytes is not a positive multiple of ${this.align}`);
    }
    const s: Slab<B> = { buffer, size, free: [{ offset: 0, length: size }], used: 0 };
    this.slabs.push(s);
    this.bySlab.set(buffer, s);
    return s;
  }

  /** Whether `buffer` is a slab of this heap. */
  has(buffer: B): boolean {
    return this.bySlab.has(buffer);
  }

  /** Removes an empty slab (its buffer may then be destroyed). */
  removeSlab(buffer: B): void {
    const s = this.bySlab.get(buffer);
    if (!s) return;
    if (s.used !== 0) throw new Error("removeSlab: the slab still holds ranges");
    this.bySlab.delete(buffer);
    this.slabs.splice(this.slabs.indexOf(s), 1);
  }

  /** The smallest free range of any slab that holds `bytes`, split off its start; null if none. */
  alloc(bytes: number): { slab: Slab<B>; offset: number; length: number } | null {
    const length = this.rangeLength(bytes);
    let best: Slab<B> | null = null, bestIdx = -1, bestLen = Infinity;
    for (const s of this.slabs) {
      if (s.size - s.used < length) continue;
      for (let i = 0; i < s.free.length; i++) {
        const f = s.free[i];
        if (f.length >= length && f.length < bestLen) {
          best = s;
          bestIdx = i;
          bestLen = f.length;
          if (bestLen === length) break;
        }
      }
      if (bestLen === length) break;
    }
    if (!best) return null;
    const f = best.free[bestIdx];
    const offset = f.offset;
    if (f.length === length) best.free.splice(bestIdx, 1);
    else best.free[bestIdx] = { offset: f.offset + length, length: f.length - length };
    best.used += length;
    return { slab: best, offset, length };
  }

  /** Gives a range back, merged with the free ranges it touches. */
  release(buffer: B, offset: number, length: number): void {
    const s = this.bySlab.get(buffer);
    if (!s) throw new Error("release: not a slab of this heap");
    const fr = s.free;
    // First free range after the released one.
    let lo = 0, hi = fr.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (fr[mid].offset < offset) lo = mid + 1;
      else hi = mid;
    }
    const prev = lo > 0 ? fr[lo - 1] : null;
    const next = lo < fr.length ? fr[lo] : null;
    if (
      offset < 0 || offset + length > s.size || (prev && prev.offset + prev.length > offset) ||
      (next && offset + length > next.offset)
    ) {
      throw new Error(`release: range [${offset}, ${offset + length}) is not handed out`);
    }
    s.used -= length;
    const joinPrev = prev !== null && prev.offset + prev.length === offset;
    const joinNext = next !== null && offset + length === next.offset;
    if (joinPrev && joinNext) {
      fr[lo - 1] = { offset: prev!.offset, length: prev!.length + length + next!.length };
      fr.splice(lo, 1);
    } else if (joinPrev) {
      fr[lo - 1] = { offset: prev!.offset, length: prev!.length + length };
    } else if (joinNext) {
      fr[lo] = { offset, length: length + next!.length };
    } else {
      fr.splice(lo, 0, { offset, length });
    }
  }

  /** Bytes of every slab. */
  get heldBytes(): number {
    let n = 0;
    for (const s of this.slabs) n += s.size;
    return n;
  }
}
