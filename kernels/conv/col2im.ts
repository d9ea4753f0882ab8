/**
 * col2im for a conv's input gradient: dx[n, c, h, w] = Σ over the taps (ky, kx) whose output pixel
 * (oy, ox) = ((h + ph − ky·dh) / sh, (w + pw − kx·dw) / sw) divides exactly and lies inside the
 * output, of cols[n, c·KK + ky·kw + kx, oy·OW + ox], taps in (ky, kx) order — where cols [N, C·KK,
 * OH·OW] = Wᵀ · dy[n] is the GEMM of engine/ops/conv_col2im.ts (no zero taps in it, unlike the
 * strided gather). A thread per element of dx.
 */
import type { Kernel } from "../kernel.ts";
import { flatKernelWgsl } from "../common.ts";
import { uniforms } from "../uniforms.ts";
import { DILATED_WINDOW_FIELDS, type DilatedWindow2d } from "../window.ts";

export const COL2IM_WG = 256;

/** Elements of this dispatch (samples·C·H·W), channels, the window, cols' and dx's offsets. */
export const COL2IM_UNIFORMS = uniforms({
  n: "u32",
  C: "u32",
  ...DILATED_WINDOW_FIELDS,
  o0: "u32",
  o1: "u32",
});

/** The window of a {@link col2imBlockKernel}, baked into its WGSL (the plane sizes are uniforms). */
export type Col2imWindow = Omit<DilatedWindow2d, "H" | "W" | "OH" | "OW">;

/** A col2im kernel's WGSL: a thread per element (or block) `i` of dx, bindings cols and dx. */
function col2imWgsl(body: string): string {
  return flatKernelWgsl({
    params: COL2IM_UNIFORMS.wgsl("P"),
    wg: COL2IM_WG,
    bindings: ["read> cols", "read_write> dx"],
    body: `  if (i >= u.n) { return; }
${body}`,
  });
}

/** Largest sh·sw·kh·kw that {@link col2imBlockKernel} unrolls. */
export const COL2IM_BLOCK_MAX_TERMS = 256;

/** (t mod s) in [0, s) for any integer t. */
const mod = (t: number, s: number) => ((t % s) + s) % s;

/**
 * col2im with the window baked in and a thread per block of sh×sw pixels of dx: pixel (a, b) of
 * block (by, bx) takes tap (ky, kx) iff sh divides a + ph − ky·dh (and sw, likewise), from output
 * pixel (by + (a + ph − ky·dh)/sh, ...): which taps, and their offsets, are constants, so there is
 * neither a division nor a loop per tap (a runtime divisor is a scalar division per lane on CPU
 * rasterisers) and a block reads each of its kh·kw taps' values once. Taps in (ky, kx) order per
 * pixel, as {@link col2imKernel}. Uniform n: blocks (samples·C·⌈H/sh⌉·⌈W/sw⌉). Bindings: cols, dx.
 * Grid: grid1d(n, COL2IM_WG).
 */
export function col2imBlockKernel(k: Col2imWindow): Kernel {
  const { kh, kw, sh, sw, ph, pw, dh, dw } = k;
  if (sh * sw * kh * kw > COL2IM_BLOCK_MAX_TERMS) {
    throw new Error(`col2im: a ${kh}×${kw} window with stride ${sh}×${sw} is too large to unroll`);
  }
  const lines: string[] = [];
  for (let a = 0; a < sh; a++) {
    for (let b = 0; b < sw; b++) {
      lines.push(`  {
    var acc = 0.0;`);
      for (let ky = 0; ky < kh; ky++) {
        const ty = a + ph - ky * dh;
        if (mod(ty, sh)) continue;
        for (let kx = 0; kx < kw; kx++) {
          const tx = b + pw - kx * dw;
          if (mod(tx, sw)) continue;
          lines.push(`    {
      let oy = i32(by) + ${ty / sh}i;
      let ox = i32(bx) + ${tx / sw}i;
      if (oy >= 0 && oy < i32(u.OH) && ox >= 0 && ox < i32(u.OW)) {
        acc += cols[base + ${ky * kw + kx}u * OHW + u32(oy) * u.OW + u32(ox)];
      }
    }`);
        }
      }
      lines.push(`    let h = by * ${sh}u + ${a}u;
    let w = bx * ${sw}u + ${b}u;
    if (h < u.H && w < u.W) { dx[u.o1 + nc * u.H * u.W + h * u.W + w] = acc; }
  }`);
    }
  }
  return {
    key: `conv2d/col2im/k${kh}x${kw}s${sh}x${sw}p${ph}x${pw}d${dh}x${dw}`,
    wgsl: () =>
      col2imWgsl(`  let BW = (u.W + ${sw - 1}u) / ${sw}u;
  let BH = (u.H + ${sh - 1}u) / ${sh}u;
  let bx = i % BW;
  let by = (i / BW) % BH;
  let nc = i / (BW * BH);
  let OHW = u.OH * u.OW;
  let base = u.o0 + nc * ${kh * kw}u * OHW;
${lines.join("\n")}`),
  };
}

/** Bindings: cols, dx. Grid: grid1d(n, COL2IM_WG). */
export function col2imKernel(): Kernel {
  return {
    key: "conv2d/col2im",
    wgsl: () =>
      col2imWgsl(`  let w = i32(i % u.W);
  let h = i32((i / u.W) % u.H);
  let nc = i / (u.W * u.H);
  let OHW = u.OH * u.OW;
  // cols row (c, tap) of sample n: (n·C + c)·KK + tap.
  let base = u.o0 + nc * u.kh * u.kw * OHW;
  var acc = 0.0;
  for (var ky = 0u; ky < u.kh; ky++) {
    let ty = h + i32(u.ph) - i32(ky * u.dh);
    if (ty < 0 || ty % i32(u.sh) != 0) { continue; }
    let oy = u32(ty) / u.sh;
    if (oy >= u.OH) { continue; }
    for (var kx = 0u; kx < u.kw; kx++) {
      let tx = w + i32(u.pw) - i32(kx * u.dw);
      if (tx < 0 || tx % i32(u.sw) != 0) { continue; }
      let ox = u32(tx) / u.sw;
      if (ox >= u.OW) { continue; }
      acc += cols[base + (ky * u.kw + kx) * OHW + oy * u.OW + ox];
    }
  }
  dx[u.o1 + i] = acc;`),
  };
}
