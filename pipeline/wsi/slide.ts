/**
 * Whole-slide image reader for tiled pyramidal TIFFs (generic TIFF, libvips/ASAP/scanner
 * layouts, BigTIFF), with OpenSlide's `read_region` semantics.
 *
 * The TIFF directory is parsed here rather than by geotiff.js: every count and offset is checked
 * against the file size before anything is allocated, and IFD chains are cycle-checked, so a
 * corrupt or truncated file gives an Error naming it instead of a huge allocation or a hang.
 * Tile bytes are read on demand through one `Deno.FsFile` (the file is never held in memory) and
 * decoded by `tile_codecs.ts` (LZW, Deflate, PackBits, raw; output bounded by the tile size,
 * which geotiff.js's codecs are not); JPEG tiles go through our own libjpeg-compatible decoder
 * so that colours match OpenSlide (fancy chroma upsampling).
 */
import { TileCache } from "./tile_cache.ts";
import { decodeJpegTile } from "./jpeg_decoder.ts";
import { ycbcrToRgbInPlace } from "./ycbcr.ts";
import { TAG, TYPE_SIZES } from "./tiff_tags.ts";
import { decodeTileData } from "./tile_codecs.ts";
import { InputError, isInputError } from "../../engine/io/errors.ts";

/** One pyramid level; `downsample` relative to level 0 as OpenSlide computes it. */
export interface SlideLevel {
  width: number;
  height: number;
  downsample: number;
  tileWidth: number;
  tileHeight: number;
}

/** An open slide. Regions are RGBA like OpenSlide `read_region`. */
export interface Slide {
  path: string;
  levels: SlideLevel[];
  /** Microns per pixel (x, y) at level 0 from the resolution tags; null when absent. */
  mpp: [number, number] | null;
  /** Level-0 compression name ("jpeg", "lzw", "deflate", "none", ...). */
  compression: string;
  /**
   * RGBA (w*h*4) of a region of `level`; (x0, y0) in level-0 pixels. Outside the slide and in
   * missing (zero-length) tiles: alpha 0 and rgb 0, as OpenSlide.
   */
  readRegion(level: number, x0: number, y0: number, w: number, h: number): Promise<Uint8Array>;
  /** RGB (w*h*3) of a region composited over `background` (default white glass). */
  readRegionRGB(
    level: number,
    x0: number,
    y0: number,
    w: number,
    h: number,
    background?: [number, number, number],
  ): Promise<Uint8Array>;
  /** Tile-cache statistics (for benchmarks and tests). */
  cacheStats(): { hits: number; misses: number; bytes: number; tiles: number };
  close(): Promise<void>;
}

/** TIFF compression codes to names. */
const COMPRESSION_NAMES: Record<number, string> = {
  1: "none",
  5: "lzw",
  6: "old-style jpeg",
  7: "jpeg",
  8: "deflate",
  32946: "deflate",
  32773: "packbits",
  33003: "jpeg2000 (Aperio YCbCr)",
  33005: "jpeg2000 (Aperio RGB)",
  34712: "jpeg2000",
  34887: "lerc",
  50000: "zstd",
  50001: "webp",
};
const SUPPORTED_COMPRESSIONS = new Set([1, 5, 7, 8, 32946, 32773]);

/** Human name of a TIFF compression code. */
function compressionName(code: number): string {
  return COMPRESSION_NAMES[code] ?? `unknown (${code})`;
}

/** Largest directory we accept (real slides have < 100 entries). */
const MAX_IFD_ENTRIES = 4096;
/** Largest number of IFDs walked (pyramids have < 20; guards against loops and garbage). */
const MAX_IFDS = 1024;
/** Largest JPEGTables accepted (parsed again for every tile; real ones are under 4 KiB). */
const MAX_JPEG_TABLES_BYTES = 65536;
/**
 * Largest compressed tile read, relative to its decoded size: 2x (LZW's worst expansion is
 * about 1.5x) plus 64 KiB. A byte count beyond it is a corrupt or hostile claim.
 */
const maxTileBytes = (decoded: number) => 2 * decoded + 65536;

