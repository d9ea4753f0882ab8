/**
 * 3×3 stride-1 convolutions and their input and weight gradients by Winograd's minimal filtering
 * F(m×m, 3×3) on the texture GEMM (kernels/conv/winograd.ts for the transforms, kernels/matmul_texture.ts for
 * the product). Per chunk of output tiles:
 *
 * 1. the input transform Bᵀ d B of each (tile, channel) writes the GEMM's B operand's texels —
 *    α² components stacked as row blocks, four channels per texel (it is the packing pass; there is
 *    no im2col) — as vec4s of a staging buffer that one copy moves into the texture (every
 *    transform writing a texture operand does: {@link textureTarget});
 * 2. one batched texture GEMM per group of components: M[z] [O, tiles] = U[z] [O, C] · V[z]ᵀ,
 *    U = G g Gᵀ the transformed filters (packed once per call, before the chunks);
 * 3. the output transform Aᵀ M A writes each m×m tile of y, cropped at ragged edges.
 *
 * The multiply count per output falls from 9·C·O to (α/m)²·C·O: 4 (F(2,3)) or 2.25 (F(4,3)).
 * The input gradient of a 3×3 stride-1 conv is the same correlation of dy with the filters rotated
 * by 180° and transposed ([C, O]), padded by 2 − padding: the weight transform reads them so.
 *
 * Where components × rows would pass the texture limit (F(4,3) with 512 filters: 36·512 > 16384),
 * the components are split into groups, each with its own input-transform pass.
 *
 * Without the texture matmul (GPUs), the transforms write dense buffers and the α² GEMMs are one
 * batched matmulRaw (the workgroup-tiled kernel there); the output transform is shared. The weight
 * gradient ({@link conv2dBackwardWeightWinograd}) has the texture variant only.
 */
import { type Binding, copyBufferToTexture, dispatch } from "../dispatch.ts";
import { gpu } from "../device.ts";
import { empty, type Tensor } from "../tensor.ts";
import { acquireTexture, hasReadonlyStorageTextures, releaseTexture } from "../texture_pool.ts";
import { bindingLimit, convTextureMaxRows, matmulVariant } from "../routing.ts";
import { matmulRaw } from "./matmul.ts";
import {
  WINOGRAD_INPUT_UNIFORMS,
  WINOGRAD_OUTPUT_UNIFORMS,
  WINOGRAD_TILE_UNIFORMS,
  WINOGRAD_WEIGHT_UNIFORMS,
  WINOGRAD_WG,
  WINOGRAD_WGRAD_UNIFORMS,
  winogradInputKernel,
  type WinogradOperand,
  winogradOutputKernel,
  type WinogradTile,
  winogradTileKernel,
  winogradWeightGradKernel,
  winogradWeightKernel,
} from "../../kernels/conv/winograd.ts";
import {
  MATMUL_TEXTURE_UNIFORMS,
  matmulTextureKernel,
  type TextureTile,
} from "../../kernels/matmul_texture.ts";
import { matmulTile } from "../autotune.ts";
import { bindRange } from "./matmul_plan.ts";
import type { ConvGeometry } from "./conv.ts";

/** The correlation one Winograd launch computes: x [N, C, H, W] → y [N, O, OH, OW], 3×3 taps. */
interface WinogradProblem {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  OH: number;
  OW: number;
  /** Tile origin offset: input row of output row 0 is −padY (may be negative padding). */
  padY: number;
  padX: number;
}

/** Where the filter (row = output channel, k = input channel) lies in the weight tensor. */
interface FilterLayout {
  w: Tensor;
  sRow: number;
  sK: number;
  /** Taps rotated by 180° (the input gradient). */
  flip: boolean;
}

/** Whether a 3×3 stride-1 dilation-1 ungrouped pass may take Winograd on this adapter. */
export function convWinogradFits(g: ConvGeometry, pass: "forward" | "input" | "weight"): boolean {
  if (g.groups !== 1 || g.kh !== 3 || g.kw !== 3 || g.sh !== 1 || g.sw !== 1) return false;
  if (g.dh !== 1 || g.dw !== 1) return false;
  const limit = bindingLimit();
  // One sample's input and output must each fit a binding.
  if ((g.C * g.H * g.W + 64) * 4 > limit || (g.O * g.OH * g.OW + 64) * 4 > limit) return false;
  // The weight gradient's operands have C and O texture rows (no buffer variant), and its sums
  // M [α², O, C] are one binding (α² = 36 for F(4,3), which a forced tile may take).
  if (pass === "weight") {
    return winogradOnTextures() && Math.max(g.C, g.O) <= convTextureMaxRows() &&
      (36 * g.O * g.C + 64) * 4 <= limit;
  }
  // The filters fit one texture block or, on buffers, their F(4,3) transform one binding.
  const rows = pass === "forward" ? g.O : g.C;
  return winogradOnTextures() ? rows <= convTextureMaxRows() : 36 * g.O * g.C * 4 <= limit;
}

