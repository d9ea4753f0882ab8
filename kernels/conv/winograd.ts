/**
 * Winograd F(m×m, 3×3) convolution kernels (Lavin & Gray's minimal filtering, m = 2 or 4): a 3×3
 * stride-1 correlation over an (m+2)×(m+2) input tile d gives the m×m output tile
 * Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, so per tile the α² = (m+2)² elementwise products, summed over the
 * input channels, are α² independent GEMMs [O, C] × [C, tiles] (engine/ops/conv_winograd.ts).
 *
 * - `winogradWeightKernel`: U = G g Gᵀ of each (row, k) filter, written as texture rows z·rows + row
 *   (component z = i·α + j), four k per texel: the A operand of the batched texture GEMM.
 * - `winogradInputKernel`: V = Bᵀ d B of each (tile, channel), written as texture rows z·Tc + t:
 *   the B operand. This transform is the packing pass of the GEMM (no im2col).
 * - `winogradOutputKernel`: Y = Aᵀ M A from the GEMM's output M [α², O, Tc], cropped at ragged
 *   edges.
 *
 * All three are generated with the transform matrices' coefficients unrolled (zeros skipped).
 */
import type { Kernel } from "../kernel.ts";
import { uniforms } from "../uniforms.ts";

/** Output tile size m of F(m×m, 3×3). */
export type WinogradTile = 2 | 4;

/** The transform matrices of F(m, 3): Bᵀ [α, α], G [α, 3], Aᵀ [m, α] (α = m + 2). */
export interface WinogradMatrices {
  BT: number[][];
  G: number[][];
  AT: number[][];
}

/** Lavin & Gray's F(2,3) (interpolation points 0, ±1, ∞) and F(4,3) (0, ±1, ±2, ∞). */
export const WINOGRAD_MATRICES: Record<WinogradTile, WinogradMatrices> = {
  2: {
    BT: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    G: [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
    AT: [[1, 1, 1, 0], [0, 1, -1, -1]],
  },
  4: {
    BT: [
      [4, 0, -5, 0, 1, 0],
      [0, -4, -4, 1, 1, 0],
      [0, 4, -4, -1, 1, 0],
      [0, -2, -1, 2, 1, 0],
      [0, 2, -1, -2, 1, 0],
      [0, 4, 0, -5, 0, 1],
    ],
    G: [
      [1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1],
    ],
    AT: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
  },
};

/** WGSL f32 literal of a coefficient (enough digits for 1/6, 1/24). */
function lit(c: number): string {
  const s = Number.isInteger(c) ? `${c}.0` : `${Math.fround(c).toPrecision(9)}`;
  return c < 0 ? `(${s})` : s;
}

/** Σ coef[i]·term[i] as WGSL, zeros skipped, ±1 without a multiply; `zero` when all vanish. */
function combo(coef: number[], terms: string[], zero: string): string {
  const parts: string[] = [];
  coef.forEach((c, i) => {
    if (c === 0) return;
    const t = c === 1 ? terms[i] : c === -1 ? `-${terms[i]}` : `${lit(c)} * ${terms[i]}`;
    parts.push(parts.length === 0 ? t : t.startsWith("-") ? ` - ${t.slice(1)}` : ` + ${t}`);
  });
  return parts.length ? parts.join("") : zero;
}

/**
 * WGSL lines computing out = L · in · Lᵀ for `in` named `${src}${a}_${b}` ([n, n]) into
 * `${dst}${i}_${j}` ([p, p]), L [p, n]; `ty` the element type.
 */
function sandwich(L: number[][], src: string, dst: string, ty: string): string[] {
  const p = L.length, n = L[0].length;
  const zero = `${ty}(0.0)`;
  const lines: string[] = [];
  for (let i = 0; i < p; i++) {
    for (let b = 0; b < n; b++) {
      const terms = [...Array(n).keys()].map((a) => `${src}${a}_${b}`);
      lines.push(`  let ${dst}t${i}_${b} = ${combo(L[i], terms, zero)};`);
    }
  }
  for (let i = 0; i < p; i++) {
    for (let j = 0; j < p; j++) {
      const terms = [...Array(n).keys()].map((b) => `${dst}t${i}_${b}`);
      lines.push(`  let ${dst}${i}_${j} = ${combo(L[j], terms, zero)};`);
    }
  }
  return lines;
}

/**
 * Where a transform writes its GEMM operand: rgba32float texture rows (the texture GEMM, software
 * adapters); the same texels as vec4s of a staging buffer, `u.pitch` texels a row from element
 * `u.outOff`, which the op then copies into the texture (`staged`: on llvmpipe a storage-texture
 * store costs about 2.4× a buffer's vec4 store, and the copy is a memcpy); or a dense f32 buffer
 * for the engine's batched matmul — the filters as [α², rows, K], the input as [α², C, Tc] (tiles
 * innermost, so that neighbouring threads write neighbours).
 */
export type WinogradOperand = "texture" | "staged" | "buffer";

const OUT_DECL: Record<WinogradOperand, string> = {
  texture: "var T: texture_storage_2d<rgba32float, write>;",
  staged: "var<storage, read_write> Out4: array<vec4<f32>>;",
  buffer: "var<storage, read_write> Out: array<f32>;",
};

/**
 * Stores value `v` (vec4 over four lanes) of component z at texel (`texel`, `textureRow`) of the
 * texture or its staging buffer, or for `buffer` at index `index(l)` of each lane l < `lanes`.
 */
function storeOperand(
  out: WinogradOperand,
  z: number,
  v: string,
  textureRow: string,
  index: (lane: number) => string,
  lanes: string,
  texel = "j",
): string {
  const guard = `${z}u >= u.z0 && ${z}u < u.z1`;
  if (out === "texture") {
    return `  if (${guard}) { textureStore(T, vec2<u32>(${texel}, ${textureRow}), ${v}); }`;
  }
  if (out === "staged") {
    return `  if (${guard}) { Out4[(u.outOff >> 2u) + (${textureRow}) * u.pitch + ${texel}] = ${v}; }`;
  }
  const st = [0, 1, 2, 3].map((l) => `if (${l}u < ${lanes}) { Out[${index(l)}] = ${v}[${l}]; }`);
  return `  if (${guard}) { ${st.join(" ")} }`;
}

/** The loads, then out = L · in · Lᵀ ({@link sandwich}), then the stores: a transform's body. */
function transformBody(
  loads: string[],
  L: number[][],
  src: string,
  dst: string,
  ty: string,
  stores: string[],
): string {
  return [...loads, ...sandwich(L, src, dst, ty), ...stores].join("\n");
}

/** Threads per workgroup of the three transforms: 16 along the fast index, 4 along the other. */
export const WINOGRAD_WG = { x: 16, y: 4 } as const;

/** `line(i, j)` for each (i, j) of a rows×cols grid, row-major: the unrolled loads and stores. */
function grid(rows: number, cols: number, line: (i: number, j: number) => string): string[] {
  const lines: string[] = [];
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) lines.push(line(i, j));
  }
  return lines;
}

