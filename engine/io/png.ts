/** PNG encode/decode (8-bit gray, RGB or RGBA) on fast-png, with atomic file output. */
import { decode, encode } from "fast-png";
import { writeFileAtomic } from "./atomic.ts";

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
export function decodePng(bytes: Uint8Array, name = "<bytes>"): Image8 {
  let png;
  try {
    png = decode(bytes);
  } catch (e) {
    throw new Error(`${name}: not a readable PNG (${(e as Error).message})`);
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
      for (let k = 0; k < channels; k++) data[i * channels + k] = c[k] ?? 255;
    }
  } else if (png.depth === 16) {
    const src = png.data as Uint16Array;
    data = new Uint8Array(src.length);
    for (let i = 0; i < src.length; i++) data[i] = src[i] >> 8;
  } else if (png.depth === 8) {
    data = new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength);
  } else {
    throw new Error(`${name}: PNG bit depth ${png.depth} is not supported (expected 8 or 16)`);
  }
  return { data, width: png.width, height: png.height, channels };
}

/** Reads and decodes a PNG file. */
export async function readPng(path: string): Promise<Image8> {
  return decodePng(await Deno.readFile(path), path);
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
