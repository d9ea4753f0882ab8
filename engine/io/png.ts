/**
 * PNG encode/decode (8-bit gray, RGB or RGBA) on fast-png, with atomic file output.
 *
 * The header's size is a claim: before fast-png allocates anything, the IHDR dimensions are
 * checked against a pixel limit (a 1 MB file can claim 20000×20000 and inflate to gigabytes),
 * and, when the compressed data could expand past 64 MiB (or twice what the header implies), it
 * is first inflated once as a stream, discarding its output, to check that it does not inflate
 * past what the header implies (fast-png keeps everything it inflates).
 */
import { decode, encode } from "fast-png";
import { Unzlib } from "fflate";
import { writeFileAtomic } from "./atomic.ts";
import { InputError } from "./errors.ts";

/**
 * Default largest image decoded: 2^26 pixels (64 Mpx, e.g. 8192×8192), at most 512 MiB decoded
 * (RGBA 16-bit). Patches and SAM inputs are far smaller; larger images are slides, read by
 * `pipeline/wsi/slide.ts` in tiles.
 */
export const DEFAULT_MAX_IMAGE_PIXELS = 2 ** 26;
/** Environment variable that overrides {@link DEFAULT_MAX_IMAGE_PIXELS}. */
export const MAX_IMAGE_PIXELS_ENV = "EPSAM_MAX_IMAGE_PIXELS";

/** The pixel limit in force: `EPSAM_MAX_IMAGE_PIXELS` when set, else the default. */
export function maxImagePixels(): number {
  let v: string | undefined;
  try {
    v = Deno.env.get(MAX_IMAGE_PIXELS_ENV);
  } catch {
    v = undefined; // no env permission: the default
  }
  if (v === undefined || v === "") return DEFAULT_MAX_IMAGE_PIXELS;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new Error(`${MAX_IMAGE_PIXELS_ENV}="${v}": expected a positive integer pixel count`);
  }
  return n;
}

/** A PNG's IHDR fields. */
export interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlace: number;
  /** Samples per pixel (palette images: 1 index). */
  samples: number;
}

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const SAMPLES: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS: Record<number, number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};

