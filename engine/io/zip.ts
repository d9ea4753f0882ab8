/**
 * Minimal ZIP reader for checkpoints: central directory (with ZIP64), stored and deflated entries.
 * Reads through a file handle with seeks, so only the directory and the entries asked for are in
 * memory: multi-GiB checkpoints never need one buffer for the whole file.
 */
import { InputError } from "./errors.ts";

/** One file in the archive, as the central directory describes it. */
export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOC = 0x07064b50;

let crcTables: Uint32Array | undefined;

/** CRC-32 (IEEE) of `bytes`, continuing from `crc` when given; slice-by-8 (about 1 GB/s). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!crcTables) {
    crcTables = new Uint32Array(8 * 256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTables[i] = c >>> 0;
    }
    for (let i = 0; i < 256; i++) {
      for (let t = 1; t < 8; t++) {
        const prev = crcTables[(t - 1) * 256 + i];
        crcTables[t * 256 + i] = crcTables[prev & 0xff] ^ (prev >>> 8);
      }
    }
  }
  const T = crcTables;
  let c = ~crc;
  const n = bytes.length;
  const n8 = n - (n % 8);
  let i = 0;
  for (; i < n8; i += 8) {
    const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c = T[1792 + (a & 0xff)] ^ T[1536 + ((a >>> 8) & 0xff)] ^ T[1280 + ((a >>> 16) & 0xff)] ^
      T[1024 + (a >>> 24)] ^ T[768 + bytes[i + 4]] ^ T[512 + bytes[i + 5]] ^
      T[256 + bytes[i + 6]] ^ T[bytes[i + 7]];
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function u64(dv: DataView, off: number, what: string, file: string): number {
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InputError(`${file}: zip ${what} ${v} is too large`);
  }
  return Number(v);
}

/** Options for {@link ZipReader.read}. */
export interface ZipReadOptions {
  /** Check the entry's CRC-32 (default true; costs about a second per GiB). */
  verifyCrc?: boolean;
  /**
   * Keep only the first `limit` bytes (default: the whole entry). A deflated entry is inflated as
   * a stream: only the kept bytes are ever held in memory; the rest is inflated only when the
   * CRC is checked, and then only passed through the CRC.
   */
  limit?: number;
}

/** A ZIP archive opened for reading; call {@link close} when done. */
export class ZipReader {
  #file: Deno.FsFile;
  #byName = new Map<string, ZipEntry>();

  private constructor(
    readonly path: string,
    file: Deno.FsFile,
    readonly size: number,
    readonly entries: ZipEntry[],
  ) {
    this.#file = file;
    for (const e of entries) this.#byName.set(e.name, e);
  }