/** `vec4<f32>(lane(0), …, lane(3))`: four lanes (k's, channels or tiles) of one texel. */
function vec4Of(lane: (l: number) => string): string {
  return `vec4<f32>(${[0, 1, 2, 3].map(lane).join(", ")})`;
}

/** `line(l)` for the four lanes, one WGSL line each. */
function perLane(line: (l: number) => string): string {
  return [0, 1, 2, 3].map(line).join("\n");
}

/** Loads m{i}_{j} of the α² components of M [α², ·] at mb, components zs apart. */
function componentLoads(a: number): string[] {
  return grid(a, a, (i, j) => `  let m${i}_${j} = Mz[mb + ${i * a + j}u * zs];`);
}

/** The uniform declaration and the bindings (uniform, read-only source, output) of a transform. */
function bindings(layout: { wgsl(name: string): string }, src: string, out: string): string {
  return `${layout.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> ${src}: array<f32>;
@group(0) @binding(2) ${out}`;
}

/** The entry point's header, one thread per (gid.x, gid.y). */
const MAIN = `@compute @workgroup_size(${WINOGRAD_WG.x}, ${WINOGRAD_WG.y})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {`;

/** Global tile tg of chunk thread t, its sample n (from nBase) and its index rem in the sample. */
const TILE_INDEX = `  let tg = u.T0 + t;
  let n = tg / u.tps - u.nBase;
  let rem = tg % u.tps;`;

/** Uniform fields of a chunk of tiles: tW tiles a row, tps a sample, Tc from T0, samples from nBase. */
const TILE_CHUNK_FIELDS = {
  tW: "u32",
  tps: "u32",
  T0: "u32",
  Tc: "u32",
  nBase: "u32",
} as const;

