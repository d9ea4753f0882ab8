/**
 * Matrix products: `matmul` (torch.matmul semantics), `linear` (torch's F.linear, bias fused into
 * the kernel's epilogue) and the raw launcher `matmulRaw` with alpha/beta/bias.
 *
 * Transposed operands are read through their strides (no copy): the kernel is specialised on which
 * operand has its row dim contiguous. Backward rules pass transposed views, so dA = dC·Bᵀ and
 * dB = Aᵀ·dC cost one kernel each. Operands larger than the per-binding limit are split into
 * several dispatches over batch, M or N, each binding only the range it reads.
 */
import { type Binding, type BufferBinding, dispatch, Params } from "../dispatch.ts";
import { acquireTexture, hasReadonlyStorageTextures, releaseTexture } from "../texture_pool.ts";
import { gpu } from "../device.ts";
import { contiguousStrides, empty, type Tensor, view } from "../tensor.ts";
import { noGrad, record } from "../autograd.ts";
import {
  matmulKernel,
  matmulMaxK,
  type MatmulSpec,
  matmulTileSize,
  type MatmulVariant,
  REGISTER_TILE,
  REGISTER_TILE_SMALL,
  type RegisterTile,
} from "../../kernels/matmul.ts";
import {
  matmulPackKernel,
  matmulTextureKernel,
  PACK_WG,
  TEXTURE_TILE,
  TEXTURE_TILE_SMALL,
} from "../../kernels/matmul_texture.ts";
import { broadcastShapes, fill } from "./elementwise.ts";
import { dense, reshape, transpose } from "./view.ts";
import { sum, sumTo } from "./reduce.ts";

let forcedVariant: MatmulVariant | null = null;
let forcedTile: RegisterTile | null = null;

/**
 * Kernel variant for this adapter: on CPU rasterisers operands staged in textures (where WGSL has
 * read-only storage textures, else register blocking straight from buffers), shared tiles on GPUs.
 */
export function matmulVariant(): MatmulVariant {
  if (forcedVariant) return forcedVariant;
  const env = Deno.env.get("ENGINE_MATMUL");
  if (env === "tiled" || env === "register" || env === "texture") return env;
  if (!gpu().isSoftware) return "tiled";
  return hasReadonlyStorageTextures() ? "texture" : "register";
}

/** Below this many multiply-adds the texture variant's two packing passes are not worth it. */
const TEXTURE_MIN_MACS = 1 << 20;

/** Forces a variant (tests, benchmarks); `null` restores the per-adapter choice. */
export function setMatmulVariant(v: MatmulVariant | null, tile: RegisterTile | null = null): void {
  forcedVariant = v;
  forcedTile = tile;
}

export interface MatmulOptions {
  /** Scales the product (default 1). */
  alpha?: number;
  /** Vector over N added to every row (dense or strided, f32 [N]). */
  bias?: Tensor;
  /** Accumulate: out = alpha·A·B + beta·out (needs `out`). */
  beta?: number;
  /** Dense output tensor of the result's shape to write (or accumulate) into. */
  out?: Tensor;
  /** Per-binding byte limit (default: the adapter's); lower it to test the splitter. */
  maxBindingBytes?: number;
  /** Texture variant: most rows per staging texture (default maxTextureDimension2D); for tests. */
  maxTextureRows?: number;
  variant?: MatmulVariant;
}

/** Strides of one matrix operand: element (i, j) at off + i·si + j·sj + batch offset. */
interface Mat {
  t: Tensor;
  trans: boolean;
  ld: number;
  si: number;
  sj: number;
}

/** Layout of the last two dims, or null when neither is contiguous (then a copy is needed). */
function matLayout(t: Tensor): Mat | null {
  const r = t.shape[t.rank - 2], c = t.shape[t.rank - 1];
  const sr = t.strides[t.rank - 2], sc = t.strides[t.rank - 1];
  if (c === 1 || sc === 1) {
    const ld = r === 1 ? c : sr;
    return { t, trans: false, ld, si: ld, sj: 1 };
  }
  if (r === 1 || sr === 1) {
    const ld = c === 1 ? r : sc;
    return { t, trans: true, ld, si: 1, sj: ld };
  }
  return null;
}

