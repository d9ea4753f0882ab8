/**
 * IEEE binary16 and bfloat16 conversions, one of each direction: safetensors/.pth reading
 * (engine/io) and f16 tensor uploads and downloads (engine/tensor.ts) share them.
 */

const f32Buf = new Float32Array(1);
const u32Buf = new Uint32Array(f32Buf.buffer);

/** IEEE binary16 bits to a number. */
export function f16BitsToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Number to IEEE binary16 bits, rounding to nearest even (overflow gives infinity). */
export function numberToF16Bits(x: number): number {
  f32Buf[0] = x;
  const f = u32Buf[0];
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  let mant = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  e = half >> 10;
  return sign | (e >= 31 ? 0x7c00 : half);
}

/** bfloat16 bits to a number (exact: bf16 is the top half of an f32). */
export function bf16BitsToNumber(b: number): number {
  u32Buf[0] = b << 16;
  return f32Buf[0];
}

/** Number to bfloat16 bits, rounding to nearest even (NaN stays NaN). */
export function numberToBf16Bits(x: number): number {
  f32Buf[0] = x;
  const f = u32Buf[0];
  if ((f & 0x7f800000) === 0x7f800000 && (f & 0x7fffff)) return (f >>> 16) | 0x40;
  return ((f + 0x7fff + ((f >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE half bits to f32, elementwise. */
export function f16ToF32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = f16BitsToNumber(h[i]);
  return out;
}

/** f32 to IEEE half bits (round to nearest even), elementwise. */
export function f32ToF16(f: Float32Array): Uint16Array {
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = numberToF16Bits(f[i]);
  return out;
}