/**
 * Uniform fields of a transform that reads tiles of an H×W image (from element `off`, tile origin
 * ty·m − padY, tx·m − padX) into `width` texels a row, components [z0, z1).
 */
const TILE_SOURCE_FIELDS = {
  H: "u32",
  W: "u32",
  width: "u32",
  ...TILE_CHUNK_FIELDS,
  off: "u32",
  z0: "u32",
  z1: "u32",
  padY: "i32",
  padX: "i32",
} as const;

/**
 * Weight transform: `rows` filters per k, `K` k's (texels `width`), filter (row, k) at element
 * off + row·sRow + k·sK, taps reversed when `flip` (the input gradient's rotated filters);
 * components [z0, z1) are written.
 */
export const WINOGRAD_WEIGHT_UNIFORMS = uniforms({
  rows: "u32",
  K: "u32",
  width: "u32",
  off: "u32",
  sRow: "u32",
  sK: "u32",
  flip: "u32",
  z0: "u32",
  z1: "u32",
  outOff: "u32",
  pitch: "u32",
  _p2: "u32",
});

/**
 * `rowsAlongX`: threads along x take consecutive rows (grid ⌈rows / WG.x⌉ × ⌈width / WG.y⌉), else
 * consecutive texels (⌈width / WG.x⌉ × ⌈rows / WG.y⌉). A CPU rasteriser runs neighbours along x as
 * one SIMD batch, whose loads are gathers: the rows side keeps them close where the filters of one
 * row are contiguous (sRow < sK: the input gradient's, 1.27× on 512² filters), the texel side
 * where the k's are (the forward's).
 */
export function winogradWeightKernel(
  m: WinogradTile,
  out: WinogradOperand = "texture",
  rowsAlongX = false,
): Kernel {
  const { G } = WINOGRAD_MATRICES[m];
  const a = m + 2;
  const loads = grid(3, 3, (ky, kx) => {
    const tap = ky * 3 + kx;
    return `  let g${ky}_${kx} = ${
      vec4Of((l) =>
        `select(0.0, Wt[base${l} + select(${tap}u, ${8 - tap}u, u.flip != 0u)], k0 + ${l}u < u.K)`
      )
    };`;
  });
  const stores = grid(a, a, (i, j) => {
    const z = i * a + j;
    return storeOperand(
      out,
      z,
      `U${i}_${j}`,
      `(${z}u - u.z0) * u.rows + r`,
      (l) => `u.outOff + (${z}u * u.rows + r) * u.K + k0 + ${l}u`,
      "lanes",
    );
  });
  return {
    key: `conv2d/winograd/weight/F${m}/${out}${rowsAlongX ? "/rx" : ""}`,
    wgsl: () =>
      /* wgsl */ `${bindings(WINOGRAD_WEIGHT_UNIFORMS, "Wt", OUT_DECL[out])}

${MAIN}
  let j = gid.${rowsAlongX ? "y" : "x"};
  let r = gid.${rowsAlongX ? "x" : "y"};
  if (j >= u.width || r >= u.rows) { return; }
  let k0 = 4u * j;
  let lanes = u.K - k0;
  // Lanes past K read filter K-1 (in range) and are zeroed by the select.
${perLane((l) => `  let base${l} = u.off + r * u.sRow + min(k0 + ${l}u, u.K - 1u) * u.sK;`)}
${transformBody(loads, G, "g", "U", "vec4<f32>", stores)}
}`,
  };
}

/**
 * Input transform over a chunk of Tc tiles from global tile T0 (tiles numbered n·tH·tW + ty·tW +
 * tx): the input x [·, C, H, W] from element `off` (sample nBase's first element), tile origin
 * (ty·m − padY, tx·m − padX); components [z0, z1) are written.
 */
export const WINOGRAD_INPUT_UNIFORMS = uniforms({
  C: "u32",
  ...TILE_SOURCE_FIELDS,
  outOff: "u32",
  pitch: "u32",
});