/** One batch dim after merging: size and per-operand strides (0 = broadcast). */
interface BDim {
  n: number;
  sa: number;
  sb: number;
  sc: number;
}

/** A piece of the problem: batch range, rows, columns and a range of K (split-K accumulates). */
export interface MatmulChunk {
  z0: number;
  z1: number;
  m0: number;
  m1: number;
  n0: number;
  n1: number;
  k0: number;
  k1: number;
}

/** What the splitter needs to know (element units). */
export interface MatmulProblem {
  nb0: number;
  nb1: number;
  M: number;
  N: number;
  K: number;
  /** Per operand: element offset, batch strides (s0, s1) and matrix strides (si, sj). */
  a: { off: number; s0: number; s1: number; si: number; sj: number };
  b: { off: number; s0: number; s1: number; si: number; sj: number };
  c: { off: number; s0: number; s1: number; si: number; sj: number };
  maxBytes: number;
  /** Binding offset alignment in bytes. */
  align: number;
  maxGroups: number;
  tileM: number;
  tileN: number;
  /** Longest K range per chunk (the kernel's loop budget on software adapters); none if absent. */
  maxK?: number;
  /**
   * Texture variant: most rows one packed operand texture may have (A: rows of the chunk, B: its
   * columns, times the batches when the operand has batch strides).
   */
  maxTexRows?: number;
}

type Op = MatmulProblem["a"];
type Ext = { lo: number; hi: number };

/** Conservative [min, max] batch offset over batch indices [z0, z1). */
function batchRange(o: Op, nb1: number, z0: number, z1: number): [number, number] {
  const r0 = Math.floor(z0 / nb1), r1 = Math.floor((z1 - 1) / nb1);
  if (r0 === r1) return [r0 * o.s0 + (z0 % nb1) * o.s1, r0 * o.s0 + ((z1 - 1) % nb1) * o.s1];
  return [r0 * o.s0, r1 * o.s0 + (nb1 - 1) * o.s1];
}

/** Element range read by operand `o` over rows [i0, i1) and cols [j0, j1) of a chunk. */
function extent(
  o: Op,
  nb1: number,
  z0: number,
  z1: number,
  i0: number,
  i1: number,
  j0: number,
  j1: number,
): Ext {
  const [bl, bh] = batchRange(o, nb1, z0, z1);
  return {
    lo: o.off + bl + i0 * o.si + j0 * o.sj,
    hi: o.off + bh + (i1 - 1) * o.si + (j1 - 1) * o.sj,
  };
}

/** Bytes a binding of [lo, hi] takes once its start is aligned down. */
function boundBytes(x: Ext, align: number): number {
  return (x.hi + 1) * 4 - Math.floor((x.lo * 4) / align) * align;
}

function chunkExtents(p: MatmulProblem, c: MatmulChunk): { a: Ext; b: Ext; c: Ext } {
  const k1 = Math.max(c.k1, c.k0 + 1);
  return {
    a: extent(p.a, p.nb1, c.z0, c.z1, c.m0, c.m1, c.k0, k1),
    b: extent(p.b, p.nb1, c.z0, c.z1, c.k0, k1, c.n0, c.n1),
    c: extent(p.c, p.nb1, c.z0, c.z1, c.m0, c.m1, c.n0, c.n1),
  };
}

/** Split point of [lo, hi) at a multiple of `q` (else 4, keeping vec4 alignment), or -1. */
function splitAt(lo: number, hi: number, q: number): number {
  for (const step of [q, 4]) {
    const mid = lo + Math.ceil((hi - lo) / 2 / step) * step;
    if (mid > lo && mid < hi) return mid;
  }
  return -1;
}