interface Entry {
  type: number;
  count: number;
  /** File offset of the value bytes (inline values point into the IFD entry itself). */
  at: number;
}

interface Ifd {
  offset: number;
  entries: Map<number, Entry>;
  next: number;
}

/** Serialised random access to one file with bounds checks that name the file. */
class RandomAccess {
  #queue: Promise<unknown> = Promise.resolve();
  constructor(readonly path: string, readonly file: Deno.FsFile, readonly size: number) {}

  read(offset: number, length: number, what: string): Promise<Uint8Array> {
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
      offset + length > this.size
    ) {
      return Promise.reject(
        new InputError(
          `${this.path}: truncated or corrupt TIFF: ${what} at bytes [${offset}, ${
            offset + length
          }) lies outside the file (${this.size} bytes)`,
        ),
      );
    }
    const run = async () => {
      const buf = new Uint8Array(length);
      await this.file.seek(offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < length) {
        const n = await this.file.read(buf.subarray(done));
        if (n === null || n === 0) {
          throw new InputError(`${this.path}: unexpected end of file reading ${what} at ${offset}`);
        }
        done += n;
      }
      return buf;
    };
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => {});
    return p;
  }
}

/** Minimal TIFF/BigTIFF structure reader: header, IFD chains, tag values. */
class TiffStructure {
  le = true;
  big = false;
  constructor(readonly ra: RandomAccess) {}

