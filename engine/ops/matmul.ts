/**
 * Matrix products: `matmul` (torch.matmul semantics), `linear` (torch's F.linear, bias fused into
 * the kernel's epilogue) and the raw launcher `matmulRaw` with alpha/beta/bias.
 *
 * Transposed operands are read through their strides (no copy): the kernel is specialised on which
 * operand has its row dim contiguous. Backward rules pass transposed views, so dA = dC·Bᵀ and
 * dB = Aᵀ·dC cost one kernel each. Operands larger than the per-binding limit are split into
 * several dispatches over batch, M or N, each binding only the range it reads.
 */
import { dispatch } from "../dispatch.ts";
import { gpu } from "../device.ts";
import { matmulForcedTile, matmulVariantFor } from "../routing.ts";
import { contiguousStrides, disposeCopy, empty, type Tensor, view } from "../tensor.ts";
import { noGrad, record } from "../autograd.ts";
import {
  asTiledTile,
  MATMUL_UNIFORMS,
  matmulKernel,
  matmulMaxK,
  type MatmulSpec,
  matmulTileSize,
  type MatmulVariant,
  REGISTER_TILE,
  REGISTER_TILE_SMALL,
} from "../../kernels/matmul.ts";
import { matmulTile } from "../autotune.ts";
import {
  type BatchDim,
  bindRange,
  chunkExtents,
  type ElementRange,
  matLayout,
  type MatmulProblem,
  type MatrixOperand,
  planMatmulChunks,
} from "./matmul_plan.ts";
import { launchTexture } from "./matmul_texture.ts";
import { broadcastShapes, fill } from "./elementwise.ts";
import { dense, reshape, transpose } from "./view.ts";
import { sum, sumTo } from "./reduce.ts";

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
function batchDims(a: Tensor, b: Tensor, c: Tensor): BatchDim[] {
  const rank = c.rank - 2;
  const strideOf = (t: Tensor, i: number) => {
    const j = i - (rank - (t.rank - 2));
    return j < 0 || t.shape[j] === 1 ? 0 : t.strides[j];
  };
  const dims: BatchDim[] = [];
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
  const variant = matmulVariantFor(M, N, K, opts.variant);
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
  // Forced (tests, benchmarks), else tuned for this adapter and shape class, else the default.
  const forced = matmulForcedTile();
  const rt = variant === "register"
    ? forced ??
      (Mx * 2 >= REGISTER_TILE.wy * REGISTER_TILE.tm && N * 2 >= REGISTER_TILE.wx * REGISTER_TILE.tn
        ? REGISTER_TILE
        : REGISTER_TILE_SMALL)
    : variant === "tiled"
    ? forced
      ? asTiledTile(forced)
      : matmulTile(variant, Mx, N, K, dims.reduce((p, d) => p * d.n, 1))
    : forced ?? matmulTile(variant, Mx, N, K, dims.reduce((p, d) => p * d.n, 1));
  const inner = dims.slice(-2);
  const outer = dims.slice(0, -2);
  const [d0, d1] = inner.length === 2
    ? inner
    : [inner[0] ?? { n: 1, sa: 0, sb: 0, sc: 0 }, { n: 1, sa: 0, sb: 0, sc: 0 }];
  const nOuter = outer.reduce((p, d) => p * d.n, 1);
  const tile = matmulTileSize(variant, rt);
  const align = Math.max(g.limits.minStorageBufferOffsetAlignment, 16);
  const maxBytes = Math.min(opts.maxBindingBytes ?? Infinity, g.limits.maxStorageBufferBindingSize);
  const vec = (m: MatrixOperand, rows: number, cols: number, s: number[]) =>
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
        ? matmulMaxK(variant, asTiledTile(rt))
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
      const bind = (t: Tensor, x: ElementRange) => {
        if (K === 0 && t !== c && t !== bias) {
          const st = t.storage;
          return { binding: { buffer: st.buffer, offset: st.offset, size: 16 }, start: 0 };
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
      const p = MATMUL_UNIFORMS.pack({
        M: ch.m1 - ch.m0,
        N: ch.n1 - ch.n0,
        K: ch.k1 - ch.k0,
        zBase: ch.z0,
        aOff: offA + ch.m0 * A.si + ch.k0 * A.sj - ba.start,
        lda: A.ld,
        bOff: offB + ch.k0 * B.si + ch.n0 * B.sj - bb.start,
        ldb: B.ld,
        cOff: offC + ch.m0 * N + ch.n0 - bc.start,
        ldc: N,
        biasOff,
        nb1: d1.n,
        sa0: d0.sa,
        sa1: d1.sa,
        sb0: d0.sb,
        sb1: d1.sb,
        sc0: d0.sc,
        sc1: d1.sc,
        alpha,
        beta: isFirst ? beta : 1,
      });
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
    disposeCopy(a2, a);
    disposeCopy(b2, b);
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
    disposeCopy(x2, x);
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