type Dim = "m" | "n" | "k";

/**
 * Splits the problem into chunks whose bindings each fit `maxBytes` and whose grids fit
 * `maxGroups` per dimension. Halves the batch first; then the dim that shrinks the offending
 * operand's range: its outer (strided) dim — M for row-major A, K for a transposed A, K for
 * row-major B, N for a transposed B, M for C; last, K while longer than `maxK`. K chunks run in
 * order, the later ones accumulating (beta = 1). Splits fall on tile (else 4) multiples so vec4 alignment survives. Pure, for tests.
 */
export function planMatmulChunks(p: MatmulProblem): MatmulChunk[] {
  const out: MatmulChunk[] = [];
  const todo: MatmulChunk[] = [{
    z0: 0,
    z1: p.nb0 * p.nb1,
    m0: 0,
    m1: p.M,
    n0: 0,
    n1: p.N,
    k0: 0,
    k1: p.K,
  }];
  const outerA: Dim = p.a.si >= p.a.sj ? "m" : "k";
  const outerB: Dim = p.b.si >= p.b.sj ? "k" : "n";
  while (todo.length) {
    const c = todo.pop()!;
    const e = chunkExtents(p, c);
    const over = (x: Ext) => boundBytes(x, p.align) > p.maxBytes;
    const nz = c.z1 - c.z0;
    const gm = Math.ceil((c.m1 - c.m0) / p.tileM), gn = Math.ceil((c.n1 - c.n0) / p.tileN);
    const overA = p.K > 0 && over(e.a), overB = p.K > 0 && over(e.b), overC = over(e.c);
    const texRows = (o: Op, rows: number) => (o.s0 || o.s1 ? nz : 1) * rows;
    const overTA = p.maxTexRows !== undefined && texRows(p.a, c.m1 - c.m0) > p.maxTexRows;
    const overTB = p.maxTexRows !== undefined && texRows(p.b, c.n1 - c.n0) > p.maxTexRows;
    let dims: Dim[] = [];
    if (nz > p.maxGroups || (nz > 1 && (overA || overB || overC || overTA || overTB))) {
      const mid = c.z0 + Math.ceil(nz / 2);
      todo.push({ ...c, z0: mid }, { ...c, z1: mid });
      continue;
    }
    if (gm > p.maxGroups) dims = ["m"];
    else if (gn > p.maxGroups) dims = ["n"];
    else if (overTA) dims = ["m"];
    else if (overTB) dims = ["n"];
    else if (overA) dims = [outerA, outerA === "m" ? "k" : "m"];
    else if (overB) dims = [outerB, outerB === "k" ? "n" : "k"];
    else if (overC) dims = ["m", "n"];
    else if (p.maxK && c.k1 - c.k0 > p.maxK) dims = ["k"];
    if (!dims.length) {
      out.push(c);
      continue;
    }
    let done = false;
    for (const d of dims) {
      const [lo, hi, q] = d === "m"
        ? [c.m0, c.m1, p.tileM]
        : d === "n"
        ? [c.n0, c.n1, p.tileN]
        : [c.k0, c.k1, 256];
      const mid = splitAt(lo, hi, q);
      if (mid < 0) continue;
      // Pushed in reverse so chunks pop in order (K chunks must run first to last).
      if (d === "m") todo.push({ ...c, m0: mid }, { ...c, m1: mid });
      else if (d === "n") todo.push({ ...c, n0: mid }, { ...c, n1: mid });
      else todo.push({ ...c, k0: mid }, { ...c, k1: mid });
      done = true;
      break;
    }
    if (!done) {
      throw new Error(
        `matmul: [${p.M}, ${p.K}] x [${p.K}, ${p.N}] cannot be split into bindings of at most ` +
          `${p.maxBytes} bytes (the operands' rows are too long)`,
      );
    }
  }
  return out;
}

