/**
 * Builders for torch.save-style archives in tests and fuzz targets: a small ZIP writer (stored,
 * deflated, ZIP64, or entries given as raw compressed bodies with declared sizes), a pickle
 * opcode emitter, and a torch state-dict pickler. Hostile inputs are built with these in code,
 * so no large or malicious file is committed.
 */
import { crc32 } from "../../engine/io/zip.ts";

export const enc = new TextEncoder();

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function le(n: number, bytes: number): Uint8Array {
  const b = new Uint8Array(bytes);
  const dv = new DataView(b.buffer);
  if (bytes === 2) dv.setUint16(0, n, true);
  else if (bytes === 4) dv.setUint32(0, n, true);
  else dv.setBigUint64(0, BigInt(n), true);
  return b;
}

export async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(s).arrayBuffer());
}

export interface ZipIn {
  name: string;
  /** The entry's content (ignored when `raw` is given). */
  data: Uint8Array;
  deflate?: boolean;
  /** The entry as stored: a compressed body and the size and CRC its headers declare. */
  raw?: { body: Uint8Array; method: number; size: number; crc: number };
}

/** Builds a zip; `zip64` saturates the 32-bit fields and adds ZIP64 records, as big files do. */
export async function makeZip(files: ZipIn[], zip64 = false): Promise<Uint8Array> {
  const raw: ZipIn[] = [];
  for (const f of files) {
    raw.push(
      f.deflate && !f.raw
        ? {
          ...f,
          raw: {
            body: await deflateRaw(f.data),
            method: 8,
            size: f.data.length,
            crc: crc32(f.data),
          },
        }
        : f,
    );
  }
  return makeZipSync(raw, zip64);
}

/** {@link makeZip} for stored entries and entries given `raw` (no compression to await). */
export function makeZipSync(files: ZipIn[], zip64 = false): Uint8Array {
  const local: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const f of files) {
    if (f.deflate && !f.raw) throw new Error("makeZipSync: deflated entries need `raw`");
    const name = enc.encode(f.name);
    const body = f.raw?.body ?? f.data;
    const crc = f.raw?.crc ?? crc32(f.data);
    const method = f.raw?.method ?? 0;
    const size = f.raw?.size ?? f.data.length;
    const lh = concat([
      le(0x04034b50, 4),
      le(20, 2),
      le(0, 2),
      le(method, 2),
      le(0, 4),
      le(crc, 4),
      le(body.length, 4),
      le(size, 4),
      le(name.length, 2),
      le(0, 2),
      name,
    ]);
    const extra = zip64
      ? concat([le(1, 2), le(24, 2), le(size, 8), le(body.length, 8), le(offset, 8)])
      : new Uint8Array(0);
    const sat = (v: number) => (zip64 ? 0xffffffff : v);
    central.push(concat([
      le(0x02014b50, 4),
      le(45, 2),
      le(45, 2),
      le(0, 2),
      le(method, 2),
      le(0, 4),
      le(crc, 4),
      le(sat(body.length), 4),
      le(sat(size), 4),
      le(name.length, 2),
      le(extra.length, 2),
      le(0, 2),
      le(0, 2),
      le(0, 2),
      le(0, 4),
      le(sat(offset), 4),
      name,
      extra,
    ]));
    local.push(lh, body);
    offset += lh.length + body.length;
  }
  const cd = concat(central);
  const tail: Uint8Array[] = [];
  if (zip64) {
    const recPos = offset + cd.length;
    tail.push(concat([
      le(0x06064b50, 4),
      le(44, 8),
      le(45, 2),
      le(45, 2),
      le(0, 4),
      le(0, 4),
      le(files.length, 8),
      le(files.length, 8),
      le(cd.length, 8),
      le(offset, 8),
    ]));
    tail.push(concat([le(0x07064b50, 4), le(0, 4), le(recPos, 8), le(1, 4)]));
  }
  tail.push(concat([
    le(0x06054b50, 4),
    le(0, 2),
    le(0, 2),
    le(zip64 ? 0xffff : files.length, 2),
    le(zip64 ? 0xffff : files.length, 2),
    le(zip64 ? 0xffffffff : cd.length, 4),
    le(zip64 ? 0xffffffff : offset, 4),
    le(0, 2),
  ]));
  return concat([...local, cd, ...tail]);
}