  #view(b: Uint8Array): DataView {
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  #uint(v: DataView, off: number, bytes: number): number {
    switch (bytes) {
      case 1:
        return v.getUint8(off);
      case 2:
        return v.getUint16(off, this.le);
      case 4:
        return v.getUint32(off, this.le);
      default: {
        const x = v.getBigUint64(off, this.le);
        if (x > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new InputError(`${this.ra.path}: corrupt TIFF: 64-bit value ${x} is too large`);
        }
        return Number(x);
      }
    }
  }

  /** Reads the header; returns the first IFD offset. */
  async header(): Promise<number> {
    const path = this.ra.path;
    if (this.ra.size < 8) {
      throw new InputError(`${path}: not a TIFF file (only ${this.ra.size} bytes)`);
    }
    const h = await this.ra.read(0, Math.min(16, this.ra.size), "header");
    const v = this.#view(h);
    const bom = v.getUint16(0, false);
    if (bom === 0x4949) this.le = true;
    else if (bom === 0x4d4d) this.le = false;
    else throw new InputError(`${path}: not a TIFF file (bad byte-order mark)`);
    const magic = v.getUint16(2, this.le);
    if (magic === 42) {
      this.big = false;
      return v.getUint32(4, this.le);
    }
    if (magic === 43) {
      if (h.length < 16) throw new InputError(`${path}: truncated BigTIFF header`);
      this.big = true;
      if (v.getUint16(4, this.le) !== 8) {
        throw new InputError(`${path}: unsupported BigTIFF offset size ${v.getUint16(4, this.le)}`);
      }
      return this.#uint(v, 8, 8);
    }
    throw new InputError(`${path}: not a TIFF file (magic ${magic})`);
  }

  async readIfd(offset: number): Promise<Ifd> {
    const path = this.ra.path;
    const countBytes = this.big ? 8 : 2;
    const entrySize = this.big ? 20 : 12;
    const offBytes = this.big ? 8 : 4;
    const nb = await this.ra.read(offset, countBytes, "IFD entry count");
    const n = this.#uint(this.#view(nb), 0, countBytes);
    if (n === 0 || n > MAX_IFD_ENTRIES) {
      throw new InputError(`${path}: corrupt TIFF: IFD at ${offset} claims ${n} entries`);
    }
    const body = await this.ra.read(offset + countBytes, n * entrySize + offBytes, "IFD");
    const v = this.#view(body);
    const entries = new Map<number, Entry>();
    for (let i = 0; i < n; i++) {
      const e = i * entrySize;
      const tag = v.getUint16(e, this.le);
      const type = v.getUint16(e + 2, this.le);
      const count = this.#uint(v, e + 4, this.big ? 8 : 4);
      const size = TYPE_SIZES[type];
      if (size === undefined) continue; // unknown types are skipped, as the spec says
      const bytes = size * count;
      const inlineBytes = this.big ? 8 : 4;
      let at: number;
      if (bytes <= inlineBytes) at = offset + countBytes + e + (this.big ? 12 : 8);
      else {
        at = this.#uint(v, e + (this.big ? 12 : 8), offBytes);
        if (!Number.isSafeInteger(bytes) || at + bytes > this.ra.size) {
          throw new InputError(
            `${path}: truncated or corrupt TIFF: tag ${tag} values [${at}, ${
              at + bytes
            }) lie outside the file (${this.ra.size} bytes)`,
          );
        }
      }
      entries.set(tag, { type, count, at });
    }
    const next = this.#uint(v, n * entrySize, offBytes);
    return { offset, entries, next };
  }

  /** All numeric values of a tag (rationals as num/den floats); undefined if absent. */
  async values(ifd: Ifd, tag: number): Promise<number[] | undefined> {
    const e = ifd.entries.get(tag);
    if (!e) return undefined;
    const size = TYPE_SIZES[e.type];
    const b = await this.ra.read(e.at, size * e.count, `tag ${tag}`);
    const v = this.#view(b);
    const out = new Array<number>(e.count);
    for (let i = 0; i < e.count; i++) {
      const o = i * size;
      switch (e.type) {
        case 1:
        case 2:
        case 7:
          out[i] = v.getUint8(o);
          break;
        case 6:
          out[i] = v.getInt8(o);
          break;
        case 3:
          out[i] = v.getUint16(o, this.le);
          break;
        case 8:
          out[i] = v.getInt16(o, this.le);
          break;
        case 4:
        case 13:
          out[i] = v.getUint32(o, this.le);
          break;
        case 9:
          out[i] = v.getInt32(o, this.le);
          break;
        case 5: {
          const den = v.getUint32(o + 4, this.le);
          out[i] = den === 0 ? NaN : v.getUint32(o, this.le) / den;
          break;
        }
        case 10: {
          const den = v.getInt32(o + 4, this.le);
          out[i] = den === 0 ? NaN : v.getInt32(o, this.le) / den;
          break;
        }
        case 11:
          out[i] = v.getFloat32(o, this.le);
          break;
        case 12:
          out[i] = v.getFloat64(o, this.le);
          break;
        case 17:
          out[i] = Number(v.getBigInt64(o, this.le));
          break;
        default:
          out[i] = this.#uint(v, o, 8);
      }
    }
    return out;
  }

  async value(ifd: Ifd, tag: number): Promise<number | undefined> {
    const e = ifd.entries.get(tag);
    if (!e || e.count < 1) return undefined;
    if (e.count > 64) return undefined;
    return (await this.values(ifd, tag))![0];
  }

  bytes(ifd: Ifd, tag: number): Promise<Uint8Array | undefined> {
    const e = ifd.entries.get(tag);
    if (!e) return Promise.resolve(undefined);
    return this.ra.read(e.at, TYPE_SIZES[e.type] * e.count, `tag ${tag}`);
  }

  /** Every IFD of the main chain, followed by each one's SubIFDs, cycle- and count-checked. */
  async allIfds(first: number): Promise<Ifd[]> {
    const seen = new Set<number>();
    const out: Ifd[] = [];
    const walk = async (start: number) => {
      let off = start;
      while (off !== 0) {
        if (seen.has(off)) throw new InputError(`${this.ra.path}: corrupt TIFF: IFD chain loops`);
        if (seen.size >= MAX_IFDS) {
          throw new InputError(`${this.ra.path}: corrupt TIFF: more than ${MAX_IFDS} IFDs`);
        }
        seen.add(off);
        const ifd = await this.readIfd(off);
        out.push(ifd);
        const sub = ifd.entries.get(TAG.SubIFDs);
        if (sub && sub.count <= MAX_IFDS) {
          for (const s of (await this.values(ifd, TAG.SubIFDs))!) await walk(s);
        }
        off = ifd.next;
      }
    };
    await walk(first);
    return out;
  }
}