/**
 * Register tile of the α² component GEMMs [rows, N] over K: the adapter's tuned tile for that
 * product class, else the default rule (engine/autotune.ts), as the conv texture GEMMs take theirs.
 */
function gemmTile(rows: number, N: number, K: number, batch: number): TextureTile {
  return matmulTile("texture", rows, N, K, batch) as TextureTile;
}

/**
 * How a call's T output tiles are cut into chunks: at most `Tc` tiles each; `aligned` chunks never
 * cross a sample's boundary (tps tiles a sample).
 */
export interface TilePlan {
  Tc: number;
  aligned: boolean;
}

/**
 * Tiles per chunk at most Tc, halved (then capped at one sample's tps tiles) until the samples a
 * chunk spans fit a binding both in the input (CHW a sample) and in the output (OHW a sample).
 * Where one sample fits a binding but two do not, halving would end at one tile a chunk (hundreds
 * of thousands of dispatches for a large image); the chunks are kept inside one sample instead.
 * Everywhere else the chunks are those of before (the weight gradient's sums keep their order).
 */
export function fitSpan(
  Tc: number,
  tps: number,
  CHW: number,
  OHW: number,
  limit: number,
): TilePlan {
  const fits = (span: number) => (span * CHW + 64) * 4 <= limit && (span * OHW + 64) * 4 <= limit;
  const spanFits = (tc: number) => fits(Math.ceil((tc - 1) / tps) + 1);
  const cap = Tc;
  while (Tc > 1 && !spanFits(Tc)) Tc = Math.max(1, Math.min(Tc >> 1, tps));
  if (Tc === 1 && cap > 1 && tps > 1 && fits(1)) return { Tc: Math.min(cap, tps), aligned: true };
  return { Tc, aligned: false };
}

/** The chunks [T0, tc) of T tiles under a plan. */
export function* tileChunks(T: number, tps: number, plan: TilePlan): Generator<[number, number]> {
  for (let T0 = 0; T0 < T;) {
    const tc = Math.min(plan.Tc, T - T0, plan.aligned ? tps - (T0 % tps) : Infinity);
    yield [T0, tc];
    T0 += tc;
  }
}

/** A chunk of output tiles: tiles T0 .. T0 + tc − 1 of samples nLo .. nHi (tW a row, tps a sample). */
interface TileChunk {
  tW: number;
  tps: number;
  T0: number;
  tc: number;
  nLo: number;
  nHi: number;
}

/**
 * Where a transform writes components [z0, z1) of a GEMM operand: a texture, or a buffer binding
 * whose operand starts at element outOff (`staged`: texture rows `pitch` texels apart).
 */
interface OperandTarget {
  out: WinogradOperand;
  dst: Binding;
  z0: number;
  z1: number;
  outOff: number;
  pitch: number;
}

type Texture = ReturnType<typeof acquireTexture>;

/**
 * A transform's target for `rows` texture rows of `width` texels of `tex`, and what to run after
 * its dispatch: a staging buffer copied into the texture (rows padded to 256 bytes, as copies
 * need), since llvmpipe's storage-texture stores cost more than buffer stores plus the copy
 * (BENCHMARKS.md "Training step, third pass"); the texture itself where the staging buffer would
 * pass a binding or its offset is not a texel's.
 */
function textureTarget(
  tex: Texture,
  width: number,
  rows: number,
  z0: number,
  z1: number,
): { target: OperandTarget; done: () => void } {
  const pitch = Math.ceil(width / 16) * 16, floats = rows * pitch * 4;
  if ((floats + 64) * 4 <= bindingLimit()) {
    const s = empty([floats]);
    const r = bindRange(s, s.offset, s.offset + floats - 1);
    const at = s.storage.offset + 4 * s.offset;
    if ((s.offset - r.start) % 4 === 0 && at % 16 === 0) {
      const target = { out: "staged", dst: r.binding, z0, z1, outOff: s.offset - r.start, pitch };
      const done = () => {
        copyBufferToTexture(s.storage.buffer, at, pitch * 16, tex.texture, width, rows, 0);
        s.dispose();
      };
      return { target: target as OperandTarget, done };
    }
    s.dispose();
  }
  const target = { out: "texture", dst: { view: tex.view }, z0, z1, outOff: 0, pitch: 0 } as const;
  return { target, done: () => {} };
}