export function winogradInputKernel(m: WinogradTile, out: WinogradOperand = "texture"): Kernel {
  const { BT } = WINOGRAD_MATRICES[m];
  const a = m + 2;
  const loads = grid(
    a,
    a,
    (i, j) =>
      `  let d${i}_${j} = ${
        vec4Of((l) =>
          `ld(in${i} && ix${j}, b${l} + u32(y0 + ${i}) * u.W + u32(x0 + ${j}), c0 + ${l}u)`
        )
      };`,
  );
  const stores = grid(a, a, (i, j) => {
    const z = i * a + j;
    return storeOperand(
      out,
      z,
      `V${i}_${j}`,
      `(${z}u - u.z0) * u.Tc + t`,
      (l) => `u.outOff + (${z}u * u.C + c0 + ${l}u) * u.Tc + t`,
      "u.C - c0",
    );
  });
  const range = [...Array(a).keys()];
  return {
    key: `conv2d/winograd/input/F${m}/${out}`,
    wgsl: () =>
      /* wgsl */ `${bindings(WINOGRAD_INPUT_UNIFORMS, "X", OUT_DECL[out])}

/** X[i] where the pixel is inside the image and the channel exists, else 0 (the padding). */
fn ld(inside: bool, i: u32, c: u32) -> f32 {
  if (!inside || c >= u.C) { return 0.0; }
  return X[i];
}

${MAIN}
  let t = gid.x;
  let j = gid.y;
  if (t >= u.Tc || j >= u.width) { return; }
${TILE_INDEX}
  let y0 = i32((rem / u.tW) * ${m}u) - u.padY;
  let x0 = i32((rem % u.tW) * ${m}u) - u.padX;
  let c0 = 4u * j;
${range.map((i) => `  let in${i} = y0 + ${i} >= 0 && y0 + ${i} < i32(u.H);`).join("\n")}
${range.map((i) => `  let ix${i} = x0 + ${i} >= 0 && x0 + ${i} < i32(u.W);`).join("\n")}
${perLane((l) => `  let b${l} = u.off + (n * u.C + min(c0 + ${l}u, u.C - 1u)) * u.H * u.W;`)}
${transformBody(loads, BT, "d", "V", "vec4<f32>", stores)}
}`,
  };
}

/**
 * Output transform of a chunk: M [α², O, Tc] from element mOff, y [·, O, OH, OW] from element
 * yOff (sample nBase's first element); tiles as in {@link WINOGRAD_INPUT_UNIFORMS}.
 */
export const WINOGRAD_OUTPUT_UNIFORMS = uniforms({
  O: "u32",
  OH: "u32",
  OW: "u32",
  ...TILE_CHUNK_FIELDS,
  mOff: "u32",
  yOff: "u32",
  _p0: "u32",
  _p1: "u32",
});

export function winogradOutputKernel(m: WinogradTile): Kernel {
  const { AT } = WINOGRAD_MATRICES[m];
  const a = m + 2;
  const stores = [
    `  let yb = u.yOff + (n * u.O + o) * u.OH * u.OW;`,
    ...grid(
      m,
      m,
      (i, j) =>
        `  if (oy + ${i}u < u.OH && ox + ${j}u < u.OW) { Y[yb + (oy + ${i}u) * u.OW + ox + ${j}u] = Y${i}_${j}; }`,
    ),
  ];

  return {
    key: `conv2d/winograd/output/F${m}`,
    wgsl: () =>
      /* wgsl */ `${
        bindings(WINOGRAD_OUTPUT_UNIFORMS, "Mz", "var<storage, read_write> Y: array<f32>;")
      }

${MAIN}
  let t = gid.x;
  let o = gid.y;
  if (t >= u.Tc || o >= u.O) { return; }
${TILE_INDEX}
  let oy = (rem / u.tW) * ${m}u;
  let ox = (rem % u.tW) * ${m}u;
  let zs = u.O * u.Tc;
  let mb = u.mOff + o * u.Tc + t;
${transformBody(componentLoads(a), AT, "m", "Y", "f32", stores)}
}`,
  };
}

// ---------------------------------------------------------------- weight gradient

/**
 * Weight gradient, F(3×3, m×m): dW_j = Σ_i dy_i·x_{i+j} is the derivative of the trilinear form
 * Σ_k (A y)_k (G g)_k (Bᵀ d)_k of F(m, 3) by g, so per tile dW = Gᵀ [(A dy Aᵀ) ⊙ (Bᵀ x B)] G,
 * summed over tiles: α² GEMMs [O, tiles] × [tiles, C]. Their operands put the tiles along K, so
 * these transforms run four tiles per texel (lanes over tiles): `winogradTileKernel` with L = Bᵀ
 * on an α×α window of x (origin ty·m − padY) or L = A on the m×m block of dy (origin ty·m).
 */
