/**
 * Tiled pyramidal TIFF writer laid out as scanners and libvips write slides: level 0 first, then
 * one reduced-resolution IFD (NewSubfileType=1) per level, each half the size of the previous.
 *
 * Memory stays bounded: level-0 tiles come from a callback and lower levels are built by 2x2
 * box-averaging while walking the pyramid as a quadtree (each tile is produced once and only a
 * few tiles per level are alive), and encoded tiles go straight to disk. A tile source may return
 * a {@link UniformTile} (one colour, e.g. blank glass): such tiles are encoded once per colour, and
 * lower-level tiles made of one colour stay uniform without being computed, so a mostly-empty
 * 40 000² slide is written in seconds. The file is written to a temporary sibling and renamed
 * into place. Classic TIFF unless it would pass 4 GiB (or BigTIFF is requested): 16 bytes are
 * reserved for the header so the choice can be made last.
 */
import { encode as encodeJpeg } from "jpeg-js";
import { deflateSync } from "node:zlib";
import { TAG, TYPE, TYPE_SIZES } from "./tiff_tags.ts";

/** How tiles are compressed. JPEG is 3-channel only (YCbCr 4:4:4 as jpeg-js writes it). */
export type TiffCompression = "jpeg" | "deflate" | "none";

export interface TiffWriterOptions {
  width: number;
  height: number;
  /** 1 (8-bit gray, e.g. a probability map) or 3 (RGB). */
  channels: 1 | 3;
  /** Square tile size, a multiple of 16 (default 256). */
  tileSize?: number;
  compression?: TiffCompression;
  /** JPEG quality 1..100 (default 85). */
  quality?: number;
  /** Microns per pixel at level 0 (written as px/cm resolution tags). */
  mpp?: number | [number, number];
  /** Force BigTIFF; by default it is used only when the file would exceed 4 GiB. */
  bigTiff?: boolean;
  /** Number of pyramid levels (default: halve until the level fits in one tile). */
  levels?: number;
  /** ImageDescription of level 0. */
  description?: string;
  /** Value of pixels with no source data when building lower levels (default 255, white). */
  fill?: number;
}

/** A tile of one colour (`channels` values 0..255): the same pixels as a filled buffer. */
export interface UniformTile {
  uniform: readonly number[];
}

/**
 * Produces level-0 tile (tx, ty): tileSize*tileSize*channels bytes, row-major, full tile even
 * at the right/bottom edges (pixels past the image are stored but never read back), a
 * {@link UniformTile}, or null for a missing tile (written sparse: TileByteCounts 0; a
 * lower-level tile whose four sources are all missing is missing too).
 */
export type TileSource = (
  tx: number,
  ty: number,
) =>
  | Uint8Array
  | UniformTile
  | null
  | Promise<Uint8Array | UniformTile | null>;

/** A tile in flight: pixels, one colour, or missing. */
type Tile = Uint8Array | UniformTile | null;

const isUniform = (t: Tile): t is UniformTile => t !== null && !(t instanceof Uint8Array);

/** Summary of a written file. */
export interface WrittenTiff {
  path: string;
  bytes: number;
  bigTiff: boolean;
  levels: { width: number; height: number; downsample: number }[];
}

interface LevelPlan {
  width: number;
  height: number;
  across: number;
  down: number;
  offsets: number[];
  counts: number[];
}