function checkF32(name: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    t.assertAlive();
    if (t.dtype !== "f32") {
      throw new Error(`${name}: expected f32 tensors, got ${t.dtype} [${t.shape}]`);
    }
  }
}

/**
 * C = alpha·A·B (+ beta·out) (+ bias) for A [...batchA, M, K] and B [...batchB, K, N] (rank ≥ 2,
 * batch dims broadcast). No autograd. Strided operands whose last two dims have a unit stride are
 * read in place; others are copied.
 */
export function matmulRaw(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  checkF32("matmul", a, b);
  if (a.rank < 2 || b.rank < 2) {
    throw new Error(`matmulRaw: both operands need rank >= 2, got [${a.shape}] and [${b.shape}]`);
  }
  const M = a.shape[a.rank - 2], K = a.shape[a.rank - 1], N = b.shape[b.rank - 1];
  if (b.shape[b.rank - 2] !== K) {
    throw new Error(
      `matmul: shapes [${a.shape}] and [${b.shape}] do not multiply (A has K = ${K} columns, ` +
        `B has ${b.shape[b.rank - 2]} rows)`,
    );
  }
  let batch: number[];
  try {
    batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  } catch {
    throw new Error(
      `matmul: batch dims of [${a.shape}] and [${b.shape}] cannot be broadcast together`,
    );
  }
  const outShape = [...batch, M, N];
  const beta = opts.beta ?? 0;
  if (beta !== 0 && !opts.out) {
    throw new Error("matmul: beta needs an `out` tensor to accumulate into");
  }
  let c: Tensor;
  if (opts.out) {
    checkF32("matmul", opts.out);
    if (opts.out.shape.join() !== outShape.join() || !opts.out.isContiguous()) {
      throw new Error(
        `matmul: out must be a contiguous [${outShape}] tensor, got [${opts.out.shape}]`,
      );
    }
    c = opts.out;
  } else c = empty(outShape);
  if (c.size === 0) return c;
  let bias = opts.bias;
  if (bias) {
    checkF32("matmul", bias);
    if (bias.rank !== 1 || bias.shape[0] !== N) {
      throw new Error(
        `matmul: bias must have shape [${N}] (the output's last dim), got [${bias.shape}]`,
      );
    }
  }
  if (K === 0) {
    // Empty sum: only the epilogue remains.
    return noGrad(() => {
      const z = fill(outShape, 0);
      launch(z, z, c, 0, 0, opts.alpha ?? 1, beta, bias, opts);
      z.dispose();
      return c;
    });
  }
  const copies: Tensor[] = [];
  const prep = (t: Tensor): Tensor => {
    if (matLayout(t)) return t;
    const d = noGrad(() => dense(t));
    copies.push(d);
    return d;
  };
  const A = prep(a), Bt = prep(b);
  if (bias && bias.strides[0] !== 1 && N > 1) {
    bias = noGrad(() => dense(bias!));
    copies.push(bias);
  }
  launch(A, Bt, c, M, K, opts.alpha ?? 1, beta, bias, opts);
  for (const t of copies) t.dispose();
  return c;
}

/** Broadcast batch dims of the operands, merged where all three are contiguous across them. */
function batchDims(a: Tensor, b: Tensor, c: Tensor): BDim[] {
  const rank = c.rank - 2;
  const strideOf = (t: Tensor, i: number) => {
    const j = i - (rank - (t.rank - 2));
    return j < 0 || t.shape[j] === 1 ? 0 : t.strides[j];
  };
  const dims: BDim[] = [];
  for (let i = 0; i < rank; i++) {
    const n = c.shape[i];
    if (n === 1) continue;
    const d = { n, sa: strideOf(a, i), sb: strideOf(b, i), sc: c.strides[i] };
    const p = dims[dims.length - 1];
    if (p && p.sa === d.sa * n && p.sb === d.sb * n && p.sc === d.sc * n) {
      dims[dims.length - 1] = { n: p.n * n, sa: d.sa, sb: d.sb, sc: d.sc };
    } else dims.push(d);
  }
  return dims;
}

