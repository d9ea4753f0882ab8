/**
 * libjpeg's YCbCr → RGB conversion (jdcolor.c: fixed point with 16 fractional bits, results
 * clamped to 0..255), so that every YCbCr source of a slide (JPEG tiles, uncompressed or
 * deflated YCbCr tiles) gives the bytes libjpeg would.
 */

/** Writes the RGB of pixel (y, cb, cr) at `out[o..o+2]`; `cb` and `cr` as stored (128 = zero). */
export function ycbcrToRgbAt(y: number, cb: number, cr: number, out: Uint8Array, o: number): void {
  const u = cb - 128, v = cr - 128;
  const r = y + ((91881 * v + 32768) >> 16);
  const g = y + ((-22554 * u - 46802 * v + 32768) >> 16);
  const b = y + ((116130 * u + 32768) >> 16);
  out[o] = r < 0 ? 0 : r > 255 ? 255 : r;
  out[o + 1] = g < 0 ? 0 : g > 255 ? 255 : g;
  out[o + 2] = b < 0 ? 0 : b > 255 ? 255 : b;
}

/** Converts `n` interleaved pixels of `stride` bytes (Y, Cb, Cr first) to RGB in place. */
export function ycbcrToRgbInPlace(px: Uint8Array, n: number, stride: number): void {
  for (let i = 0, o = 0; i < n; i++, o += stride) ycbcrToRgbAt(px[o], px[o + 1], px[o + 2], px, o);
}
