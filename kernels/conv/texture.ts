/**
 * Staging a conv operand in a texture for the texture GEMM (kernels/matmul_texture.ts): writes
 * rows × ⌈K/4⌉ rgba32float texels, texel (j, r) holding the operand's elements (row0 + r, k0 + 4j
 * .. + 3), zero past K or outside the image. Modes, one per operand shape of the three conv GEMMs
 * (groups = 1), each reading one sample's slice at element offset `off`:
 *
 * - `strided`: element (row, k) at row·sRow + (k / kIn)·sOut + (k % kIn)·sIn — the weights
 *   [O, C·kh·kw] (forward), their per-channel view (input gradient: row c, k = o·KK + tap), or
 *   dy [O, OH·OW] (weight gradient).
 * - `im2col`: rows are output pixels, k = c·KK + ky·kw + kx: x at (c, oy·sh − ph + ky·dh, ...).
 * - `im2colT`: rows are (c, tap), k the output pixels: the same values, transposed.
 * - `dgrad`: rows are input pixels (y, x), k = o·KK + tap: dy at ((y + ph − ky·dh) / sh, ...)
 *   where that divides exactly and lies inside the output.
 */
import type { Kernel } from "../kernel.ts";
import { uniforms } from "../uniforms.ts";
import { DILATED_WINDOW_FIELDS } from "../window.ts";

export type ConvPackMode = "strided" | "im2col" | "im2colT" | "dgrad";

export const CONV_PACK_WG = { x: 16, y: 4 } as const;

/**
 * `rows` texture rows of K values (`width` texels) from element `off`, starting at row row0 and
 * GEMM index k0; the mode's strides (sRow, kIn, sOut, sIn); the conv's input channels and window
 * (kernels/window.ts).
 */
export const CONV_PACK_UNIFORMS = uniforms({
  rows: "u32",
  K: "u32",
  width: "u32",
  off: "u32",
  row0: "u32",
  k0: "u32",
  sRow: "u32",
  kIn: "u32",
  sOut: "u32",
  sIn: "u32",
  C: "u32",
  ...DILATED_WINDOW_FIELDS,
  _pad: "u32",
});

/** Uniforms: {@link CONV_PACK_UNIFORMS} (24 u32). */
export function convPackKernel(mode: ConvPackMode): Kernel {
  const value: Record<ConvPackMode, string> = {
    strided: `  return X[u.off + r * u.sRow + (k / u.kIn) * u.sOut + (k % u.kIn) * u.sIn];`,
    im2col: `  return im2col(r, k);`,
    im2colT: `  return im2col(k, r);`,
    dgrad: `  let KK = u.kh * u.kw;
  let o = k / KK;
  let tap = k % KK;
  let ty = i32(r / u.W + u.ph) - i32((tap / u.kw) * u.dh);
  let tx = i32(r % u.W + u.pw) - i32((tap % u.kw) * u.dw);
  if (ty < 0 || tx < 0) { return 0.0; }
  let uy = u32(ty);
  let ux = u32(tx);
  if (uy % u.sh != 0u || ux % u.sw != 0u || uy / u.sh >= u.OH || ux / u.sw >= u.OW) { return 0.0; }
  return X[u.off + o * u.OH * u.OW + (uy / u.sh) * u.OW + ux / u.sw];`,
  };
  return {
    key: `conv2d/pack-texture/${mode}`,
    wgsl: () =>
      /* wgsl */ `${CONV_PACK_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var T: texture_storage_2d<rgba32float, write>;

/** x at output pixel p, GEMM index k = c·KK + tap (0 in the padding). */
fn im2col(p: u32, k: u32) -> f32 {
  let KK = u.kh * u.kw;
  let c = k / KK;
  let tap = k % KK;
  let iy = i32((p / u.OW) * u.sh + (tap / u.kw) * u.dh) - i32(u.ph);
  let ix = i32((p % u.OW) * u.sw + (tap % u.kw) * u.dw) - i32(u.pw);
  if (iy < 0 || ix < 0 || iy >= i32(u.H) || ix >= i32(u.W)) { return 0.0; }
  return X[u.off + c * u.H * u.W + u32(iy) * u.W + u32(ix)];
}

fn value(r: u32, k: u32) -> f32 {
${value[mode]}
}

@compute @workgroup_size(${CONV_PACK_WG.x}, ${CONV_PACK_WG.y})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= u.width || gid.y >= u.rows) { return; }
  let r = u.row0 + gid.y;
  let k = u.k0 + 4u * j;
  let kEnd = u.k0 + u.K;
  var v = vec4<f32>(0.0);
  if (k < kEnd) { v.x = value(r, k); }
  if (k + 1u < kEnd) { v.y = value(r, k + 1u); }
  if (k + 2u < kEnd) { v.z = value(r, k + 2u); }
  if (k + 3u < kEnd) { v.w = value(r, k + 3u); }
  textureStore(T, vec2<u32>(j, gid.y), v);
}`,
  };
}