/** Reads and checks the signature and IHDR chunk; errors name `name` and the field. */
function readPngHeader(bytes: Uint8Array, name = "<bytes>"): PngHeader {
  if (bytes.length < 33 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) {
    throw new InputError(`${name}: not a PNG file (no PNG signature)`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = String.fromCharCode(...bytes.subarray(12, 16));
  if (type !== "IHDR" || v.getUint32(8) !== 13) {
    throw new InputError(
      `${name}: corrupt PNG: the first chunk is ${type}, expected a 13-byte IHDR`,
    );
  }
  const width = v.getUint32(16), height = v.getUint32(20);
  const depth = bytes[24], colorType = bytes[25], interlace = bytes[28];
  if (width < 1 || height < 1 || width > 2 ** 31 - 1 || height > 2 ** 31 - 1) {
    throw new InputError(`${name}: corrupt PNG: IHDR size ${width}x${height}`);
  }
  if (!(colorType in SAMPLES) || !DEPTHS[colorType].includes(depth)) {
    throw new InputError(
      `${name}: corrupt PNG: IHDR colour type ${colorType} with bit depth ${depth}`,
    );
  }
  if (interlace > 1) {
    throw new InputError(`${name}: corrupt PNG: IHDR interlace method ${interlace}`);
  }
  return { width, height, depth, colorType, interlace, samples: SAMPLES[colorType] };
}

/** Bytes of filtered scanlines the header implies (filter byte per row, Adam7 passes). */
function inflatedSize(h: PngHeader): number {
  const row = (w: number) => (w === 0 ? 0 : 1 + Math.ceil((w * h.samples * h.depth) / 8));
  if (!h.interlace) return h.height * row(h.width);
  let n = 0;
  // Adam7: [x0, y0, dx, dy] of the seven passes.
  for (
    const [x0, y0, dx, dy] of [
      [0, 0, 8, 8],
      [4, 0, 8, 8],
      [0, 4, 4, 8],
      [2, 0, 4, 4],
      [
        0,
        2,
        2,
        4,
      ],
      [1, 0, 2, 2],
      [0, 1, 1, 2],
    ]
  ) {
    const pw = Math.ceil((h.width - x0) / dx), ph = Math.ceil((h.height - y0) / dy);
    if (pw > 0 && ph > 0) n += ph * row(pw);
  }
  return n;
}

/**
 * Refuses a PNG whose header claims more than `maxPixels`, or whose IDAT stream inflates past
 * the size the header implies (checked by streaming, in bounded memory).
 */
export function checkPngBounds(
  bytes: Uint8Array,
  name = "<bytes>",
  maxPixels = maxImagePixels(),
  slackBytes = INFLATE_SLACK_BYTES,
): PngHeader {
  const h = readPngHeader(bytes, name);
  const pixels = h.width * h.height;
  if (pixels > maxPixels) {
    throw new InputError(
      `${name}: PNG header claims ${h.width}x${h.height} = ${pixels} pixels, above the limit of ` +
        `${maxPixels} (decoding needs about ${
          Math.ceil((pixels * h.samples * Math.max(8, h.depth)) / 8 / 2 ** 20)
        } MiB); if the image is genuine, raise the limit with --max-image-pixels or ` +
        `${MAX_IMAGE_PIXELS_ENV}`,
    );
  }
  checkChunks(bytes, name);
  const expected = inflatedSize(h);
  // Deflate expands at most ~1032:1. When even that cannot reach the slack fast-png may use,
  // the streaming pass is skipped (it costs about as much as the decode's own inflation).
  if (idatBytes(bytes) * MAX_DEFLATE_RATIO <= Math.max(2 * expected, slackBytes)) return h;
  let got = 0;
  const inflater = new Unzlib((chunk) => {
    got += chunk.length;
    if (got > expected) {
      throw new InputError(
        `${name}: corrupt PNG: image data inflates past the ${expected} bytes its ` +
          `${h.width}x${h.height} header implies`,
      );
    }
  });
  try {
    pushIdat(bytes, inflater);
  } catch (e) {
    const msg = (e as Error).message;
    if (msg.startsWith(name)) throw e;
    throw new InputError(`${name}: not a readable PNG (image data: ${msg})`, { cause: e });
  }
  return h;
}

/**
 * Walks the chunk list: every chunk must lie inside the file, up to an IEND (fast-png reads
 * past its buffer otherwise and fails with a RangeError), and there must be image data.
 */
function checkChunks(bytes: Uint8Array, name: string): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 8, idat = false, iend = false;
  while (p < bytes.length && !iend) {
    if (p + 12 > bytes.length) {
      throw new InputError(`${name}: truncated PNG: ${bytes.length - p} stray bytes at ${p}`);
    }
    const len = v.getUint32(p);
    const type = String.fromCharCode(...bytes.subarray(p + 4, p + 8));
    if (len > bytes.length - p - 12) {
      throw new InputError(
        `${name}: truncated PNG: chunk ${JSON.stringify(type)} at byte ${p} claims ${len} bytes, ` +
          `the file ends ${bytes.length - p - 12} bytes later`,
      );
    }
    if (type === "IDAT") idat = true;
    p += 12 + len;
    iend = type === "IEND";
  }
  if (!idat) throw new InputError(`${name}: corrupt PNG: no IDAT (image data) chunk`);
  // fast-png reads on past the last chunk when there is no IEND.
  if (!iend) throw new InputError(`${name}: truncated PNG: no IEND chunk before byte ${p}`);
}

/** Largest expansion of deflate (258-byte matches coded in about 2 bits). */
const MAX_DEFLATE_RATIO = 1032;
/**
 * What fast-png may inflate without the streaming check: 64 MiB, or twice what the header
 * implies. A 512² patch (its IDAT under 64 KiB) skips the check; a bomb cannot.
 */
const INFLATE_SLACK_BYTES = 64 * 2 ** 20;

/** Total IDAT payload bytes (a chunk walk, no inflation). */
function idatBytes(bytes: Uint8Array): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 8, n = 0;
  while (p + 12 <= bytes.length) {
    const len = v.getUint32(p);
    if (len > bytes.length - p - 12) return n + (bytes.length - p); // truncated: count the rest
    if (
      bytes[p + 4] === 0x49 && bytes[p + 5] === 0x44 && bytes[p + 6] === 0x41 &&
      bytes[p + 7] === 0x54
    ) {
      n += len;
    }
    p += 12 + len;
  }
  return n;
}