/** Emits pickle protocol-2 opcodes. */
export class Pickler {
  #b: number[] = [];
  raw(...bytes: number[]): this {
    this.#b.push(...bytes);
    return this;
  }
  text(s: string): this {
    return this.raw(...enc.encode(s));
  }
  str(s: string): this {
    const u = enc.encode(s);
    return this.raw(0x58, ...le(u.length, 4), ...u);
  }
  int(n: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, n, true);
    return this.raw(0x4a, ...b);
  }
  global(module: string, name: string): this {
    return this.text(`c${module}\n${name}\n`);
  }
  tuple(items: (() => void)[]): this {
    this.raw(0x28);
    for (const f of items) f();
    return this.raw(0x74);
  }
  bytes(): Uint8Array {
    return new Uint8Array(this.#b);
  }
}

export interface TensorSpec {
  storage: string;
  key: string;
  numel: number;
  offset: number;
  shape: number[];
  stride: number[];
}

export type Tree = TensorSpec | number | string | Map<string, Tree>;

/** Emits the `_rebuild_tensor_v2(...)` call torch.save writes for one tensor. */
export function emitTensor(p: Pickler, v: TensorSpec): Pickler {
  return p.global("torch._utils", "_rebuild_tensor_v2").tuple([
    () =>
      p.tuple([
        () => p.str("storage"),
        () => p.global("torch", v.storage),
        () => p.str(v.key),
        () => p.str("cpu"),
        () => p.int(v.numel),
      ]).raw(0x51),
    () => p.int(v.offset),
    () => p.tuple(v.shape.map((d) => () => p.int(d))),
    () => p.tuple(v.stride.map((d) => () => p.int(d))),
    () => p.raw(0x89),
    () => p.global("collections", "OrderedDict").raw(0x29, 0x52),
  ]).raw(0x52);
}

/** Pickles a (nested) dict of tensors the way torch.save does (protocol 2). */
export function torchPickle(root: Map<string, Tree>): Uint8Array {
  const p = new Pickler().raw(0x80, 2);
  const emit = (v: Tree): void => {
    if (typeof v === "number") p.int(v);
    else if (typeof v === "string") p.str(v);
    else if (v instanceof Map) {
      p.raw(0x7d, 0x28);
      for (const [k, x] of v) {
        p.str(k);
        emit(x);
      }
      p.raw(0x75);
    } else emitTensor(p, v);
  };
  emit(root);
  return concat([p.bytes(), new Uint8Array([0x2e])]);
}

/**
 * A raw deflate stream of `size` zero bytes, written by hand (fixed Huffman codes: one literal 0,
 * then matches of 258 at distance 1, about 160:1) so a gigabyte-sized entry costs 7 MB and
 * little time to build.
 */
export function zerosDeflated(size: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((Math.ceil(size / 258) * 13) / 8) + 300);
  let bit = 0;
  const put = (v: number, n: number) => { // LSB-first bits
    for (let i = 0; i < n; i++, bit++) if ((v >> i) & 1) out[bit >> 3] |= 1 << (bit & 7);
  };
  const huff = (code: number, n: number) => { // Huffman codes go MSB first
    for (let i = n - 1; i >= 0; i--, bit++) if ((code >> i) & 1) out[bit >> 3] |= 1 << (bit & 7);
  };
  put(1, 1); // BFINAL
  put(1, 2); // BTYPE = fixed Huffman
  const literal0 = () => huff(0x30, 8);
  if (size > 0) literal0();
  let left = size - 1;
  for (; left >= 258; left -= 258) {
    huff(0b11000101, 8); // length code 285 = 258
    huff(0, 5); // distance code 0 = 1
  }
  for (; left > 0; left--) literal0();
  huff(0, 7); // end of block
  return out.subarray(0, (bit + 7) >> 3);
}

/** CRC-32 of `size` zero bytes, computed in chunks. */
export function zerosCrc(size: number): number {
  const chunk = new Uint8Array(1 << 20);
  let c = 0;
  for (let p = 0; p < size; p += chunk.length) {
    c = crc32(chunk.subarray(0, Math.min(chunk.length, size - p)), c);
  }
  return c;
}

// CPython `pickle.dumps` outputs (the unpickler is tested on them; fuzz targets mutate them).