/**
 * Step 1: U = G g Gᵀ of the filters into `t`.
 */
function weightTransform(
  m: WinogradTile,
  f: FilterLayout,
  p: WinogradProblem,
  t: OperandTarget,
): void {
  const K4 = Math.ceil(p.C / 4);
  const b = bindRange(f.w, f.w.offset, f.w.offset + f.w.size - 1);
  // On CPU rasterisers (texture operands), threads along x over rows where a row's filters lie
  // closer together than a k's; GPUs (buffer operands) keep k along x, their stores coalesced.
  const rowsAlongX = t.out !== "buffer" && f.sRow < f.sK;
  dispatch(
    winogradWeightKernel(m, t.out, rowsAlongX),
    [b.binding, t.dst],
    WINOGRAD_WEIGHT_UNIFORMS.pack({
      rows: p.O,
      K: p.C,
      width: K4,
      off: f.w.offset - b.start,
      sRow: f.sRow,
      sK: f.sK,
      flip: f.flip ? 1 : 0,
      z0: t.z0,
      z1: t.z1,
      outOff: t.outOff,
      pitch: t.pitch,
    }),
    rowsAlongX
      ? [Math.ceil(p.O / WINOGRAD_WG.x), Math.ceil(K4 / WINOGRAD_WG.y)]
      : [Math.ceil(K4 / WINOGRAD_WG.x), Math.ceil(p.O / WINOGRAD_WG.y)],
  );
}

/**
 * Step 2's packing pass: V = Bᵀ d B of the chunk's tiles from x (bound as xr from sample nLo)
 * into `t`.
 */
function inputTransform(
  m: WinogradTile,
  x: Tensor,
  xr: { binding: Binding; start: number },
  p: WinogradProblem,
  c: TileChunk,
  t: OperandTarget,
): void {
  const K4 = Math.ceil(p.C / 4);
  dispatch(
    winogradInputKernel(m, t.out),
    [xr.binding, t.dst],
    WINOGRAD_INPUT_UNIFORMS.pack({
      C: p.C,
      H: p.H,
      W: p.W,
      width: K4,
      tW: c.tW,
      tps: c.tps,
      T0: c.T0,
      Tc: c.tc,
      nBase: c.nLo,
      off: x.offset + c.nLo * p.C * p.H * p.W - xr.start,
      z0: t.z0,
      z1: t.z1,
      padY: p.padY,
      padX: p.padX,
      outOff: t.outOff,
      pitch: t.pitch,
    }),
    [Math.ceil(c.tc / WINOGRAD_WG.x), Math.ceil(K4 / WINOGRAD_WG.y)],
  );
}

