/**
 * Planning a matrix product over the per-binding limit: operand layouts (which dim is contiguous),
 * merged batch dims, the chunks (`planMatmulChunks`: batch, M, N or K ranges whose bindings fit)
 * and the buffer range each chunk binds. Shared by the buffer launch (matmul.ts) and the texture
 * launch (matmul_texture.ts); pure except `bindRange`, which reads the adapter's alignment.
 */
import type { BufferBinding } from "../dispatch.ts";
import { gpu } from "../device.ts";
import type { Tensor } from "../tensor.ts";

/** Strides of one matrix operand: element (i, j) at off + i·si + j·sj + batch offset. */
export interface MatrixOperand {
  t: Tensor;
  trans: boolean;
  ld: number;
  si: number;
  sj: number;
}

/** Layout of the last two dims, or null when neither is contiguous (then a copy is needed). */
export function matLayout(t: Tensor): MatrixOperand | null {
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
export interface BatchDim {
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

type OperandLayout = MatmulProblem["a"];
export type ElementRange = { lo: number; hi: number };

/** Conservative [min, max] batch offset over batch indices [z0, z1). */
function batchRange(o: OperandLayout, nb1: number, z0: number, z1: number): [number, number] {
  const r0 = Math.floor(z0 / nb1), r1 = Math.floor((z1 - 1) / nb1);
  if (r0 === r1) return [r0 * o.s0 + (z0 % nb1) * o.s1, r0 * o.s0 + ((z1 - 1) % nb1) * o.s1];
  return [r0 * o.s0, r1 * o.s0 + (nb1 - 1) * o.s1];
}

/** Element range read by operand `o` over rows [i0, i1) and cols [j0, j1) of a chunk. */
function extent(
  o: OperandLayout,
  nb1: number,
  z0: number,
  z1: number,
  i0: number,
  i1: number,
  j0: number,
  j1: number,
): ElementRange {
  const [bl, bh] = batchRange(o, nb1, z0, z1);
  return {
    lo: o.off + bl + i0 * o.si + j0 * o.sj,
    hi: o.off + bh + (i1 - 1) * o.si + (j1 - 1) * o.sj,
  };
}

/** Bytes a binding of [lo, hi] takes once its start is aligned down. */
function boundBytes(x: ElementRange, align: number): number {
  return (x.hi + 1) * 4 - Math.floor((x.lo * 4) / align) * align;
}

export function chunkExtents(
  p: MatmulProblem,
  c: MatmulChunk,
): { a: ElementRange; b: ElementRange; c: ElementRange } {
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

type SplitDim = "m" | "n" | "k";

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
  const outerA: SplitDim = p.a.si >= p.a.sj ? "m" : "k";
  const outerB: SplitDim = p.b.si >= p.b.sj ? "k" : "n";
  while (todo.length) {
    const c = todo.pop()!;
    const e = chunkExtents(p, c);
    const over = (x: ElementRange) => boundBytes(x, p.align) > p.maxBytes;
    const nz = c.z1 - c.z0;
    const gm = Math.ceil((c.m1 - c.m0) / p.tileM), gn = Math.ceil((c.n1 - c.n0) / p.tileN);
    const overA = p.K > 0 && over(e.a), overB = p.K > 0 && over(e.b), overC = over(e.c);
    const texRows = (o: OperandLayout, rows: number) => (o.s0 || o.s1 ? nz : 1) * rows;
    const overTA = p.maxTexRows !== undefined && texRows(p.a, c.m1 - c.m0) > p.maxTexRows;
    const overTB = p.maxTexRows !== undefined && texRows(p.b, c.n1 - c.n0) > p.maxTexRows;
    let dims: SplitDim[] = [];
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
  const st = t.storage;
  const start = Math.floor((lo * 4) / align) * align;
  // Within the tensor's allocation (a slab's next range belongs to another tensor).
  const size = Math.min(Math.ceil(((hi + 1) * 4 - start) / 16) * 16, st.allocation.size - start);
  return { binding: { buffer: st.buffer, offset: st.offset + start, size }, start: start / 4 };
}