/** Everything needed to read tiles of one level. */
interface LevelData extends SlideLevel {
  index: number;
  compression: number;
  photometric: number;
  samples: number;
  predictor: number;
  jpegTables?: Uint8Array;
  subsampling: [number, number];
  offsets: number[];
  counts: number[];
  across: number;
  down: number;
}

/** Reads the level description of a tiled IFD, or null when the IFD is not a usable tiled image. */
async function describe(
  t: TiffStructure,
  ifd: Ifd,
): Promise<Omit<LevelData, "downsample" | "index"> | null> {
  if (!ifd.entries.has(TAG.TileWidth) || !ifd.entries.has(TAG.TileOffsets)) return null;
  const path = t.ra.path;
  const width = await t.value(ifd, TAG.ImageWidth);
  const height = await t.value(ifd, TAG.ImageLength);
  const tileWidth = await t.value(ifd, TAG.TileWidth);
  const tileHeight = await t.value(ifd, TAG.TileLength);
  for (
    const [k, v] of [["ImageWidth", width], ["ImageLength", height], ["TileWidth", tileWidth], [
      "TileLength",
      tileHeight,
    ]] as const
  ) {
    if (v === undefined || !Number.isInteger(v) || v < 1 || v > 2 ** 31) {
      throw new InputError(`${path}: corrupt TIFF: ${k} is ${v} in IFD at ${ifd.offset}`);
    }
  }
  if (tileWidth! * tileHeight! > 1 << 24) {
    throw new InputError(
      `${path}: corrupt TIFF: tile size ${tileWidth}x${tileHeight} is implausible`,
    );
  }
  const compression = (await t.value(ifd, TAG.Compression)) ?? 1;
  const photometric = (await t.value(ifd, TAG.Photometric)) ?? 2;
  const samples = (await t.value(ifd, TAG.SamplesPerPixel)) ?? 1;
  const bits = (await t.values(ifd, TAG.BitsPerSample)) ?? [1];
  const planar = (await t.value(ifd, TAG.PlanarConfiguration)) ?? 1;
  const predictor = (await t.value(ifd, TAG.Predictor)) ?? 1;
  const sub = (await t.values(ifd, TAG.YCbCrSubSampling)) ?? [2, 2];
  const across = Math.ceil(width! / tileWidth!);
  const down = Math.ceil(height! / tileHeight!);
  const nTiles = across * down;
  const oe = ifd.entries.get(TAG.TileOffsets)!;
  const ce = ifd.entries.get(TAG.TileByteCounts);
  if (!ce || oe.count !== nTiles || ce.count !== nTiles) {
    throw new InputError(
      `${path}: corrupt TIFF: IFD at ${ifd.offset} has ${oe.count} tile offsets and ${ce?.count} ` +
        `byte counts for ${across}x${down} tiles`,
    );
  }
  if (!SUPPORTED_COMPRESSIONS.has(compression)) {
    throw new InputError(
      `${path}: cannot decode TIFF compression ${compression} (${compressionName(compression)})`,
    );
  }
  if (bits.some((b) => b !== 8) || ![1, 3, 4].includes(samples) || planar !== 1) {
    throw new InputError(
      `${path}: unsupported pixel layout (BitsPerSample ${bits.join(",")}, SamplesPerPixel ` +
        `${samples}, PlanarConfiguration ${planar}); 8-bit interleaved gray/RGB/RGBA is supported`,
    );
  }
  if (predictor !== 1 && (predictor !== 2 || compression === 7)) {
    throw new InputError(
      `${path}: unsupported TIFF Predictor ${predictor} (1, or 2 with LZW/Deflate)`,
    );
  }
  if (photometric === 6 && compression !== 7 && (sub[0] !== 1 || sub[1] !== 1)) {
    throw new InputError(`${path}: subsampled YCbCr without JPEG compression is not supported`);
  }
  const offsets = (await t.values(ifd, TAG.TileOffsets))!;
  const counts = (await t.values(ifd, TAG.TileByteCounts))!;
  for (let i = 0; i < nTiles; i++) {
    if (counts[i] > 0 && offsets[i] + counts[i] > t.ra.size) {
      throw new InputError(
        `${path}: truncated or corrupt TIFF: tile ${i} of IFD at ${ifd.offset} needs bytes up to ` +
          `${offsets[i] + counts[i]} but the file has ${t.ra.size}`,
      );
    }
  }
  const tablesEntry = ifd.entries.get(TAG.JPEGTables);
  if (compression === 7 && tablesEntry && tablesEntry.count > MAX_JPEG_TABLES_BYTES) {
    throw new InputError(
      `${path}: corrupt TIFF: JPEGTables of IFD at ${ifd.offset} claims ${tablesEntry.count} ` +
        `bytes (real tables are a few KiB; at most ${MAX_JPEG_TABLES_BYTES})`,
    );
  }
  const jpegTables = compression === 7 ? await t.bytes(ifd, TAG.JPEGTables) : undefined;
  return {
    width: width!,
    height: height!,
    tileWidth: tileWidth!,
    tileHeight: tileHeight!,
    compression,
    photometric,
    samples,
    predictor,
    jpegTables,
    subsampling: [sub[0], sub[1]],
    offsets,
    counts,
    across,
    down,
  };
}