function launch(
  a: Tensor,
  b: Tensor,
  c: Tensor,
  M: number,
  K: number,
  alpha: number,
  beta: number,
  bias: Tensor | undefined,
  opts: MatmulOptions,
): void {
  const g = gpu();
  const N = c.shape[c.rank - 1];
  M = c.shape[c.rank - 2];
  const A = matLayout(a)!, B = matLayout(b)!;
  let variant = opts.variant ?? matmulVariant();
  // A chosen-by-default texture variant gives way to plain registers on small products.
  const forced = opts.variant || forcedVariant || Deno.env.get("ENGINE_MATMUL");
  if (variant === "texture" && !forced && M * N * K < TEXTURE_MIN_MACS) variant = "register";
  let dims = batchDims(a, b, c);
  let Mx = M;
  // B shared by every batch and A's batches stacked as rows: one taller matrix (e.g. linear).
  if (
    dims.length === 1 && dims[0].sb === 0 && !A.trans && dims[0].sa === M * A.ld &&
    dims[0].sc === M * N
  ) {
    Mx = M * dims[0].n;
    dims = [];
  }
  const [big, small] = variant === "texture"
    ? [TEXTURE_TILE, TEXTURE_TILE_SMALL]
    : [REGISTER_TILE, REGISTER_TILE_SMALL];
  const rt = forcedTile ??
    (Mx * 2 >= big.wy * big.tm && N * 2 >= big.wx * big.tn ? big : small);
  const inner = dims.slice(-2);
  const outer = dims.slice(0, -2);
  const [d0, d1] = inner.length === 2
    ? inner
    : [inner[0] ?? { n: 1, sa: 0, sb: 0, sc: 0 }, { n: 1, sa: 0, sb: 0, sc: 0 }];
  const nOuter = outer.reduce((p, d) => p * d.n, 1);
  const tile = matmulTileSize(variant === "texture" ? "register" : variant, rt);
  const align = Math.max(g.limits.minStorageBufferOffsetAlignment, 16);
  const maxBytes = Math.min(opts.maxBindingBytes ?? Infinity, g.limits.maxStorageBufferBindingSize);
  const vec = (m: Mat, rows: number, cols: number, s: number[]) =>
    (m.trans ? rows : cols) % 4 === 0 && m.ld % 4 === 0 && m.t.offset % 4 === 0 &&
    s.every((x) => x % 4 === 0);
  for (let o = 0; o < nOuter; o++) {
    // Offsets of this outer batch index.
    let rem = o, offA = a.offset, offB = b.offset, offC = c.offset;
    for (let i = outer.length - 1; i >= 0; i--) {
      const idx = rem % outer[i].n;
      rem = Math.floor(rem / outer[i].n);
      offA += idx * outer[i].sa;
      offB += idx * outer[i].sb;
      offC += idx * outer[i].sc;
    }
    const allS = [offA - a.offset, offB - b.offset, d0.sa, d1.sa, d0.sb, d1.sb];
    const spec: MatmulSpec = {
      variant,
      transA: A.trans,
      transB: B.trans,
      vecA: vec(A, Mx, K, [allS[0], d0.sa, d1.sa]),
      vecB: vec(B, K, N, [allS[1], d0.sb, d1.sb]),
      bias: !!bias,
      beta: beta !== 0,
    };
    const problem: MatmulProblem = {
      nb0: d0.n,
      nb1: d1.n,
      M: Mx,
      N,
      K,
      a: { off: offA, s0: d0.sa, s1: d1.sa, si: A.si, sj: A.sj },
      b: { off: offB, s0: d0.sb, s1: d1.sb, si: B.si, sj: B.sj },
      c: { off: offC, s0: d0.sc, s1: d1.sc, si: N, sj: 1 },
      maxBytes,
      align,
      maxGroups: g.limits.maxComputeWorkgroupsPerDimension,
      tileM: tile.m,
      tileN: tile.n,
      // lavapipe silently stops an invocation's loops past 65535 iterations: split K there.
      // Texture variant: a texel holds 4 of K, a texture row at most maxTextureDimension2D texels.
      maxK: variant === "texture"
        ? 4 * g.limits.maxTextureDimension2D
        : g.isSoftware
        ? matmulMaxK(variant)
        : undefined,
      maxTexRows: variant === "texture"
        ? Math.min(opts.maxTextureRows ?? Infinity, g.limits.maxTextureDimension2D)
        : undefined,
    };
    if (variant === "texture") {
      launchTexture(problem, { a, b, c, bias, A, B, alpha, beta, rt, d0, d1 });
      continue;
    }
    const first = matmulKernel(spec, rt);
    const later = matmulKernel({ ...spec, bias: false, beta: true }, rt);
    for (const ch of planMatmulChunks(problem)) {
      const e = chunkExtents(problem, ch);
      // Later K chunks accumulate into what the first wrote; the bias was added once already.
      const isFirst = ch.k0 === 0;
      const bind = (t: Tensor, x: Ext) => {
        const buf = t.storage.buffer;
        if (K === 0 && t !== c && t !== bias) {
          return { binding: { buffer: buf, offset: 0, size: 16 }, start: 0 };
        }
        return bindRange(t, x.lo, x.hi);
      };
      const ba = bind(a, e.a), bb = bind(b, e.b), bc = bind(c, e.c);
      const bindings = [ba.binding, bb.binding];
      let biasOff = 0;
      if (bias && isFirst) {
        const bx = bind(bias, { lo: bias.offset + ch.n0, hi: bias.offset + ch.n1 - 1 });
        biasOff = bias.offset + ch.n0 - bx.start;
        bindings.push(bx.binding);
      }
      bindings.push(bc.binding);
      const p = new Params().u32(ch.m1 - ch.m0, ch.n1 - ch.n0, ch.k1 - ch.k0, ch.z0)
        .u32(
          offA + ch.m0 * A.si + ch.k0 * A.sj - ba.start,
          A.ld,
          offB + ch.k0 * B.si + ch.n0 * B.sj - bb.start,
          B.ld,
        )
        .u32(offC + ch.m0 * N + ch.n0 - bc.start, N, biasOff, d1.n)
        .u32(d0.sa, d1.sa, d0.sb, d1.sb, d0.sc, d1.sc).f32(alpha, isFirst ? beta : 1);
      dispatch(isFirst ? first : later, bindings, p, [
        Math.ceil((ch.n1 - ch.n0) / tile.n),
        Math.ceil((ch.m1 - ch.m0) / tile.m),
        ch.z1 - ch.z0,
      ]);
    }
  }
}

