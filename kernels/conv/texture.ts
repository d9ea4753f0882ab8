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
 *
 * Two vec4 forms ({@link convPackVec4Kernel}) take the operands that are plain rows or their
 * transpose (every 1×1 stride-1 conv, the weights, dy of the weight gradient): a storage load on
 * software adapters is a per-lane loop, so four values per load instead of one.
 */
import type { Kernel } from "../kernel.ts";
import { uniforms } from "../uniforms.ts";
import { DILATED_WINDOW_FIELDS } from "../window.ts";

export type ConvPackMode = "strided" | "im2col" | "im2colT" | "dgrad";

export const CONV_PACK_WG = { x: 16, y: 4 } as const;

/**
 * `rows` texture rows of K values (`width` texels) from element `off`, starting at row row0 and
 * GEMM index k0, written from texture row tRow on; the mode's strides (sRow, kIn, sOut, sIn); the conv's input channels and window
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
  tRow: "u32",
});

/** The four components of a texel, in GEMM-index order. */
const LANES = ["x", "y", "z", "w"] as const;

/**
 * The texel's four values as straight-line code: component e gets `load` where k + e < kEnd, then
 * `step` moves the mode's cursor to the next GEMM index (no division past the texel's first).
 */
function fourValues(load: string, step: string): string {
  return LANES.map((c, e) =>
    `  if (k + ${e}u < kEnd) { v.${c} = ${load}; }${e < 3 ? `\n${step}` : ""}`
  ).join("\n");
}

/** Advances the window cursor (kx, ky, then the channel `ch`) by one GEMM index. */
const NEXT_TAP = `  kx += 1u;
  if (kx == u.kw) { kx = 0u; ky += 1u; if (ky == u.kh) { ky = 0u; ch += 1u; } }`;

/**
 * Per mode: the cursor of the texel's first GEMM index k at row r (the only integer divisions:
 * a runtime divisor is a scalar division per lane on CPU rasterisers, so a texel pays them once,
 * not four times), then the four values.
 */
const BODY: Record<ConvPackMode, string> = {
  strided: `  var q = k / u.kIn;
  var m = k % u.kIn;
  let base = u.off + r * u.sRow;
${
    fourValues(
      "X[base + q * u.sOut + m * u.sIn]",
      "  m += 1u;\n  if (m == u.kIn) { m = 0u; q += 1u; }",
    )
  }`,
  im2col: `  let KK = u.kh * u.kw;
  let by = i32((r / u.OW) * u.sh) - i32(u.ph);
  let bx = i32((r % u.OW) * u.sw) - i32(u.pw);
  var ch = k / KK;
  let tap = k % KK;
  var ky = tap / u.kw;
  var kx = tap % u.kw;
${fourValues("pixel(ch, by + i32(ky * u.dh), bx + i32(kx * u.dw))", NEXT_TAP)}`,
  im2colT: `  let KK = u.kh * u.kw;
  let ch = r / KK;
  let tap = r % KK;
  let dy = i32((tap / u.kw) * u.dh) - i32(u.ph);
  let dx = i32((tap % u.kw) * u.dw) - i32(u.pw);
  var oy = k / u.OW;
  var ox = k % u.OW;
${
    fourValues(
      "pixel(ch, i32(oy * u.sh) + dy, i32(ox * u.sw) + dx)",
      "  ox += 1u;\n  if (ox == u.OW) { ox = 0u; oy += 1u; }",
    )
  }`,
  dgrad: `  let KK = u.kh * u.kw;
  let py = i32(r / u.W + u.ph);
  let px = i32(r % u.W + u.pw);
  var ch = k / KK;
  let tap = k % KK;
  var ky = tap / u.kw;
  var kx = tap % u.kw;
${fourValues("grad(ch, py - i32(ky * u.dh), px - i32(kx * u.dw))", NEXT_TAP)}`,
};

