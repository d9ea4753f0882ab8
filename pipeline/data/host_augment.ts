/** Host-side augmentation of an RGB patch and its mask together (SAM trained from scratch). */
import { rotateImage } from "../../model/cam.ts";

/** The reference's OneOf(hflip, vflip, rot90, ...) with p = 0.5, on host images and masks. */
export function augmentPair(
  rgb: Uint8Array,
  mask: Uint8Array,
  size: number,
  u: Float32Array,
): { rgb: Uint8Array; mask: Uint8Array } {
  if (u[0] >= 0.5) return { rgb, mask };
  const op = Math.min(2, Math.floor(u[1] * 3));
  if (op === 2) {
    const k = 1 + Math.min(2, Math.floor(u[2] * 3));
    return {
      rgb: rotateImage(rgb, size, size, 3, k).data,
      mask: rotateImage(mask, size, size, 1, k).data,
    };
  }
  const flip = (src: Uint8Array, c: number) => {
    const out = new Uint8Array(src.length);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const [sy, sx] = op === 0 ? [y, size - 1 - x] : [size - 1 - y, x];
        for (let k = 0; k < c; k++) out[(y * size + x) * c + k] = src[(sy * size + sx) * c + k];
      }
    }
    return out;
  };
  return { rgb: flip(rgb, 3), mask: flip(mask, 1) };
}