/** Promotes a 1-D operand to a matrix view (torch.matmul rules). */
function promote(t: Tensor, asRow: boolean): Tensor {
  if (t.rank !== 1) return t;
  return asRow
    ? view(t, [1, t.shape[0]], [0, t.strides[0]], t.offset)
    : view(t, [t.shape[0], 1], [t.strides[0], 0], t.offset);
}

/**
 * torch.matmul: 1-D operands are promoted (and the promoted dim removed from the result), batch
 * dims broadcast. Differentiable.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.rank === 0 || b.rank === 0) {
    throw new Error(
      `matmul: both operands need at least one dim, got [${a.shape}] and [${b.shape}]`,
    );
  }
  const a2 = promote(a, true), b2 = promote(b, false);
  let c2: Tensor;
  try {
    c2 = matmulRaw(a2, b2);
  } finally {
    if (a2 !== a) a2.dispose();
    if (b2 !== b) b2.dispose();
  }
  let y = c2;
  if (a.rank === 1 || b.rank === 1) {
    const shape = c2.shape.slice();
    if (b.rank === 1) shape.splice(shape.length - 1, 1);
    if (a.rank === 1) shape.splice(shape.length - (b.rank === 1 ? 1 : 2), 1);
    y = view(c2, shape, contiguousStrides(shape), c2.offset);
    c2.dispose();
  }
  return record("matmul", [a, b], y, (g) => {
    const A2 = promote(a, true), B2 = promote(b, false);
    const cShape = [
      ...broadcastShapes(A2.shape.slice(0, -2), B2.shape.slice(0, -2)),
      A2.shape[A2.rank - 2],
      B2.shape[B2.rank - 1],
    ];
    const g2 = reshape(g, cShape);
    let ga: Tensor | null = null, gb: Tensor | null = null;
    if (a.requiresGrad) ga = reshape(sumTo(matmul(g2, transpose(B2)), A2.shape), a.shape);
    if (b.requiresGrad) {
      const K = A2.shape[A2.rank - 1], N = B2.shape[B2.rank - 1];
      // B shared across A's batches: one product over all rows instead of a batch then a sum.
      const gB = B2.rank === 2 && A2.rank > 2
        ? matmul(transpose(reshape(A2, [-1, K])), reshape(g2, [-1, N]))
        : sumTo(matmul(transpose(A2), g2), B2.shape);
      gb = reshape(gB, b.shape);
    }
    return [ga, gb];
  }, [a, b]);
}

/**
 * torch.nn.functional.linear: y = x·Wᵀ + bias for x [..., in], weight [out, in], bias [out].
 * One kernel (Wᵀ read in place, bias in the epilogue). Differentiable.
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  checkF32("linear", x, weight, ...(bias ? [bias] : []));
  if (weight.rank !== 2) throw new Error(`linear: weight must be [out, in], got [${weight.shape}]`);
  const [nOut, nIn] = weight.shape;
  if (x.rank < 1 || x.shape[x.rank - 1] !== nIn) {
    throw new Error(
      `linear: input [${x.shape}] must end in in_features = ${nIn} (weight [${weight.shape}])`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== nOut)) {
    throw new Error(
      `linear: bias must be [${nOut}] for weight [${weight.shape}], got [${bias.shape}]`,
    );
  }
  const x2 = promote(x, true);
  const wT = view(weight, [nIn, nOut], [weight.strides[1], weight.strides[0]], weight.offset);
  let y: Tensor;
  try {
    y = matmulRaw(x2, wT, { bias: bias ?? undefined });
  } finally {
    if (x2 !== x) x2.dispose();
    wT.dispose();
  }
  if (x.rank === 1) {
    const y1 = view(y, [nOut], [1], y.offset);
    y.dispose();
    y = y1;
  }
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record("linear", inputs, y, (g) => {
    const g2 = reshape(g, [-1, nOut]);
    const gx = x.requiresGrad ? matmul(g, weight) : null;
    const gw = weight.requiresGrad ? matmul(transpose(g2), reshape(x, [-1, nIn])) : null;
    const gbias = bias?.requiresGrad ? sum(g2, 0) : null;
    return [gx, gw, gbias];
  }, [x, weight]);
}

export type { MatmulVariant, RegisterTile } from "../../kernels/matmul.ts";

/**
 * Binding of f32 elements [lo, hi] of `t`'s buffer: start aligned down (to the offset alignment,
 * at least 16 bytes), size rounded up to whole vec4s within the buffer; `start` in elements.
 */