function winogradConv(
  x: Tensor,
  f: FilterLayout,
  p: WinogradProblem,
  m: WinogradTile,
): Tensor {
  const y = empty([p.N, p.O, p.OH, p.OW]);
  if (y.size === 0) return y;
  if (!winogradOnTextures()) return winogradConvBuffers(x, f, p, m, y);
  const a2 = (m + 2) * (m + 2);
  const maxRows = convTextureMaxRows();
  const limit = bindingLimit();
  const tW = Math.ceil(p.OW / m), tps = Math.ceil(p.OH / m) * tW, T = p.N * tps;
  const CHW = p.C * p.H * p.W, OHW = p.O * p.OH * p.OW;
  // Components per GEMM group: their filter blocks must fit one texture.
  const zc = Math.min(a2, Math.floor(maxRows / p.O));
  if (zc < 1) {
    throw new Error(`conv2d (winograd): ${p.O} filters exceed the texture rows (${maxRows})`);
  }
  const groups: [number, number][] = [];
  for (let z0 = 0; z0 < a2; z0 += zc) groups.push([z0, Math.min(a2, z0 + zc)]);
  // Tiles per chunk: texture rows, the M scratch binding, and the samples a chunk spans.
  const cap = Math.min(T, Math.floor(maxRows / zc), Math.floor((limit / 4 - 64) / (a2 * p.O)));
  const plan = fitSpan(cap, tps, CHW, OHW, limit), Tc = plan.Tc;
  if (Tc < 1) throw new Error(`conv2d (winograd): ${p.O} filters do not fit a texture`);

  const K4 = Math.ceil(p.C / 4);
  // 1. Filters, once per call: one texture per component group.
  const wTex = groups.map(([z0, z1]) => {
    const tex = acquireTexture(K4, (z1 - z0) * p.O);
    const { target, done } = textureTarget(tex, K4, (z1 - z0) * p.O, z0, z1);
    weightTransform(m, f, p, target);
    done();
    return tex;
  });
  const scratch = empty([a2 * p.O * Tc]);
  for (const [T0, tc] of tileChunks(T, tps, plan)) {
    const nLo = Math.floor(T0 / tps), nHi = Math.floor((T0 + tc - 1) / tps);
    const chunk = { tW, tps, T0, tc, nLo, nHi };
    const xr = bindRange(x, x.offset + nLo * CHW, x.offset + (nHi + 1) * CHW - 1);
    const rt = gemmTile(p.O, tc, p.C, a2);
    const mr = bindRange(scratch, scratch.offset, scratch.offset + a2 * p.O * tc - 1);
    groups.forEach(([z0, z1], gi) => {
      // 2. Input transform of this group's components, then their GEMMs.
      const tex = acquireTexture(K4, (z1 - z0) * tc);
      const { target, done } = textureTarget(tex, K4, (z1 - z0) * tc, z0, z1);
      inputTransform(m, x, xr, p, chunk, target);
      done();
      dispatch(
        matmulTextureKernel({ bias: false, beta: false }, rt),
        [{ view: wTex[gi].view }, { view: tex.view }, mr.binding],
        MATMUL_TEXTURE_UNIFORMS.pack({
          M: p.O,
          N: tc,
          K4,
          zBase: z0,
          aRows: p.O,
          bRows: tc,
          cOff: scratch.offset - mr.start,
          ldc: tc,
          biasOff: 0,
          nb1: a2,
          sc0: 0,
          sc1: p.O * tc,
          alpha: 1,
          beta: 0,
        }),
        [Math.ceil(tc / (rt.wx * rt.tn)), Math.ceil(p.O / (rt.wy * rt.tm)), z1 - z0],
      );
      releaseTexture(tex);
    });
    // 3. Output transform of the chunk.
    outputTransform(m, scratch, y, p, chunk);
  }
  scratch.dispose();
  for (const t of wTex) releaseTexture(t);
  return y;
}

/** Whether the component GEMMs run on textures (the texture matmul), else the batched matmul. */
function winogradOnTextures(): boolean {
  return matmulVariant() === "texture" && hasReadonlyStorageTextures();
}

/**
 * The same three steps with the operands in buffers and the GEMMs as one batched matmulRaw per
 * chunk (the workgroup-tiled kernel on GPUs): U [α², O, C] · V [α², C, Tc] → M [α², O, Tc].
 */
function winogradConvBuffers(
  x: Tensor,
  f: FilterLayout,
  p: WinogradProblem,
  m: WinogradTile,
  y: Tensor,
): Tensor {
  const a2 = (m + 2) * (m + 2);
  const limit = bindingLimit();
  const tW = Math.ceil(p.OW / m), tps = Math.ceil(p.OH / m) * tW, T = p.N * tps;
  const CHW = p.C * p.H * p.W, OHW = p.O * p.OH * p.OW;
  // Tiles per chunk: V and M each within a binding, the transforms' grids (a thread per tile
  // along x) within the workgroup limit, and the samples a chunk spans.
  const cap = Math.min(
    T,
    Math.floor((limit / 4 - 64) / (a2 * Math.max(p.C, p.O))),
    WINOGRAD_WG.x * gpu().limits.maxComputeWorkgroupsPerDimension,
  );
  const plan = fitSpan(cap, tps, CHW, OHW, limit), Tc = plan.Tc;
  if (Tc < 1 || a2 * p.O * p.C * 4 > limit) {
    throw new Error(`conv2d (winograd): ${p.O}×${p.C} filters do not fit a binding`);
  }
  const u = empty([a2, p.O, p.C]);
  const ub = bindRange(u, u.offset, u.offset + u.size - 1);
  weightTransform(m, f, p, {
    out: "buffer",
    dst: ub.binding,
    z0: 0,
    z1: a2,
    outOff: u.offset - ub.start,
    pitch: 0,
  });
  for (const [T0, tc] of tileChunks(T, tps, plan)) {
    const nLo = Math.floor(T0 / tps), nHi = Math.floor((T0 + tc - 1) / tps);
    const chunk = { tW, tps, T0, tc, nLo, nHi };
    const xr = bindRange(x, x.offset + nLo * CHW, x.offset + (nHi + 1) * CHW - 1);
    const v = empty([a2, p.C, tc]), mz = empty([a2, p.O, tc]);
    const vb = bindRange(v, v.offset, v.offset + v.size - 1);
    const t = {
      out: "buffer",
      dst: vb.binding,
      z0: 0,
      z1: a2,
      outOff: v.offset - vb.start,
      pitch: 0,
    } as const;
    inputTransform(m, x, xr, p, chunk, t);
    matmulRaw(u, v, { out: mz });
    v.dispose();
    outputTransform(m, mz, y, p, chunk);
    mz.dispose();
  }
  u.dispose();
  return y;
}

