/**
 * Least-recently-used cache of decoded tiles, bounded in bytes rather than entries: tiles of
 * different levels and slides differ in size, and the budget that matters is memory.
 */

/** A byte-bounded LRU map; a value larger than the whole budget is simply not kept. */
export class TileCache<V extends { byteLength: number }> {
  #map = new Map<string, V>();
  #bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes: number) {
    if (!(maxBytes >= 0)) throw new Error(`TileCache: maxBytes must be >= 0, got ${maxBytes}`);
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Entries held now. */
  get size(): number {
    return this.#map.size;
  }

  /** The value for `key`, marked most recently used; undefined on a miss. */
  get(key: string): V | undefined {
    const v = this.#map.get(key);
    if (v === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.#map.delete(key);
    this.#map.set(key, v);
    return v;
  }

  /** Stores `value`, evicting least recently used entries until the budget holds. */
  set(key: string, value: V): void {
    const old = this.#map.get(key);
    if (old !== undefined) {
      this.#map.delete(key);
      this.#bytes -= old.byteLength;
    }
    if (value.byteLength > this.maxBytes) return;
    this.#map.set(key, value);
    this.#bytes += value.byteLength;
    while (this.#bytes > this.maxBytes) {
      const oldest = this.#map.keys().next().value as string;
      this.#bytes -= this.#map.get(oldest)!.byteLength;
      this.#map.delete(oldest);
    }
  }

  /** Drops everything. */
  clear(): void {
    this.#map.clear();
    this.#bytes = 0;
  }
}
