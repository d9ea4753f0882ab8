/**
 * A small pool of workers that JPEG-encode tiles (jpeg-js is plain JavaScript: about 20 ms a 256²
 * tile on one idle core, the largest part of a cold tile). Jobs go to the least busy worker; the
 * queue per worker is unbounded but each request holds at most one job, and a request whose client
 * left is dropped before its pixels are sent.
 */

interface Pending {
  resolve: (b: Uint8Array) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: number;
}

export class JpegEncoderPool {
  #slots: Slot[] = [];
  #pending = new Map<number, Pending>();
  #next = 1;

  constructor(readonly size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL("./encode_worker.ts", import.meta.url), { type: "module" });
      const slot = { worker, busy: 0 };
      worker.onmessage = (e: MessageEvent<{ id: number; bytes?: Uint8Array; error?: string }>) => {
        slot.busy--;
        const p = this.#pending.get(e.data.id);
        if (!p) return;
        this.#pending.delete(e.data.id);
        if (e.data.bytes) p.resolve(e.data.bytes);
        else p.reject(new Error(`JPEG encoder: ${e.data.error}`));
      };
      this.#slots.push(slot);
    }
  }

  /** JPEG bytes of RGBA pixels (the buffer is transferred: the caller must not reuse it). */
  encode(rgba: Uint8Array, width: number, height: number, quality: number): Promise<Uint8Array> {
    const slot = this.#slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.#next++;
    slot.busy++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const own = rgba.byteOffset === 0 && rgba.byteLength === rgba.buffer.byteLength
        ? rgba
        : rgba.slice();
      slot.worker.postMessage({ id, rgba: own, width, height, quality }, [
        own.buffer as ArrayBuffer,
      ]);
    });
  }

  close(): void {
    for (const s of this.#slots) s.worker.terminate();
    for (const p of this.#pending.values()) p.reject(new Error("JPEG encoder closed"));
    this.#pending.clear();
    this.#slots = [];
  }
}
