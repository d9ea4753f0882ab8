/**
 * Decoders for the non-JPEG TIFF tile compressions (LZW, Deflate, PackBits, none) whose output
 * is bounded by the tile: every decoder writes into a buffer of exactly the tile's byte size
 * and stops when it is full. geotiff.js's codecs inflate whatever the data says (its LZW builds
 * a JS array of every output byte, pako inflates without limit), so one hostile 1 MB tile could
 * expand to gigabytes; here a tile costs at most its own size plus one bounded input slice.
 *
 * As libtiff does, data that would produce more than the tile is ignored past the tile's end;
 * data that produces less is an error (the caller names the file and the tile).
 */
import { Unzlib } from "fflate";
import { InputError } from "../../engine/io/errors.ts";

/** TIFF compression codes these decoders handle. */
export const TILE_CODECS = { none: 1, lzw: 5, deflate: 8, adobeDeflate: 32946, packbits: 32773 };

/** Error of a tile decoder: the tile's data is not what its compression says. */
export class TileDataError extends InputError {}

/**
 * Decodes one tile of `expected` bytes (width × height × samples, 8-bit interleaved) and undoes
 * the horizontal predictor (2) on rows of `rowBytes`.
 */
export function decodeTileData(
  compression: number,
  data: Uint8Array,
  expected: number,
  predictor = 1,
  samples = 1,
  rowBytes = expected,
): Uint8Array {
  const out = new Uint8Array(expected);
  let n: number;
  switch (compression) {
    case TILE_CODECS.none:
      n = Math.min(data.length, expected);
      out.set(data.subarray(0, n));
      break;
    case TILE_CODECS.lzw:
      n = lzwDecode(data, out);
      break;
    case TILE_CODECS.deflate:
    case TILE_CODECS.adobeDeflate:
      n = inflateInto(data, out);
      break;
    case TILE_CODECS.packbits:
      n = packbitsDecode(data, out);
      break;
    default:
      throw new TileDataError(`compression ${compression} is not a tile codec handled here`);
  }
  if (n < expected) {
    throw new TileDataError(`tile data decodes to ${n} bytes, the tile needs ${expected}`);
  }
  if (predictor === 2) undoHorizontalPredictor(out, rowBytes, samples);
  else if (predictor !== 1) throw new TileDataError(`predictor ${predictor} is not supported`);
  return out;
}

/** Horizontal differencing (TIFF predictor 2) for 8-bit samples, in place. */
function undoHorizontalPredictor(px: Uint8Array, rowBytes: number, samples: number): void {
  for (let r = 0; r + rowBytes <= px.length; r += rowBytes) {
    for (let i = r + samples, e = r + rowBytes; i < e; i++) px[i] = (px[i] + px[i - samples]) & 255;
  }
}

/**
 * TIFF LZW (MSB-first codes of 9 to 12 bits, "early change"), into `out`; returns the bytes
 * written. Stops at EOI, at the end of the data, or when `out` is full.
 */
function lzwDecode(data: Uint8Array, out: Uint8Array): number {
  const CLEAR = 256, EOI = 257;
  // Each entry: prefix code, last byte, first byte, length (strings are written backwards).
  const prefix = new Int32Array(4096), last = new Uint8Array(4096);
  const first = new Uint8Array(4096), len = new Int32Array(4096);
  for (let i = 0; i < 256; i++) {
    prefix[i] = -1;
    last[i] = first[i] = i;
    len[i] = 1;
  }
  let next = 258, width = 9, old = -1, o = 0, bitPos = 0;
  const totalBits = data.length * 8;
  /** Writes the string of `code` at `o`, clipped to `out`. */
  const emit = (code: number) => {
    let c = code;
    for (let i = len[code] - 1; i >= 0; i--, c = prefix[c]) {
      if (o + i < out.length) out[o + i] = last[c];
    }
    o += len[code];
  };
  while (o < out.length && bitPos + width <= totalBits) {
    let code = 0;
    for (let k = 0; k < width; k++, bitPos++) {
      code = (code << 1) | ((data[bitPos >> 3] >> (7 - (bitPos & 7))) & 1);
    }
    if (code === EOI) break;
    if (code === CLEAR) {
      next = 258;
      width = 9;
      old = -1;
      continue;
    }
    if (old === -1) {
      if (code > 255) throw new TileDataError(`LZW code ${code} follows a clear code`);
      emit(code);
      old = code;
      continue;
    }
    if (code > next || (code === next && next === 4096)) {
      throw new TileDataError(`LZW code ${code} is past the dictionary (${next} entries)`);
    }
    const f = code < next ? first[code] : first[old];
    if (next < 4096) {
      prefix[next] = old;
      last[next] = f;
      first[next] = first[old];
      len[next] = len[old] + 1;
      next++;
    }
    emit(code);
    old = code;
    if (next + 1 >= 1 << width && width < 12) width++;
  }
  return Math.min(o, out.length);
}

/** Inflates zlib data into `out` in bounded slices; returns the bytes written. */
function inflateInto(data: Uint8Array, out: Uint8Array): number {
  let o = 0;
  const inflater = new Unzlib((chunk) => {
    const n = Math.min(chunk.length, out.length - o);
    out.set(chunk.subarray(0, n), o);
    o += n;
  });
  // Slices of 4 KiB inflate to at most ~4 MiB each: the overshoot past a full tile is bounded.
  try {
    for (let p = 0; p < data.length && o < out.length; p += 4096) {
      inflater.push(data.subarray(p, Math.min(data.length, p + 4096)), false);
    }
  } catch (e) {
    throw new TileDataError(`corrupt Deflate data (${(e as Error).message})`, { cause: e });
  }
  return o;
}

/** PackBits (Apple RLE) into `out`; returns the bytes written. */
function packbitsDecode(data: Uint8Array, out: Uint8Array): number {
  let p = 0, o = 0;
  while (p < data.length && o < out.length) {
    const h = data[p++];
    if (h < 128) {
      const n = Math.min(h + 1, data.length - p, out.length - o);
      out.set(data.subarray(p, p + n), o);
      p += h + 1;
      o += n;
    } else if (h > 128) {
      if (p >= data.length) break;
      const n = Math.min(257 - h, out.length - o);
      out.fill(data[p++], o, o + n);
      o += n;
    }
  }
  return o;
}
