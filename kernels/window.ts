/**
 * The geometry of a 2-D sliding window (convolution, pooling), declared once: the type, its
 * uniform fields (spread into a kernel's `uniforms({...})` block: kernels/uniforms.ts) and the
 * output size, so the conv and pool kernels, their launches and the routing rules read the same
 * names with the same meaning.
 */

/**
 * A window over an H×W input plane giving OH×OW outputs: kernel kh×kw, stride sh×sw, padding
 * ph×pw (pooling's geometry; no dilation).
 */
export interface Window2d {
  H: number;
  W: number;
  OH: number;
  OW: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
}

/** A {@link Window2d} whose taps are dh×dw apart (convolution's geometry). */
export interface DilatedWindow2d extends Window2d {
  dh: number;
  dw: number;
}

/**
 * Normalised geometry of a conv2d (or of the conv2d whose adjoint a convTranspose2d is): N
 * samples of C input and O output channels in `groups` groups, over a dilated window.
 */
export interface ConvGeometry extends DilatedWindow2d {
  N: number;
  C: number;
  O: number;
  groups: number;
}

/**
 * Uniform fields of a window's kernel, stride and padding (kh, kw, sh, sw, ph, pw), in block
 * order: the part of the geometry every windowed kernel's block holds contiguously.
 */
export const WINDOW_KERNEL_FIELDS = {
  kh: "u32",
  kw: "u32",
  sh: "u32",
  sw: "u32",
  ph: "u32",
  pw: "u32",
} as const;

/** Uniform fields of a window's dilation (dh, dw). */
export const DILATION_FIELDS = { dh: "u32", dw: "u32" } as const;

/** Uniform fields of a {@link Window2d}, in block order (spread into `uniforms({...})`). */
export const WINDOW_FIELDS = {
  H: "u32",
  W: "u32",
  OH: "u32",
  OW: "u32",
  ...WINDOW_KERNEL_FIELDS,
} as const;

/** Uniform fields of a {@link DilatedWindow2d}: {@link WINDOW_FIELDS}, then dh, dw. */
export const DILATED_WINDOW_FIELDS = { ...WINDOW_FIELDS, ...DILATION_FIELDS } as const;

/** The {@link DILATED_WINDOW_FIELDS} values of `g` (a larger geometry's other fields left out). */
export function dilatedWindowOf(g: DilatedWindow2d): DilatedWindow2d {
  const { H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw } = g;
  return { H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw };
}

/** Kernel k×k, stride s×s and padding p×p: a square window's {@link WINDOW_KERNEL_FIELDS}. */
export function squareWindow(
  k: number,
  s: number,
  p: number,
): Pick<Window2d, "kh" | "kw" | "sh" | "sw" | "ph" | "pw"> {
  return { kh: k, kw: k, sh: s, sw: s, ph: p, pw: p };
}

/**
 * Outputs along one axis of `n` inputs (PyTorch's floor mode): kernel k, stride s, padding p on
 * each side, dilation d. May be < 1 when the input is too small (callers report that).
 */
export function windowOutSize(n: number, k: number, s: number, p: number, d = 1): number {
  return Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;
}