/** mpp from the resolution tags: px/cm -> 10000/res, px/inch -> 25400/res. */
async function readMpp(t: TiffStructure, ifd: Ifd): Promise<[number, number] | null> {
  const xr = await t.value(ifd, TAG.XResolution);
  const yr = await t.value(ifd, TAG.YResolution);
  const unit = (await t.value(ifd, TAG.ResolutionUnit)) ?? 2;
  if (!xr || !yr || !Number.isFinite(xr) || !Number.isFinite(yr) || xr <= 0 || yr <= 0) {
    return null;
  }
  const k = unit === 3 ? 10000 : unit === 2 ? 25400 : 0;
  if (k === 0) return null;
  return [k / xr, k / yr];
}

/**
 * Opens a tiled pyramidal TIFF. Levels are the first (tiled) image plus every other tiled image
 * (main chain or SubIFDs) whose aspect ratio matches level 0 and that is not a mask; stripped
 * images (labels, macros, thumbnails) are skipped.
 */
export async function openSlide(path: string, opts: { cacheBytes?: number } = {}): Promise<Slide> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new InputError(`${path}: cannot open (${(e as Error).message})`, { cause: e });
  }
  try {
    const size = (await file.stat()).size;
    const ra = new RandomAccess(path, file, size);
    const t = new TiffStructure(ra);
    const ifds = await t.allIfds(await t.header());
    if (ifds.length === 0) {
      throw new InputError(`${path}: corrupt TIFF: no image directory (IFD offset 0)`);
    }
    const base = await describe(t, ifds[0]);
    if (!base) throw new InputError(`${path}: not a tiled TIFF (the first image is not tiled)`);
    const mpp = await readMpp(t, ifds[0]);
    const levels: LevelData[] = [{ ...base, downsample: 1, index: 0 }];
    for (let i = 1; i < ifds.length; i++) {
      const sft = (await t.value(ifds[i], TAG.NewSubfileType)) ?? 0;
      if (sft & 4) continue; // transparency mask
      if (!ifds[i].entries.has(TAG.TileWidth)) continue; // label / macro / thumbnail strips
      const w = await t.value(ifds[i], TAG.ImageWidth);
      const h = await t.value(ifds[i], TAG.ImageLength);
      if (!w || !h || w >= base.width || h > base.height) continue;
      const dsx = base.width / w, dsy = base.height / h;
      // Levels are rounded sizes of level 0: allow ~1 pixel of rounding on either axis.
      if (Math.abs(dsx - dsy) / Math.max(dsx, dsy) > 1.5 / Math.min(w, h) + 0.01) continue;
      if (levels.some((l) => l.width === w)) continue;
      const d = await describe(t, ifds[i]);
      if (!d) continue;
      levels.push({ ...d, downsample: (dsx + dsy) / 2, index: 0 });
    }
    levels.sort((a, b) => b.width - a.width);
    levels.forEach((l, i) => (l.index = i));
    return new TiffSlide(ra, levels, mpp, opts.cacheBytes ?? 128 * 2 ** 20);
  } catch (e) {
    file.close();
    const msg = (e as Error).message;
    if (msg.startsWith(path)) throw e;
    throw new Error(`${path}: cannot read TIFF (${msg})`, { cause: e });
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** Alpha 255 in the top byte of a little-endian RGBA word (`| 0`: a signed 32-bit value). */
const ALPHA = 0xff000000 | 0;

/** Byte-swaps words written as little-endian RGBA, for big-endian hosts. */
function swapRgbaWords(px32: Uint32Array): void {
  for (let i = 0; i < px32.length; i++) {
    const v = px32[i];
    px32[i] = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
  }
}

class TiffSlide implements Slide {
  readonly path: string;
  readonly levels: SlideLevel[];
  readonly compression: string;
  #cache: TileCache<Uint8Array>;
  #inflight = new Map<string, Promise<Uint8Array | null>>();
  #closed = false;

  constructor(
    readonly ra: RandomAccess,
    readonly data: LevelData[],
    readonly mpp: [number, number] | null,
    cacheBytes: number,
  ) {
    this.path = ra.path;
    this.levels = data.map(({ width, height, downsample, tileWidth, tileHeight }) => ({
      width,
      height,
      downsample,
      tileWidth,
      tileHeight,
    }));
    this.compression = compressionName(data[0].compression);
    this.#cache = new TileCache(cacheBytes);
  }

  cacheStats() {
    const c = this.#cache;
    return { hits: c.hits, misses: c.misses, bytes: c.bytes, tiles: c.size };
  }

  /** Decoded RGBA tile, or null for a missing (zero-length) tile. */
  #tile(L: LevelData, tx: number, ty: number): Promise<Uint8Array | null> {
    const key = `${L.index}:${tx}:${ty}`;
    const hit = this.#cache.get(key);
    if (hit) return Promise.resolve(hit);
    const pending = this.#inflight.get(key);
    if (pending) return pending;
    const p = this.#decodeTile(L, tx, ty).then((rgba) => {
      if (rgba) this.#cache.set(key, rgba);
      return rgba;
    }).finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  async #decodeTile(L: LevelData, tx: number, ty: number): Promise<Uint8Array | null> {
    const i = ty * L.across + tx;
    const count = L.counts[i];
    if (count === 0) return null;
    if (count > maxTileBytes(L.tileWidth * L.tileHeight * L.samples)) {
      throw new InputError(
        `${this.path}: corrupt TIFF: tile (${tx}, ${ty}) of level ${L.index} claims ${count} ` +
          `bytes for a ${L.tileWidth}x${L.tileHeight} tile (at most ` +
          `${maxTileBytes(L.tileWidth * L.tileHeight * L.samples)})`,
      );
    }
    const raw = await this.ra.read(L.offsets[i], count, `tile ${tx},${ty} of level ${L.index}`);
    const tw = L.tileWidth, th = L.tileHeight, n = tw * th;
    const where = `tile (${tx}, ${ty}) of level ${L.index}`;
    const rgba = new Uint8Array(n * 4);
    try {
      if (L.compression === 7) {
        const rgb = decodeJpegTile(raw, L.jpegTables, L.photometric === 6 ? "ycbcr" : "rgb", {
          width: tw,
          height: th,
        });
        if (rgb.width !== tw || rgb.height !== th) {
          throw new InputError(`JPEG is ${rgb.width}x${rgb.height}, tile is ${tw}x${th}`);
        }
        const c = rgb.channels, src = rgb.data, sw = rgb.width;
        // One 32-bit store per pixel (RGBA bytes in memory order on a little-endian host).
        const px32 = new Uint32Array(rgba.buffer, rgba.byteOffset, n);
        for (let y = 0; y < th; y++) {
          let s = y * sw * c, d = y * tw;
          const end = d + tw;
          if (c === 1) {
            for (; d < end; d++, s++) px32[d] = ALPHA | (src[s] * 0x10101);
          } else {
            for (; d < end; d++, s += c) {
              px32[d] = ALPHA | (src[s + 2] << 16) | (src[s + 1] << 8) | src[s];
            }
          }
        }
        if (!LITTLE_ENDIAN) swapRgbaWords(px32);
        return rgba;
      }
      const spp = L.samples;
      const px = decodeTileData(L.compression, raw, n * spp, L.predictor, spp, tw * spp);
      if (L.photometric === 6 && spp >= 3) ycbcrToRgbInPlace(px, n, spp);
      for (let k = 0; k < n; k++) {
        const s = k * spp, d = k * 4;
        if (spp === 1) {
          const v = L.photometric === 0 ? 255 - px[s] : px[s];
          rgba[d] = rgba[d + 1] = rgba[d + 2] = v;
          rgba[d + 3] = 255;
        } else {
          rgba[d] = px[s];
          rgba[d + 1] = px[s + 1];
          rgba[d + 2] = px[s + 2];
          rgba[d + 3] = spp === 4 ? px[s + 3] : 255;
        }
      }
      return rgba;
    } catch (e) {
      // The decoders' own refusals stay refusals; anything else (a bug) stays a plain Error.
      const Err = isInputError(e) ? InputError : Error;
      throw new Err(
        `${this.path}: cannot decode ${compressionName(L.compression)} ${where}: ${
          (e as Error).message
        }`,
        { cause: e },
      );
    }
  }

  async readRegion(
    level: number,
    x0: number,
    y0: number,
    w: number,
    h: number,
  ): Promise<Uint8Array> {
    if (this.#closed) throw new Error(`${this.path}: slide is closed`);
    const L = this.data[level];
    if (!L) {
      throw new Error(`${this.path}: level ${level} does not exist (${this.data.length} levels)`);
    }
    for (const [k, v] of [["x", x0], ["y", y0], ["w", w], ["h", h]] as const) {
      if (!Number.isSafeInteger(v)) {
        throw new Error(`readRegion: ${k} must be an integer, got ${v}`);
      }
    }
    if (w < 0 || h < 0 || w * h > 2 ** 28) {
      throw new Error(`readRegion: bad region size ${w}x${h}`);
    }
    const out = new Uint8Array(w * h * 4);
    if (w === 0 || h === 0) return out;
    // Level coordinates of the region origin (exact for the power-of-two pyramids we read).
    const lx = Math.floor(x0 / L.downsample), ly = Math.floor(y0 / L.downsample);
    const ax = Math.max(lx, 0), ay = Math.max(ly, 0);
    const bx = Math.min(lx + w, L.width), by = Math.min(ly + h, L.height);
    if (ax >= bx || ay >= by) return out;
    const tw = L.tileWidth, th = L.tileHeight;
    const jobs: Promise<void>[] = [];
    for (let ty = Math.floor(ay / th); ty * th < by; ty++) {
      for (let tx = Math.floor(ax / tw); tx * tw < bx; tx++) {
        jobs.push(
          this.#tile(L, tx, ty).then((tile) => {
            if (!tile) return;
            const sx0 = Math.max(ax, tx * tw), sx1 = Math.min(bx, (tx + 1) * tw);
            const sy0 = Math.max(ay, ty * th), sy1 = Math.min(by, (ty + 1) * th);
            const len = (sx1 - sx0) * 4;
            for (let y = sy0; y < sy1; y++) {
              const s = ((y - ty * th) * tw + (sx0 - tx * tw)) * 4;
              out.set(tile.subarray(s, s + len), ((y - ly) * w + (sx0 - lx)) * 4);
            }
          }),
        );
      }
    }
    await Promise.all(jobs);
    return out;
  }

  async readRegionRGB(
    level: number,
    x0: number,
    y0: number,
    w: number,
    h: number,
    background: [number, number, number] = [255, 255, 255],
  ): Promise<Uint8Array> {
    const rgba = await this.readRegion(level, x0, y0, w, h);
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0, n = w * h; i < n; i++) {
      const a = rgba[i * 4 + 3];
      for (let c = 0; c < 3; c++) {
        rgb[i * 3 + c] = a === 255
          ? rgba[i * 4 + c]
          : Math.round((rgba[i * 4 + c] * a + background[c] * (255 - a)) / 255);
      }
    }
    return rgb;
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#cache.clear();
      this.ra.file.close();
    }
    return Promise.resolve();
  }
}