  /** Opens `path` and reads its central directory; errors name the file and the problem. */
  static async open(path: string): Promise<ZipReader> {
    const file = await Deno.open(path, { read: true });
    try {
      const size = (await file.stat()).size;
      const entries = await readDirectory(path, file, size);
      return new ZipReader(path, file, size, entries);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** The entry called `name`, if any. */
  entry(name: string): ZipEntry | undefined {
    return this.#byName.get(name);
  }

  /** Reads `len` bytes at `pos` into a fresh buffer, failing clearly at end of file. */
  async readAt(pos: number, len: number): Promise<Uint8Array> {
    if (pos < 0 || pos + len > this.size) {
      throw new InputError(
        `${this.path}: zip wants bytes [${pos}, ${
          pos + len
        }) but the file has ${this.size} bytes (truncated or corrupt)`,
      );
    }
    return await readFullyAt(this.#file, this.path, pos, len);
  }

  /** Byte offset of an entry's data (after its local header). */
  async dataOffset(e: ZipEntry): Promise<number> {
    const where = `${this.path}: zip entry ${JSON.stringify(e.name)}`;
    const h = await this.readAt(e.localHeaderOffset, 30).catch((err) => {
      throw new InputError(`${where}: local header unreadable (${err.message})`);
    });
    const dv = new DataView(h.buffer);
    if (dv.getUint32(0, true) !== SIG_LOCAL) {
      throw new InputError(`${where}: no local header signature at byte ${e.localHeaderOffset}`);
    }
    const start = e.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
    if (start + e.compressedSize > this.size) {
      throw new InputError(
        `${where}: data [${start}, ${
          start + e.compressedSize
        }) runs past the end of the file (${this.size} bytes; truncated?)`,
      );
    }
    return start;
  }

  /**
   * The uncompressed contents of an entry (its first `opts.limit` bytes when given), in a fresh
   * buffer (byteOffset 0).
   */
  async read(entry: ZipEntry | string, opts: ZipReadOptions = {}): Promise<Uint8Array> {
    const e = typeof entry === "string" ? this.#byName.get(entry) : entry;
    if (!e) throw new InputError(`${this.path}: zip has no entry ${JSON.stringify(entry)}`);
    const where = `${this.path}: zip entry ${JSON.stringify(e.name)}`;
    if (e.flags & 1) throw new InputError(`${where}: encrypted entries are not supported`);
    const verify = opts.verifyCrc !== false;
    const keep = Math.min(e.size, opts.limit ?? e.size);
    if (!Number.isSafeInteger(keep) || keep < 0) {
      throw new InputError(`${where}: cannot read ${opts.limit} bytes of it`);
    }
    const start = await this.dataOffset(e);
    let out: Uint8Array;
    let crc: number;
    if (e.method === 0) {
      if (e.compressedSize !== e.size) {
        throw new InputError(
          `${where}: stored entry has compressed size ${e.compressedSize} != size ${e.size}`,
        );
      }
      out = await this.readAt(start, keep);
      crc = verify ? crc32(out) : 0;
      // The CRC covers the whole entry: pass the rest through it in bounded chunks.
      for (let p = keep; verify && p < e.size; p += CRC_CHUNK) {
        crc = crc32(await this.readAt(start + p, Math.min(CRC_CHUNK, e.size - p)), crc);
      }
    } else if (e.method === 8) {
      // deflate cannot expand more than ~1032:1; a larger declared size is a corrupt header.
      if (e.size > e.compressedSize * 1032 + 1024) {
        throw new InputError(
          `${where}: declared size ${e.size} is impossible for ${e.compressedSize} deflated bytes`,
        );
      }
      ({ out, crc } = await inflateRaw(
        await this.readAt(start, e.compressedSize),
        e.size,
        keep,
        verify,
        where,
      ));
    } else {
      throw new InputError(
        `${where}: compression method ${e.method} is not supported (only 0 and 8)`,
      );
    }
    if (verify) {
      const c = crc;
      if (c !== e.crc32) {
        throw new InputError(
          `${where}: CRC-32 mismatch (got ${c.toString(16)}, expected ${
            e.crc32.toString(16)
          }): file is corrupt`,
        );
      }
    }
    return out;
  }

  /** Closes the file handle. */
  close(): void {
    this.#file.close();
  }
}

/** Compressed bytes fed to the inflater at a time: at most ~16 MiB come out of one piece. */
const INFLATE_PIECE = 16384;

/** Chunk in which stored bytes past a read's limit pass through the CRC. */
const CRC_CHUNK = 1 << 22;

/**
 * Inflates `src` (raw deflate, `size` bytes declared) as a stream, keeping the first `keep`
 * bytes. With `verify` the rest is inflated too, through the CRC only, so memory stays `keep`;
 * without it inflation stops once `keep` bytes are out.
 */
async function inflateRaw(
  src: Uint8Array,
  size: number,
  keep: number,
  verify: boolean,
  where: string,
): Promise<{ out: Uint8Array; crc: number }> {
  const out = new Uint8Array(keep);
  let off = 0;
  let crc = 0;
  // Fed in small pieces: the decompressor emits what each piece inflates to at once, and deflate
  // expands up to 1032:1, so one whole-entry piece could come out as one gigabyte-sized chunk.
  let fed = 0;
  const input = new ReadableStream<Uint8Array<ArrayBuffer>>({
    pull(c) {
      if (fed >= src.length) return c.close();
      c.enqueue(src.slice(fed, fed += INFLATE_PIECE) as Uint8Array<ArrayBuffer>);
    },
  });
  const stream = input.pipeThrough(new DecompressionStream("deflate-raw"));
  try {
    for await (const chunk of stream) {
      if (off + chunk.length > size) {
        throw new Error(`inflates to more than the declared ${size} bytes`);
      }
      if (off < keep) out.set(chunk.subarray(0, keep - off), off);
      if (verify) crc = crc32(chunk, crc);
      off += chunk.length;
      if (!verify && off >= keep) break; // leaving the loop cancels the stream
    }
  } catch (e) {
    throw new InputError(`${where}: deflate data is corrupt (${(e as Error).message})`, {
      cause: e,
    });
  }
  if (verify ? off !== size : off < keep) {
    throw new InputError(`${where}: inflated to ${off} bytes, expected ${size}`);
  }
  return { out, crc };
}

async function readFullyAt(
  file: Deno.FsFile,
  path: string,
  pos: number,
  len: number,
): Promise<Uint8Array> {
  const buf = new Uint8Array(len);
  await file.seek(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < len) {
    const got = await file.read(buf.subarray(off));
    if (got === null) throw new InputError(`${path}: unexpected end of file at byte ${pos + off}`);
    off += got;
  }
  return buf;
}

async function readDirectory(path: string, file: Deno.FsFile, size: number): Promise<ZipEntry[]> {
  const readAt = (pos: number, len: number) => readFullyAt(file, path, pos, len);
  if (size < 22) throw new InputError(`${path}: not a zip file (only ${size} bytes)`);
  // The end-of-central-directory record sits in the last 22 + 65535 (max comment) bytes.
  const tailLen = Math.min(size, 22 + 65535);
  const tail = await readAt(size - tailLen, tailLen);
  const tdv = new DataView(tail.buffer);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tdv.getUint32(i, true) === SIG_EOCD && i + 22 + tdv.getUint16(i + 20, true) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw new InputError(
      `${path}: not a zip file or truncated (no end-of-central-directory record found)`,
    );
  }
  let count = tdv.getUint16(eocd + 10, true);
  let cdSize = tdv.getUint32(eocd + 12, true);
  let cdOffset = tdv.getUint32(eocd + 16, true);
  const eocdPos = size - tailLen + eocd;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // ZIP64: a locator just before the EOCD points at the ZIP64 EOCD record.
    if (eocdPos < 20) throw new InputError(`${path}: ZIP64 locator missing (file truncated?)`);
    const loc = await readAt(eocdPos - 20, 20);
    const ldv = new DataView(loc.buffer);
    if (ldv.getUint32(0, true) !== SIG_EOCD64_LOC) {
      throw new InputError(`${path}: zip needs ZIP64 but has no ZIP64 end-of-directory locator`);
    }
    const recPos = u64(ldv, 8, "ZIP64 record offset", path);
    if (recPos + 56 > size) {
      throw new InputError(
        `${path}: ZIP64 end-of-directory record at ${recPos} is past the file end`,
      );
    }
    const rec = await readAt(recPos, 56);
    const rdv = new DataView(rec.buffer);
    if (rdv.getUint32(0, true) !== SIG_EOCD64) {
      throw new InputError(`${path}: no ZIP64 end-of-directory record at byte ${recPos}`);
    }
    count = u64(rdv, 32, "entry count", path);
    cdSize = u64(rdv, 40, "central directory size", path);
    cdOffset = u64(rdv, 48, "central directory offset", path);
  }
  if (cdOffset + cdSize > size || count * 46 > cdSize) {
    throw new InputError(
      `${path}: zip central directory (${count} entries, ${cdSize} bytes at ${cdOffset}) ` +
        `does not fit in the file (${size} bytes; truncated or corrupt)`,
    );
  }
  const cd = await readAt(cdOffset, cdSize);
  const dv = new DataView(cd.buffer);
  const dec = new TextDecoder();
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL) {
      throw new InputError(
        `${path}: zip central directory entry ${i} is corrupt (at byte ${cdOffset + p})`,
      );
    }
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    const crc = dv.getUint32(p + 16, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let usize = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdSize) {
      throw new InputError(`${path}: zip central directory entry ${i} runs past the directory end`);
    }
    const name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extended information: present fields are those whose 32-bit value is saturated.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = dv.getUint16(x, true);
      const len = dv.getUint16(x + 2, true);
      if (x + 4 + len > xEnd) {
        throw new InputError(
          `${path}: zip entry ${JSON.stringify(name)}: extra field runs past its end`,
        );
      }
      if (id === 0x0001) {
        let q = x + 4;
        const take = (what: string) => {
          if (q + 8 > x + 4 + len) {
            throw new InputError(
              `${path}: zip entry ${JSON.stringify(name)}: ZIP64 field lacks ${what}`,
            );
          }
          const v = u64(dv, q, what, path);
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = take("size");
        if (compressedSize === 0xffffffff) compressedSize = take("compressed size");
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take("local header offset");
      }
      x += 4 + len;
    }
    if (localHeaderOffset + 30 > size) {
      throw new InputError(
        `${path}: zip entry ${
          JSON.stringify(name)
        }: local header offset ${localHeaderOffset} is past the file end (${size} bytes)`,
      );
    }
    entries.push({
      name,
      method,
      flags,
      crc32: crc,
      compressedSize,
      size: usize,
      localHeaderOffset,
    });
    p = end;
  }
  return entries;
}