export function bindRange(
  t: Tensor,
  lo: number,
  hi: number,
): { binding: BufferBinding; start: number } {
  const align = Math.max(gpu().limits.minStorageBufferOffsetAlignment, 16);
  const buf = t.storage.buffer;
  const start = Math.floor((lo * 4) / align) * align;
  const size = Math.min(Math.ceil(((hi + 1) * 4 - start) / 16) * 16, buf.size - start);
  return { binding: { buffer: buf, offset: start, size }, start: start / 4 };
}

interface TextureLaunch {
  a: Tensor;
  b: Tensor;
  c: Tensor;
  bias: Tensor | undefined;
  A: Mat;
  B: Mat;
  alpha: number;
  beta: number;
  rt: RegisterTile;
  d0: BDim;
  d1: BDim;
}

/**
 * The texture variant over one outer batch index: per chunk, pack A's rows and B's columns (K
 * range of the chunk) into scratch textures, then one product dispatch reading only textures.
 */
function launchTexture(p: MatmulProblem, t: TextureLaunch): void {
  const { A, B, d0, d1, rt } = t;
  const N = p.N;
  const tileM = rt.wy * rt.tm, tileN = rt.wx * rt.tn;
  const pack = matmulPackKernel();
  const first = matmulTextureKernel({ bias: !!t.bias, beta: t.beta !== 0 }, rt);
  const later = matmulTextureKernel({ bias: false, beta: true }, rt);
  const aBatched = d0.sa !== 0 || d1.sa !== 0, bBatched = d0.sb !== 0 || d1.sb !== 0;
  for (const ch of planMatmulChunks(p)) {
    const e = chunkExtents(p, ch);
    const isFirst = ch.k0 === 0;
    const nz = ch.z1 - ch.z0, mr = ch.m1 - ch.m0, nr = ch.n1 - ch.n0, kc = ch.k1 - ch.k0;
    const width = Math.ceil(kc / 4);
    // Texture rows: A's rows of the chunk (si along them, sj along k); B's columns (sj, si).
    const stage = (
      x: Tensor,
      ext: Ext,
      batched: boolean,
      rows: number,
      off: number,
      sRow: number,
      sK: number,
      s0: number,
      s1: number,
    ) => {
      const tex = acquireTexture(width, (batched ? nz : 1) * rows);
      const src = bindRange(x, ext.lo, ext.hi);
      const height = tex.texture.height;
      dispatch(
        pack,
        [src.binding, { view: tex.view }],
        new Params().u32(rows, kc, width, batched ? ch.z0 : 0)
          .u32(off - src.start, sRow, sK, d1.n, s0, s1, height, 0),
        [Math.ceil(width / PACK_WG.x), Math.ceil(height / PACK_WG.y)],
      );
      return tex;
    };
    const ta = stage(
      t.a,
      e.a,
      aBatched,
      mr,
      p.a.off + ch.m0 * A.si + ch.k0 * A.sj,
      A.si,
      A.sj,
      d0.sa,
      d1.sa,
    );
    const tb = stage(
      t.b,
      e.b,
      bBatched,
      nr,
      p.b.off + ch.k0 * B.si + ch.n0 * B.sj,
      B.sj,
      B.si,
      d0.sb,
      d1.sb,
    );
    const bc = bindRange(t.c, e.c.lo, e.c.hi);
    const bindings: Binding[] = [{ view: ta.view }, { view: tb.view }];
    let biasOff = 0;
    if (t.bias && isFirst) {
      const bx = bindRange(t.bias, t.bias.offset + ch.n0, t.bias.offset + ch.n1 - 1);
      biasOff = t.bias.offset + ch.n0 - bx.start;
      bindings.push(bx.binding);
    }
    bindings.push(bc.binding);
    dispatch(
      isFirst ? first : later,
      bindings,
      new Params().u32(mr, nr, width, ch.z0)
        .u32(aBatched ? mr : 0, bBatched ? nr : 0, p.c.off + ch.m0 * N + ch.n0 - bc.start, N)
        .u32(biasOff, d1.n, d0.sc, d1.sc).f32(t.alpha, isFirst ? t.beta : 1),
      [Math.ceil(nr / tileN), Math.ceil(mr / tileM), nz],
    );
    releaseTexture(ta);
    releaseTexture(tb);
  }
}