/** Step 3 for one chunk: y's tiles T0 .. T0 + tc − 1 from M [α², O, tc] (dense, from its offset). */
function outputTransform(
  m: WinogradTile,
  mz: Tensor,
  y: Tensor,
  p: WinogradProblem,
  c: TileChunk,
): void {
  const OHW = p.O * p.OH * p.OW;
  const mr = bindRange(mz, mz.offset, mz.offset + (m + 2) * (m + 2) * p.O * c.tc - 1);
  const yr = bindRange(y, y.offset + c.nLo * OHW, y.offset + (c.nHi + 1) * OHW - 1);
  dispatch(
    winogradOutputKernel(m),
    [mr.binding, yr.binding],
    WINOGRAD_OUTPUT_UNIFORMS.pack({
      O: p.O,
      OH: p.OH,
      OW: p.OW,
      tW: c.tW,
      tps: c.tps,
      T0: c.T0,
      Tc: c.tc,
      nBase: c.nLo,
      mOff: mz.offset - mr.start,
      yOff: y.offset + c.nLo * OHW - yr.start,
    }),
    [Math.ceil(c.tc / WINOGRAD_WG.x), Math.ceil(p.O / WINOGRAD_WG.y)],
  );
}

/** y [N,O,OH,OW] of dense x and w (3×3, stride 1, dilation 1, groups 1, no bias). */
export function conv2dForwardWinograd(
  x: Tensor,
  w: Tensor,
  g: ConvGeometry,
  m: WinogradTile,
): Tensor {
  return winogradConv(
    x,
    { w, sRow: g.C * 9, sK: 9, flip: false },
    { N: g.N, C: g.C, H: g.H, W: g.W, O: g.O, OH: g.OH, OW: g.OW, padY: g.ph, padX: g.pw },
    m,
  );
}

/**
 * dx [N,C,H,W] of a 3×3 stride-1 conv from dense dy and w: dy correlated with w rotated by 180°,
 * rows c and k = o, padded by 2 − padding.
 */
export function conv2dBackwardDataWinograd(
  dy: Tensor,
  w: Tensor,
  g: ConvGeometry,
  m: WinogradTile,
): Tensor {
  return winogradConv(
    dy,
    { w, sRow: 9, sK: g.C * 9, flip: true },
    {
      N: g.N,
      C: g.O,
      H: g.OH,
      W: g.OW,
      O: g.C,
      OH: g.H,
      OW: g.W,
      padY: 2 - g.ph,
      padX: 2 - g.pw,
    },
    m,
  );
}

/** Tiles summed per weight-gradient GEMM: about as many pixels as conv_texture.ts's chunks. */
const WGRAD_PIXELS = 1024;

/**
 * dW [O,C,3,3] of a 3×3 stride-1 conv from dense x and dy (texture GEMMs only): per chunk of
 * tiles, x's windows by Bᵀ·B and dy's blocks by A·Aᵀ into textures with the tiles along K, the α²
 * GEMMs [O, tiles] × [tiles, C] accumulated into M [α², O, C]; then dW = Gᵀ M G per filter.
 */
