/**
 * Patches and masks on the host, as the SAM stages, evaluation and inference use them: RGB uint8
 * patches resized to the model's patch size, 0/1 masks and [0, 1] gray maps read from and written
 * to PNG.
 */
import { readPng, writePng } from "../../engine/io/png.ts";
import { loadHostBatch, type PatchItem } from "./patches.ts";

/** One patch at `size`: RGB uint8 HWC, and its ground-truth mask (0/1) when it has one. */
export interface HostPatch {
  item: PatchItem;
  rgb: Uint8Array;
  gt: Uint8Array | null;
  size: number;
}

/** Loads patches resized to size×size (bilinear, antialiased; masks nearest). */
export async function loadPatches(items: PatchItem[], size: number): Promise<HostPatch[]> {
  const out: HostPatch[] = [];
  for (const it of items) {
    const b = await loadHostBatch([it], { size, masks: it.mask !== null });
    const hw = size * size;
    const rgb = new Uint8Array(hw * 3);
    for (let i = 0; i < hw; i++) {
      for (let c = 0; c < 3; c++) {
        rgb[i * 3 + c] = Math.max(0, Math.min(255, Math.round(b.images[c * hw + i] * 255)));
      }
    }
    const gt = b.masks ? Uint8Array.from(b.masks, (v) => (v !== 0 ? 1 : 0)) : null;
    out.push({ item: it, rgb, gt, size });
  }
  return out;
}

/** Reads a 0/255 (or 0/1) mask PNG as 0/1, resized (nearest) to size×size. */
export async function readMask(path: string, size: number): Promise<Uint8Array> {
  const m = await readPng(path);
  const out = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    const sy = Math.min(m.height - 1, Math.floor(((y + 0.5) * m.height) / size));
    for (let x = 0; x < size; x++) {
      const sx = Math.min(m.width - 1, Math.floor(((x + 0.5) * m.width) / size));
      out[y * size + x] = m.data[(sy * m.width + sx) * m.channels] !== 0 ? 1 : 0;
    }
  }
  return out;
}

/** Writes a 0/1 mask as a 0/255 gray PNG (atomically). */
export async function writeMask(path: string, mask: Uint8Array, size: number): Promise<void> {
  await writePng(path, {
    data: Uint8Array.from(mask, (v) => (v ? 255 : 0)),
    width: size,
    height: size,
    channels: 1,
  });
}

/** Reads a gray PNG as values in [0, 1]. */
export async function readGray01(path: string): Promise<Float32Array> {
  const m = await readPng(path);
  const out = new Float32Array(m.width * m.height);
  for (let i = 0; i < out.length; i++) out[i] = m.data[i * m.channels] / 255;
  return out;
}

/** Values in [0, 1] as the 8-bit levels {@link writeGray01} stores. */
function gray8(v: Float32Array): Uint8Array {
  return Uint8Array.from(v, (x) => Math.max(0, Math.min(255, Math.round(x * 255))));
}

/**
 * `v` as {@link readGray01} reads it back after {@link writeGray01}: what later stages see of a
 * stored map (infer quantises its CAMs so, to prompt SAM exactly as the evaluate stage does).
 */
export function asStoredGray01(v: Float32Array): Float32Array {
  return Float32Array.from(gray8(v), (b) => b / 255);
}

/** Writes values in [0, 1] as an 8-bit gray PNG. */
export async function writeGray01(path: string, v: Float32Array, size: number): Promise<void> {
  await writePng(path, {
    data: gray8(v),
    width: size,
    height: size,
    channels: 1,
  });
}