/** Uniforms: {@link CONV_PACK_UNIFORMS} (24 u32). */
export function convPackKernel(mode: ConvPackMode): Kernel {
  return {
    key: `conv2d/pack-texture/${mode}`,
    wgsl: () =>
      /* wgsl */ `${CONV_PACK_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var T: texture_storage_2d<rgba32float, write>;

/** x at channel c, input pixel (iy, ix) (0 in the padding). */
fn pixel(c: u32, iy: i32, ix: i32) -> f32 {
  if (iy < 0 || ix < 0 || iy >= i32(u.H) || ix >= i32(u.W)) { return 0.0; }
  return X[u.off + c * u.H * u.W + u32(iy) * u.W + u32(ix)];
}

/** dy of output channel o that reaches input offset (ty, tx) = (y + ph − ky·dh, ...), else 0. */
fn grad(o: u32, ty: i32, tx: i32) -> f32 {
  if (ty < 0 || tx < 0) { return 0.0; }
  var uy = u32(ty);
  var ux = u32(tx);
  if (u.sh != 1u || u.sw != 1u) {
    if (uy % u.sh != 0u || ux % u.sw != 0u) { return 0.0; }
    uy = uy / u.sh;
    ux = ux / u.sw;
  }
  if (uy >= u.OH || ux >= u.OW) { return 0.0; }
  return X[u.off + o * u.OH * u.OW + uy * u.OW + ux];
}

@compute @workgroup_size(${CONV_PACK_WG.x}, ${CONV_PACK_WG.y})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= u.width || gid.y >= u.rows) { return; }
  let r = u.row0 + gid.y;
  let k = u.k0 + 4u * j;
  let kEnd = u.k0 + u.K;
  var v = vec4<f32>(0.0);
${BODY[mode]}
  textureStore(T, vec2<u32>(j, u.tRow + gid.y), v);
}`,
  };
}

/**
 * The vec4 packs, for operands laid out as element (r, k) at off + r·sRow + k (`rows4`: a texel is
 * one vec4 load) or at off + k·sRow + r (`cols4`: the transpose — an invocation reads the vec4s of
 * four consecutive k over rows r..r+3 and stores those four rows' texels). Needs off, sRow, k0
 * (rows4) or row0 (cols4) multiples of 4 and a binding of whole vec4s; values past K are zero (a
 * load may read up to 3 elements past the operand, within the binding). Same uniforms as
 * {@link convPackKernel}; grid: ⌈width / WG.x⌉ × ⌈rows / WG.y⌉ (rows4) or ⌈rows / 4 / WG.y⌉ (cols4).
 */
export function convPackVec4Kernel(mode: "rows4" | "cols4"): Kernel {
  const mask = (v: string) =>
    LANES.map((c, e) => `  if (k + ${e}u >= kEnd) { ${v}.${c} = 0.0; }`).join("\n");
  const body = mode === "rows4"
    ? `  if (gid.y >= u.rows) { return; }
  let r = u.row0 + gid.y;
  var v = X[(u.off + r * u.sRow + k) / 4u];
${mask("v")}
  textureStore(T, vec2<u32>(j, u.tRow + gid.y), v);`
    : `  let q0 = 4u * gid.y;
  if (q0 >= u.rows) { return; }
  let b = (u.off + u.row0 + q0) / 4u;
  let s4 = u.sRow / 4u;
  var a = vec4<f32>(0.0);
  var c = vec4<f32>(0.0);
  var d = vec4<f32>(0.0);
  var e = vec4<f32>(0.0);
  if (k < kEnd) { a = X[b + k * s4]; }
  if (k + 1u < kEnd) { c = X[b + (k + 1u) * s4]; }
  if (k + 2u < kEnd) { d = X[b + (k + 2u) * s4]; }
  if (k + 3u < kEnd) { e = X[b + (k + 3u) * s4]; }
  textureStore(T, vec2<u32>(j, u.tRow + q0), vec4<f32>(a.x, c.x, d.x, e.x));
  if (q0 + 1u < u.rows) { textureStore(T, vec2<u32>(j, u.tRow + q0 + 1u), vec4<f32>(a.y, c.y, d.y, e.y)); }
  if (q0 + 2u < u.rows) { textureStore(T, vec2<u32>(j, u.tRow + q0 + 2u), vec4<f32>(a.z, c.z, d.z, e.z)); }
  if (q0 + 3u < u.rows) { textureStore(T, vec2<u32>(j, u.tRow + q0 + 3u), vec4<f32>(a.w, c.w, d.w, e.w)); }`;
  return {
    key: `conv2d/pack-texture/${mode}`,
    wgsl: () =>
      /* wgsl */ `${CONV_PACK_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var T: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(${CONV_PACK_WG.x}, ${CONV_PACK_WG.y})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= u.width) { return; }
  let k = u.k0 + 4u * j;
  let kEnd = u.k0 + u.K;
${body}
}`,
  };
}