export function conv2dBackwardWeightWinograd(
  x: Tensor,
  dy: Tensor,
  g: ConvGeometry,
  m: WinogradTile,
): Tensor {
  const dw = empty([g.O, g.C, 3, 3]);
  const a = m + 2, a2 = a * a;
  const maxRows = convTextureMaxRows(), limit = bindingLimit();
  const tW = Math.ceil(g.OW / m), tps = Math.ceil(g.OH / m) * tW, T = g.N * tps;
  const CHW = g.C * g.H * g.W, OHW = g.O * g.OH * g.OW;
  const zc = Math.min(a2, Math.floor(maxRows / Math.max(g.C, g.O)));
  if (zc < 1) throw new Error(`conv2d (winograd): ${g.C}/${g.O} channels exceed the texture rows`);
  const cap = Math.min(T, Math.max(16, Math.floor(WGRAD_PIXELS / (m * m))), 4 * maxRows);
  const plan = fitSpan(cap, tps, CHW, OHW, limit), Tc = plan.Tc;
  const scratch = empty([a2 * g.O * g.C]);
  const mr = bindRange(scratch, scratch.offset, scratch.offset + scratch.size - 1);
  const rt = gemmTile(g.O, g.C, Math.min(T, Tc), a2);
  const transform = (
    which: "x" | "dy",
    src: Tensor,
    perSample: number,
    ch: number,
    H: number,
    W: number,
    T0: number,
    tc: number,
    z0: number,
    z1: number,
  ) => {
    const nLo = Math.floor(T0 / tps), nHi = Math.floor((T0 + tc - 1) / tps);
    const r = bindRange(src, src.offset + nLo * perSample, src.offset + (nHi + 1) * perSample - 1);
    const width = Math.ceil(tc / 4);
    const tex = acquireTexture(width, (z1 - z0) * ch);
    const { target, done } = textureTarget(tex, width, (z1 - z0) * ch, z0, z1);
    dispatch(
      winogradTileKernel(m, which, target.out as "texture" | "staged"),
      [r.binding, target.dst],
      WINOGRAD_TILE_UNIFORMS.pack({
        Ch: ch,
        H,
        W,
        width,
        tW,
        tps,
        T0,
        Tc: tc,
        nBase: nLo,
        off: src.offset + nLo * perSample - r.start,
        z0,
        z1,
        padY: which === "x" ? g.ph : 0,
        padX: which === "x" ? g.pw : 0,
        outOff: target.outOff,
        pitch: target.pitch,
      }),
      [Math.ceil(width / WINOGRAD_WG.x), Math.ceil(ch / WINOGRAD_WG.y)],
    );
    done();
    return tex;
  };
  for (const [T0, tc] of tileChunks(T, tps, plan)) {
    for (let z0 = 0; z0 < a2; z0 += zc) {
      const z1 = Math.min(a2, z0 + zc);
      const tdy = transform("dy", dy, OHW, g.O, g.OH, g.OW, T0, tc, z0, z1);
      const tx = transform("x", x, CHW, g.C, g.H, g.W, T0, tc, z0, z1);
      const first = T0 === 0;
      dispatch(
        matmulTextureKernel({ bias: false, beta: !first }, rt),
        [{ view: tdy.view }, { view: tx.view }, mr.binding],
        MATMUL_TEXTURE_UNIFORMS.pack({
          M: g.O,
          N: g.C,
          K4: Math.ceil(tc / 4),
          zBase: z0,
          aRows: g.O,
          bRows: g.C,
          cOff: scratch.offset - mr.start,
          ldc: g.C,
          biasOff: 0,
          nb1: a2,
          sc0: 0,
          sc1: g.O * g.C,
          alpha: 1,
          beta: first ? 0 : 1,
        }),
        [Math.ceil(g.C / (rt.wx * rt.tn)), Math.ceil(g.O / (rt.wy * rt.tm)), z1 - z0],
      );
      releaseTexture(tdy);
      releaseTexture(tx);
    }
  }
  const dr = bindRange(dw, dw.offset, dw.offset + dw.size - 1);
  dispatch(
    winogradWeightGradKernel(m),
    [mr.binding, dr.binding],
    WINOGRAD_WGRAD_UNIFORMS.pack({
      O: g.O,
      C: g.C,
      mOff: scratch.offset - mr.start,
      dwOff: dw.offset - dr.start,
    }),
    [Math.ceil(g.C / WINOGRAD_WG.x), Math.ceil(g.O / WINOGRAD_WG.y)],
  );
  scratch.dispose();
  return dw;
}