/** Feeds every IDAT chunk's data to `inflater`, in slices of at most 64 KiB. */
function pushIdat(bytes: Uint8Array, inflater: Unzlib): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 8;
  while (p + 12 <= bytes.length) {
    const len = v.getUint32(p);
    const type = String.fromCharCode(...bytes.subarray(p + 4, p + 8));
    if (len > bytes.length - p - 12) break; // truncated: fast-png reports it
    if (type === "IDAT") {
      // Push in slices so one chunk cannot inflate to more than ~1000x 64 KiB before the check.
      for (let o = 0; o < len; o += 65536) {
        inflater.push(bytes.subarray(p + 8 + o, p + 8 + Math.min(len, o + 65536)), false);
      }
    }
    if (type === "IEND") break;
    p += 12 + len;
  }
}

/** A decoded 8-bit image, interleaved channels, row-major. */
export interface Image8 {
  data: Uint8Array;
  width: number;
  height: number;
  /** 1 (gray), 3 (RGB) or 4 (RGBA). */
  channels: 1 | 2 | 3 | 4;
}

/** Encodes an 8-bit image as PNG bytes. */
export function encodePng(img: Image8): Uint8Array {
  const { data, width, height, channels } = img;
  if (data.length !== width * height * channels) {
    throw new Error(
      `encodePng: data has ${data.length} bytes, expected ${width}x${height}x${channels}`,
    );
  }
  return encode({ data, width, height, channels, depth: 8 });
}

/** Decodes PNG bytes; 16-bit images are reduced to 8 bits, palettes expanded to RGB(A). */
export function decodePng(
  bytes: Uint8Array,
  name = "<bytes>",
  opts: { maxPixels?: number } = {},
): Image8 {
  const header = checkPngBounds(bytes, name, opts.maxPixels ?? maxImagePixels());
  let png;
  try {
    png = decode(bytes);
  } catch (e) {
    // fast-png's own refusals are Errors; a TypeError/RangeError from it is a bug, kept as such.
    const Err = e instanceof TypeError || e instanceof RangeError ? Error : InputError;
    throw new Err(`${name}: not a readable PNG (${(e as Error).message})`, { cause: e });
  }
  let data: Uint8Array;
  let channels = png.channels as 1 | 2 | 3 | 4;
  if (png.palette) {
    const pal = png.palette;
    const hasAlpha = pal.some((c) => c.length === 4);
    channels = hasAlpha ? 4 : 3;
    data = new Uint8Array(png.width * png.height * channels);
    const idx = png.data as Uint8Array;
    for (let i = 0; i < png.width * png.height; i++) {
      const c = pal[idx[i]];
      if (!c) {
        throw new InputError(
          `${name}: corrupt PNG: palette index ${idx[i]} past the ${pal.length}-entry palette`,
        );
      }
      for (let k = 0; k < channels; k++) data[i * channels + k] = c[k] ?? 255;
    }
  } else if (png.depth === 16) {
    const src = png.data as Uint16Array;
    data = new Uint8Array(src.length);
    for (let i = 0; i < src.length; i++) data[i] = src[i] >> 8;
  } else if (png.depth === 8) {
    data = new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength);
  } else {
    throw new InputError(`${name}: PNG bit depth ${png.depth} is not supported (expected 8 or 16)`);
  }
  if (png.width !== header.width || png.height !== header.height) {
    throw new InputError(
      `${name}: corrupt PNG: decoded ${png.width}x${png.height}, header said otherwise`,
    );
  }
  return { data, width: png.width, height: png.height, channels };
}

/** Reads and decodes a PNG file (see {@link decodePng} for `maxPixels`). */
export async function readPng(path: string, opts: { maxPixels?: number } = {}): Promise<Image8> {
  return decodePng(await Deno.readFile(path), path, opts);
}

/** Encodes and writes a PNG file atomically. */
export async function writePng(path: string, img: Image8): Promise<void> {
  await writeFileAtomic(path, encodePng(img));
}

/** Converts any channel count to RGB (gray replicated, alpha dropped). */
export function toRgb(img: Image8): Image8 {
  if (img.channels === 3) return img;
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const s = i * img.channels;
    const g = img.data[s];
    out[i * 3] = g;
    out[i * 3 + 1] = img.channels >= 3 ? img.data[s + 1] : g;
    out[i * 3 + 2] = img.channels >= 3 ? img.data[s + 2] : g;
  }
  return { data: out, width: img.width, height: img.height, channels: 3 };
}