export const WINOGRAD_TILE_UNIFORMS = uniforms({
  Ch: "u32",
  ...TILE_SOURCE_FIELDS,
  outOff: "u32",
  pitch: "u32",
});

/** Which operand a {@link winogradTileKernel} transforms: x by Bᵀ (α×α) or dy by A (m×m). */
export type WinogradTileOperand = "x" | "dy";

export function winogradTileKernel(
  m: WinogradTile,
  which: WinogradTileOperand,
  out: Exclude<WinogradOperand, "buffer"> = "texture",
): Kernel {
  const { BT, AT } = WINOGRAD_MATRICES[m];
  const a = m + 2;
  // L [α, s]: Bᵀ for x (s = α), A = (Aᵀ)ᵀ for dy (s = m).
  const L = which === "x" ? BT : BT.map((_, i) => AT.map((row) => row[i]));
  const s = L[0].length;
  const loads = grid(
    s,
    s,
    (i, j) =>
      `  let d${i}_${j} = ${
        vec4Of((l) =>
          `ld(t${l}, y${l} + ${i}, x${l} + ${j}, b${l} + u32(y${l} + ${i}) * u.W + u32(x${l} + ${j}))`
        )
      };`,
  );
  const stores = grid(a, a, (i, j) => {
    const z = i * a + j;
    return storeOperand(out, z, `V${i}_${j}`, `(${z}u - u.z0) * u.Ch + ch`, () => "", "", "q");
  });
  const lanes = [0, 1, 2, 3].map((l) => `
  let t${l} = 4u * q + ${l}u < u.Tc;
  let tg${l} = u.T0 + min(4u * q + ${l}u, u.Tc - 1u);
  let r${l} = tg${l} % u.tps;
  let y${l} = i32((r${l} / u.tW) * ${m}u) - u.padY;
  let x${l} = i32((r${l} % u.tW) * ${m}u) - u.padX;
  let b${l} = u.off + ((tg${l} / u.tps - u.nBase) * u.Ch + ch) * u.H * u.W;`).join("");
  return {
    key: `conv2d/winograd/tiles/F${m}/${which}/${out}`,
    wgsl: () =>
      /* wgsl */ `${bindings(WINOGRAD_TILE_UNIFORMS, "X", OUT_DECL[out])}

/** X[i] for a tile in the chunk and a pixel inside the image, else 0. */
fn ld(tile: bool, y: i32, x: i32, i: u32) -> f32 {
  if (!tile || y < 0 || x < 0 || y >= i32(u.H) || x >= i32(u.W)) { return 0.0; }
  return X[i];
}

${MAIN}
  let q = gid.x;
  let ch = gid.y;
  if (q >= u.width || ch >= u.Ch) { return; }${lanes}
${transformBody(loads, L, "d", "V", "vec4<f32>", stores)}
}`,
  };
}

/** dW [O, C, 3, 3] (from element dwOff) = Gᵀ M G of the summed products M [α², O, C] (from mOff). */
export const WINOGRAD_WGRAD_UNIFORMS = uniforms({
  O: "u32",
  C: "u32",
  mOff: "u32",
  dwOff: "u32",
});

export function winogradWeightGradKernel(m: WinogradTile): Kernel {
  const { G } = WINOGRAD_MATRICES[m];
  const a = m + 2;
  const GT = [0, 1, 2].map((r) => G.map((row) => row[r]));
  const stores = [
    `  let db = u.dwOff + (o * u.C + c) * 9u;`,
    ...grid(3, 3, (i, j) => `  dW[db + ${i * 3 + j}u] = D${i}_${j};`),
  ];
  return {
    key: `conv2d/winograd/wgrad-out/F${m}`,
    wgsl: () =>
      /* wgsl */ `${
        bindings(WINOGRAD_WGRAD_UNIFORMS, "Mz", "var<storage, read_write> dW: array<f32>;")
      }

${MAIN}
  let c = gid.x;
  let o = gid.y;
  if (c >= u.C || o >= u.O) { return; }
  let zs = u.O * u.C;
  let mb = u.mOff + o * u.C + c;
${transformBody(componentLoads(a), GT, "m", "D", "f32", stores)}
}`,
  };
}