/** Buffered sequential writer that knows its position. */
class Sink {
  pos = 0;
  #chunks: Uint8Array[] = [];
  #pending = 0;
  constructor(readonly file: Deno.FsFile) {}
  async write(b: Uint8Array): Promise<number> {
    const at = this.pos;
    this.#chunks.push(b);
    this.#pending += b.length;
    this.pos += b.length;
    if (this.#pending >= 4 << 20) await this.flush();
    return at;
  }
  async flush(): Promise<void> {
    if (this.#pending === 0) return;
    const all = new Uint8Array(this.#pending);
    let o = 0;
    for (const c of this.#chunks) {
      all.set(c, o);
      o += c.length;
    }
    this.#chunks = [];
    this.#pending = 0;
    let done = 0;
    while (done < all.length) done += await this.file.write(all.subarray(done));
  }
}

/** One IFD entry before layout: tag, type and values. */
interface Field {
  tag: number;
  type: number;
  values: number[] | Uint8Array;
}

/** Serialises one IFD located at `at`; values that do not fit inline follow the entries. */
function buildIfd(fields: Field[], at: number, big: boolean, next: number): Uint8Array {
  fields.sort((a, b) => a.tag - b.tag);
  const entrySize = big ? 20 : 12, inline = big ? 8 : 4, head = big ? 8 : 2, tail = big ? 8 : 4;
  const dirBytes = head + fields.length * entrySize + tail;
  let extra = 0;
  const byteLen = (
    f: Field,
  ) => (f.type === TYPE.RATIONAL ? f.values.length * 4 : f.values.length * TYPE_SIZES[f.type]);
  for (const f of fields) {
    const n = byteLen(f);
    if (n > inline) extra += n + (n & 1);
  }
  const out = new Uint8Array(dirBytes + extra);
  const v = new DataView(out.buffer);
  const putOff = (o: number, x: number) => {
    if (big) v.setBigUint64(o, BigInt(x), true);
    else v.setUint32(o, x, true);
  };
  if (big) v.setBigUint64(0, BigInt(fields.length), true);
  else v.setUint16(0, fields.length, true);
  let ext = dirBytes;
  fields.forEach((f, i) => {
    const e = head + i * entrySize;
    const count = f.type === TYPE.RATIONAL ? f.values.length / 2 : f.values.length;
    v.setUint16(e, f.tag, true);
    v.setUint16(e + 2, f.type, true);
    if (big) v.setBigUint64(e + 4, BigInt(count), true);
    else v.setUint32(e + 4, count, true);
    const n = byteLen(f);
    let o = e + (big ? 12 : 8);
    if (n > inline) {
      putOff(o, at + ext);
      o = ext;
      ext += n + (n & 1);
    }
    for (let k = 0; k < f.values.length; k++) {
      const x = f.values[k];
      switch (f.type) {
        case TYPE.BYTE:
        case TYPE.ASCII:
          v.setUint8(o + k, x);
          break;
        case TYPE.SHORT:
          v.setUint16(o + 2 * k, x, true);
          break;
        case TYPE.LONG:
        case TYPE.RATIONAL:
          v.setUint32(o + 4 * k, x, true);
          break;
        case TYPE.LONG8:
          v.setBigUint64(o + 8 * k, BigInt(x), true);
          break;
      }
    }
  });
  putOff(head + fields.length * entrySize, next);
  return out;
}

/** Rational approximation num/den of a positive resolution. */
function rational(x: number): number[] {
  const den = 10000;
  return [Math.min(0xffffffff, Math.round(x * den)), den];
}

/** 2x2 box average of four child tiles (null = absent) into one tile of the next level. */
function downsampleTile(
  kids: (Uint8Array | null)[],
  tileSize: number,
  ch: number,
  fill: number,
): Uint8Array {
  const out = new Uint8Array(tileSize * tileSize * ch).fill(fill);
  const half = tileSize / 2;
  for (let q = 0; q < 4; q++) {
    const src = kids[q];
    if (!src) continue;
    const ox = (q & 1) * half, oy = (q >> 1) * half;
    for (let y = 0; y < half; y++) {
      const r0 = 2 * y * tileSize, r1 = r0 + tileSize;
      let o = ((oy + y) * tileSize + ox) * ch;
      for (let x = 0; x < half; x++) {
        const a = (r0 + 2 * x) * ch, b = (r1 + 2 * x) * ch;
        for (let c = 0; c < ch; c++, o++) {
          out[o] = (src[a + c] + src[a + ch + c] + src[b + c] + src[b + ch + c] + 2) >> 2;
        }
      }
    }
  }
  return out;
}

function encodeTile(
  tile: Uint8Array,
  tileSize: number,
  o: Required<Pick<TiffWriterOptions, "channels" | "compression" | "quality">>,
): Uint8Array {
  if (o.compression === "none") return tile;
  if (o.compression === "deflate") return new Uint8Array(deflateSync(tile, { level: 6 }));
  const rgba = new Uint8Array(tileSize * tileSize * 4);
  for (let i = 0, n = tileSize * tileSize; i < n; i++) {
    rgba[4 * i] = tile[3 * i];
    rgba[4 * i + 1] = tile[3 * i + 1];
    rgba[4 * i + 2] = tile[3 * i + 2];
    rgba[4 * i + 3] = 255;
  }
  const j = encodeJpeg({ data: rgba, width: tileSize, height: tileSize }, o.quality).data;
  return new Uint8Array(j.buffer, j.byteOffset, j.byteLength);
}

/** Writes a tiled pyramidal TIFF to `path` (atomically) from level-0 tiles. */
export async function writePyramidTiff(
  path: string,
  opts: TiffWriterOptions,
  source: TileSource,
): Promise<WrittenTiff> {
  const tileSize = opts.tileSize ?? 256;
  const ch = opts.channels;
  const compression = opts.compression ?? "jpeg";
  const quality = opts.quality ?? 85;
  const { width, height } = opts;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`writePyramidTiff: bad size ${width}x${height}`);
  }
  if (!Number.isInteger(tileSize) || tileSize < 16 || tileSize % 16) {
    throw new Error(`writePyramidTiff: tileSize must be a multiple of 16, got ${tileSize}`);
  }
  if (ch !== 1 && ch !== 3) throw new Error(`writePyramidTiff: channels must be 1 or 3`);
  if (compression === "jpeg" && ch !== 3) {
    throw new Error("writePyramidTiff: JPEG needs 3 channels; use deflate for gray images");
  }
  const plans: LevelPlan[] = [];
  let w = width, h = height;
  const maxLevels = opts.levels ?? 64;
  for (;;) {
    const across = Math.ceil(w / tileSize), down = Math.ceil(h / tileSize);
    plans.push({ width: w, height: h, across, down, offsets: [], counts: [] });
    if (plans.length >= maxLevels || (opts.levels === undefined && across === 1 && down === 1)) {
      break;
    }
    if (w < 2 || h < 2) break;
    w = Math.floor(w / 2);
    h = Math.floor(h / 2);
  }
  for (const p of plans) {
    p.offsets = new Array(p.across * p.down).fill(0);
    p.counts = new Array(p.across * p.down).fill(0);
  }
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  const enc = { channels: ch, compression, quality };
  try {
    const sink = new Sink(file);
    await sink.write(new Uint8Array(16)); // header, patched at the end
    // Uniform tiles: encoded once per colour; pixel buffers kept for a few colours.
    const uniformBytes = new Map<string, Uint8Array>();
    const uniformPixels = new Map<string, Uint8Array>();
    const pixelsOf = (t: UniformTile): Uint8Array => {
      const key = t.uniform.join(",");
      let px = uniformPixels.get(key);
      if (!px) {
        px = new Uint8Array(tileSize * tileSize * ch);
        for (let i = 0; i < px.length; i += ch) {
          for (let c = 0; c < ch; c++) px[i + c] = t.uniform[c];
        }
        if (uniformPixels.size >= 16) uniformPixels.clear();
        uniformPixels.set(key, px);
      }
      return px;
    };
    const store = async (k: number, tx: number, ty: number, tile: Uint8Array | UniformTile) => {
      let bytes: Uint8Array;
      if (isUniform(tile)) {
        const key = tile.uniform.join(",");
        bytes = uniformBytes.get(key) ?? encodeTile(pixelsOf(tile), tileSize, enc);
        if (uniformBytes.size >= 256) uniformBytes.clear();
        uniformBytes.set(key, bytes);
      } else bytes = encodeTile(tile, tileSize, enc);
      const i = ty * plans[k].across + tx;
      plans[k].offsets[i] = await sink.write(bytes);
      plans[k].counts[i] = bytes.length;
      done[k][i] = 1;
    };
    const done = plans.map((p) => new Uint8Array(p.across * p.down));
    const fill = opts.fill ?? 255;
    const produce = async (k: number, tx: number, ty: number): Promise<Tile> => {
      const p = plans[k];
      if (tx >= p.across || ty >= p.down) return null;
      let tile: Tile;
      if (k === 0) {
        tile = await source(tx, ty);
        if (tile === null) {
          done[0][ty * p.across + tx] = 1;
          return null;
        }
        if (isUniform(tile)) {
          const u = tile.uniform;
          if (u.length !== ch || u.some((v) => !Number.isInteger(v) || v < 0 || v > 255)) {
            throw new Error(
              `tile source returned uniform colour [${u.join(", ")}] for tile (${tx}, ${ty}), ` +
                `expected ${ch} integers 0..255`,
            );
          }
        } else if (tile.length !== tileSize * tileSize * ch) {
          throw new Error(
            `tile source returned ${tile.length} bytes for tile (${tx}, ${ty}), expected ${
              tileSize * tileSize * ch
            }`,
          );
        }
      } else {
        const kids = [];
        for (let q = 0; q < 4; q++) {
          kids.push(await produce(k - 1, 2 * tx + (q & 1), 2 * ty + (q >> 1)));
        }
        if (kids.every((t) => t === null)) {
          done[k][ty * p.across + tx] = 1;
          return null;
        }
        // One colour in, the same colour out ((4v + 2) >> 2 === v). Missing children are `fill`,
        // so they keep the tile uniform only when the colour is the fill; children past the
        // edge of the level below only feed pixels past the edge of this level (never read),
        // so they do not count.
        const below = plans[k - 1];
        const first = kids.find(isUniform);
        const same = first !== undefined &&
          kids.every((t, q) =>
            t === null
              ? 2 * tx + (q & 1) >= below.across || 2 * ty + (q >> 1) >= below.down ||
                first.uniform.every((v) => v === fill)
              : isUniform(t) && t.uniform.every((v, c) => v === first.uniform[c])
          );
        tile = same ? first : downsampleTile(
          kids.map((t) => (isUniform(t) ? pixelsOf(t) : t)),
          tileSize,
          ch,
          fill,
        );
      }
      await store(k, tx, ty, tile);
      return tile;
    };
    const top = plans.length - 1;
    // Quadtree walk from the coarsest level: each tile is made once, from its four children.
    for (let ty = 0; ty < plans[top].down; ty++) {
      for (let tx = 0; tx < plans[top].across; tx++) await produce(top, tx, ty);
    }
    // Level k tile (tx, ty) covers level k-1 tiles 2tx..2tx+1; a level-(k-1) grid can be one
    // tile larger than twice the level-k grid when sizes are odd: produce any leftovers.
    for (let k = top - 1; k >= 0; k--) {
      const p = plans[k];
      for (let ty = 0; ty < p.down; ty++) {
        for (let tx = 0; tx < p.across; tx++) {
          if (!done[k][ty * p.across + tx]) await produce(k, tx, ty);
        }
      }
    }
    await sink.flush();

    // Directories, after all tile data.
    const dataEnd = sink.pos;
    const big = opts.bigTiff ?? dataEnd + plans.length * 4096 +
            plans.reduce((s, p) => s + p.across * p.down * 16, 0) > 0xffffffff;
    const mpp = typeof opts.mpp === "number" ? [opts.mpp, opts.mpp] : opts.mpp;
    const photometric = ch === 1 ? 1 : compression === "jpeg" ? 6 : 2;
    const compCode = compression === "jpeg" ? 7 : compression === "deflate" ? 8 : 1;
    const ifdFields = plans.map((p, k) => {
      const fields: Field[] = [
        { tag: TAG.NewSubfileType, type: TYPE.LONG, values: [k === 0 ? 0 : 1] },
        { tag: TAG.ImageWidth, type: TYPE.LONG, values: [p.width] },
        { tag: TAG.ImageLength, type: TYPE.LONG, values: [p.height] },
        { tag: TAG.BitsPerSample, type: TYPE.SHORT, values: new Array(ch).fill(8) },
        { tag: TAG.Compression, type: TYPE.SHORT, values: [compCode] },
        { tag: TAG.Photometric, type: TYPE.SHORT, values: [photometric] },
        { tag: TAG.SamplesPerPixel, type: TYPE.SHORT, values: [ch] },
        { tag: TAG.PlanarConfiguration, type: TYPE.SHORT, values: [1] },
        { tag: TAG.TileWidth, type: TYPE.LONG, values: [tileSize] },
        { tag: TAG.TileLength, type: TYPE.LONG, values: [tileSize] },
        { tag: TAG.TileOffsets, type: big ? TYPE.LONG8 : TYPE.LONG, values: p.offsets },
        { tag: TAG.TileByteCounts, type: big ? TYPE.LONG8 : TYPE.LONG, values: p.counts },
      ];
      if (photometric === 6) {
        fields.push({ tag: TAG.YCbCrSubSampling, type: TYPE.SHORT, values: [1, 1] });
      }
      if (mpp) {
        const ds = [width / p.width, height / p.height];
        fields.push({
          tag: TAG.XResolution,
          type: TYPE.RATIONAL,
          values: rational(10000 / mpp[0] / ds[0]),
        });
        fields.push({
          tag: TAG.YResolution,
          type: TYPE.RATIONAL,
          values: rational(10000 / mpp[1] / ds[1]),
        });
        fields.push({ tag: TAG.ResolutionUnit, type: TYPE.SHORT, values: [3] });
      }
      if (k === 0 && opts.description) {
        fields.push({
          tag: TAG.ImageDescription,
          type: TYPE.ASCII,
          values: new TextEncoder().encode(opts.description + "\0"),
        });
      }
      return fields;
    });
    let at = dataEnd + (dataEnd & 1);
    if (at !== dataEnd) await sink.write(new Uint8Array(1));
    const sizes = ifdFields.map((f) => buildIfd(f.slice(), 0, big, 0).length);
    const firstIfd = at;
    for (let k = 0; k < plans.length; k++) {
      const next = k + 1 < plans.length ? at + sizes[k] : 0;
      await sink.write(buildIfd(ifdFields[k], at, big, next));
      at += sizes[k];
    }
    if (!big && at > 0xffffffff) {
      throw new Error("file exceeds 4 GiB as classic TIFF; pass bigTiff: true");
    }
    await sink.flush();
    const header = new Uint8Array(16);
    const hv = new DataView(header.buffer);
    header[0] = header[1] = 0x49;
    if (big) {
      hv.setUint16(2, 43, true);
      hv.setUint16(4, 8, true);
      hv.setBigUint64(8, BigInt(firstIfd), true);
    } else {
      hv.setUint16(2, 42, true);
      hv.setUint32(4, firstIfd, true);
    }
    await file.seek(0, Deno.SeekMode.Start);
    await file.write(header);
    file.close();
    await Deno.rename(tmp, path);
    return {
      path,
      bytes: at,
      bigTiff: big,
      levels: plans.map((p) => ({
        width: p.width,
        height: p.height,
        downsample: (width / p.width + height / p.height) / 2,
      })),
    };
  } catch (e) {
    try {
      file.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`could not write ${path}: ${(e as Error).message}`, { cause: e });
  }
}