const b64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/** `pickle.dumps(obj, protocol=2)` of a dict exercising containers, ints, floats, strings. */
export const PICKLE_P2 = b64(
  "gAJ9cQAoWAEAAABhcQFdcQIoSwFHQAQAAAAAAABYAQAAAHhxA06IiWVYAQAAAGJxBEsBSwJLA4dxBVgCAAAAdDFxBksHhXEHWAEAAABlcQgpWAMAAABiaWdxCYoJAAAAAAAAAABAWAMAAABuZWdxCkr7////WAQAAABuMzAwcQtNLAFYBgAAAG43MDAwMHEMSnARAQBYBgAAAG5lZ2JpZ3ENigYAAAAAAP9YAgAAAG9kcQ5jY29sbGVjdGlvbnMKT3JkZXJlZERpY3QKcQ8pUnEQKFgBAAAAa3ERSwFYAQAAAGpxEl1xE3VYAwAAAHVuaXEUWAYAAABow6lsbG9xFVgGAAAAbmVzdGVkcRZ9cRdoA31xGFgBAAAAeXEZRz/wAAAAAAAAc3N1Lg==",
);
/** The same plus bytes, set and frozenset, with `protocol=4` (FRAME, MEMOIZE, STACK_GLOBAL). */
export const PICKLE_P4 = b64(
  "gASVAgEAAAAAAAB9lCiMAWGUXZQoSwFHQAQAAAAAAACMAXiUToiJZYwBYpRLAUsCSwOHlIwCdDGUSweFlIwBZZQpjANiaWeUigkAAAAAAAAAAECMA25lZ5RK+////4wEbjMwMJRNLAGMBm43MDAwMJRKcBEBAIwGbmVnYmlnlIoGAAAAAAD/jAVieXRlc5RDAgABlIwCb2SUjAtjb2xsZWN0aW9uc5SMC09yZGVyZWREaWN0lJOUKVKUKIwBa5RLAYwBapRdlHWMA3VuaZSMBmjDqWxsb5SMAXOUj5QoSwFLApCMAmZzlChLA5GUjAZuZXN0ZWSUfZRoA32UjAF5lEc/8AAAAAAAAHNzdS4=",
);
/** `od = OrderedDict(w=1); od._metadata = OrderedDict([("", {"version": 1})])`, protocol 2. */
export const PICKLE_OD_METADATA = b64(
  "gAJjY29sbGVjdGlvbnMKT3JkZXJlZERpY3QKcQApUnEBWAEAAAB3cQJLAXN9cQNYCQAAAF9tZXRhZGF0YXEEaAApUnEFWAAAAABxBn1xB1gHAAAAdmVyc2lvbnEISwFzc3NiLg==",
);
/** protocol 2 with bytes: CPython pickles them via `_codecs.encode`, which is refused. */
export const PICKLE_P2_BYTES = b64(
  "gAJ9cQAoWAEAAABhcQFdcQIoSwFHQAQAAAAAAABYAQAAAHhxA06IiWVYAQAAAGJxBEsBSwJLA4dxBVgCAAAAdDFxBksHhXEHWAEAAABlcQgpWAMAAABiaWdxCYoJAAAAAAAAAABAWAMAAABuZWdxCkr7////WAQAAABuMzAwcQtNLAFYBgAAAG43MDAwMHEMSnARAQBYBgAAAG5lZ2JpZ3ENigYAAAAAAP9YBQAAAGJ5dGVzcQ5jX2NvZGVjcwplbmNvZGUKcQ9YAgAAAAABcRBYBgAAAGxhdGluMXERhnESUnETWAIAAABvZHEUY2NvbGxlY3Rpb25zCk9yZGVyZWREaWN0CnEVKVJxFihYAQAAAGtxF0sBWAEAAABqcRhdcRl1WAMAAAB1bmlxGlgGAAAAaMOpbGxvcRtYAQAAAHNxHGNfX2J1aWx0aW5fXwpzZXQKcR1dcR4oSwFLAmWFcR9ScSBYAgAAAGZzcSFjX19idWlsdGluX18KZnJvemVuc2V0CnEiXXEjSwNhhXEkUnElWAYAAABuZXN0ZWRxJn1xJ2gDfXEoWAEAAAB5cSlHP/AAAAAAAABzc3Uu",
);
