/**
 * Fused attention: softmax(scale·q·kᵀ + bias)·v over G independent slices (batch·heads or
 * windows·heads), never materialising the G×Nq×Nk scores. The bias is SAM's decomposed relative
 * position (relH[g,i,j / kw] + relW[g,i,j % kw], computed by the caller with `relPosTerms`, also
 * here); without it this is plain scaled dot-product attention (the mask decoder's).
 */
import { dispatch } from "../dispatch.ts";
import { gpu } from "../device.ts";
import { disposeCopy, empty, Tensor } from "../tensor.ts";
import type { Kernel } from "../../kernels/kernel.ts";
import { isGradEnabled, record } from "../autograd.ts";
import { dense, permute, reshape, transpose, unflatten } from "./view.ts";
import { fill } from "./elementwise.ts";
import { matmul } from "./matmul.ts";
import { bindRange } from "./matmul_plan.ts";
import { type BufferBinding, grid1d } from "../dispatch.ts";
import {
  WINDOW_UNIFORMS,
  WINDOW_WG,
  windowPartitionKernel,
  windowUnpartitionKernel,
} from "../../kernels/attention/windows.ts";
import {
  REL_POS_UNIFORMS,
  REL_POS_WG,
  relPosTermsKernel,
} from "../../kernels/attention/rel_pos.ts";
import {
  attentionForwardKernel,
  ATTN_MAX_D,
  ATTN_UNIFORMS,
  ATTN_WG,
  attnSoftwareChunk,
} from "../../kernels/attention/forward.ts";
import {
  attentionBackwardKVKernel,
  attentionBackwardQBindings,
  attentionBackwardQKernel,
} from "../../kernels/attention/backward.ts";

export interface FlashAttentionOptions {
  /** Multiplies q·kᵀ (usually d^-1/2). */
  scale: number;
  /** Per-query height term of the relative-position bias, [G, Nq, kh]. */
  relH?: Tensor;
  /** Per-query width term of the relative-position bias, [G, Nq, kw]. */
  relW?: Tensor;
  /** Key grid [kh, kw] (kh·kw = Nk); inferred from relH/relW when omitted. */
  kGrid?: [number, number];
  /** Stage K/V tiles in f16 (forward only; needs `shader-f16`, otherwise ignored). */
  f16?: boolean;
  /**
   * Keys (queries for dK/dV) per dispatch; by default all on hardware and a safe number on
   * software adapters, whose loop cap would otherwise cut long loops short. Tests set it small.
   */
  chunk?: number;
}

const NAME = "flashAttention";

interface Checked {
  g: number;
  nq: number;
  nk: number;
  d: number;
  kh: number;
  kw: number;
  bias: boolean;
}

function check(q: Tensor, k: Tensor, v: Tensor, o: FlashAttentionOptions): Checked {
  for (
    const [n, t] of [["q", q], ["k", k], ["v", v], ["relH", o.relH], ["relW", o.relW]] as const
  ) {
    if (!t) continue;
    t.assertAlive();
    if (t.dtype !== "f32") {
      throw new Error(
        `${NAME}: ${n} must be f32, got ${t.dtype} [${t.shape}]`,
      );
    }
    if (t.rank !== 3) throw new Error(`${NAME}: ${n} must be rank 3, got [${t.shape}]`);
  }
  const [g, nq, d] = q.shape;
  const nk = k.shape[1];
  if (k.shape[0] !== g || k.shape[2] !== d || v.shape.join() !== k.shape.join()) {
    throw new Error(
      `${NAME}: expected q [G, Nq, d] and k, v [G, Nk, d]; got q [${q.shape}], k [${k.shape}], v [${v.shape}]`,
    );
  }
  if (d < 1 || d > ATTN_MAX_D) {
    throw new Error(`${NAME}: head dim ${d} is outside 1..${ATTN_MAX_D}`);
  }
  if (nk < 1) throw new Error(`${NAME}: needs at least one key, got k [${k.shape}]`);
  if (!Number.isFinite(o.scale)) {
    throw new Error(`${NAME}: scale must be a finite number, got ${o.scale}`);
  }
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (g > max) {
    throw new Error(`${NAME}: ${g} slices exceed ${max} workgroups per dimension; split the batch`);
  }
  if (!o.relH !== !o.relW) throw new Error(`${NAME}: pass both relH and relW, or neither`);
  let kh = 1, kw = nk;
  if (o.relH && o.relW) {
    kh = o.relH.shape[2];
    kw = o.relW.shape[2];
    if (o.kGrid && (o.kGrid[0] !== kh || o.kGrid[1] !== kw)) {
      throw new Error(
        `${NAME}: kGrid [${o.kGrid}] disagrees with relH [${o.relH.shape}] / relW [${o.relW.shape}]`,
      );
    }
    const want = `${g},${nq}`;
    if (
      o.relH.shape.slice(0, 2).join() !== want || o.relW.shape.slice(0, 2).join() !== want ||
      kh * kw !== nk
    ) {
      throw new Error(
        `${NAME}: expected relH [${g}, ${nq}, kh] and relW [${g}, ${nq}, kw] with kh·kw = Nk = ${nk}; ` +
          `got relH [${o.relH.shape}], relW [${o.relW.shape}]`,
      );
    }
  }
  return { g, nq, nk, d, kh, kw, bias: !!o.relH };
}

function params(c: Checked, scale: number, c0: number, c1: number): Uint8Array {
  return ATTN_UNIFORMS.pack({ nq: c.nq, nk: c.nk, kh: c.kh, kw: c.kw, scale, c0, c1 });
}

/** [c0, c1) chunks of `n` (at least one, so the kernel always finalises). */
function chunks(n: number, c: Checked, o: FlashAttentionOptions): [number, number][] {
  const size = o.chunk ?? (gpu().isSoftware ? attnSoftwareChunk(c.d) : n);
  if (!(size >= 1)) throw new Error(`${NAME}: chunk must be a positive integer, got ${o.chunk}`);
  const out: [number, number][] = [];
  for (let c0 = 0; c0 < n; c0 += size) out.push([c0, Math.min(n, c0 + size)]);
  return out;
}

/** Forward launch without autograd: the output and the per-query log-sum-exp [G, Nq]. */
export function flashAttentionRaw(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: FlashAttentionOptions,
): { out: Tensor; lse: Tensor } {
  const c = check(q, k, v, opts);
  const out = empty([c.g, c.nq, c.d]);
  const lse = empty([c.g, c.nq]);
  if (c.g === 0 || c.nq === 0) return { out, lse };
  const ins = [q, k, v, ...(c.bias ? [opts.relH!, opts.relW!] : [])].map((t) => dense(t));
  const f16 = !!opts.f16 && gpu().features.f16;
  const lsum = empty([c.g, c.nq]);
  for (const [c0, c1] of chunks(c.nk, c, opts)) {
    dispatch(
      attentionForwardKernel(c.d, c.bias, f16),
      [...ins.map((t) => t.binding()), out.binding(), lse.binding(), lsum.binding()],
      params(c, opts.scale, c0, c1),
      [Math.ceil(c.nq / ATTN_WG), c.g],
    );
  }
  lsum.dispose();
  ins.forEach((t, i) => t !== [q, k, v, opts.relH, opts.relW][i] && t.dispose());
  return { out, lse };
}

/** Gradients of the fused attention (raw): dQ, dK, dV and, with the bias, dRelH and dRelW. */
export function flashAttentionBackwardRaw(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  dOut: Tensor,
  opts: FlashAttentionOptions,
  needKV = true,
): {
  dq: Tensor;
  dk: Tensor | null;
  dv: Tensor | null;
  dRelH: Tensor | null;
  dRelW: Tensor | null;
} {
  const c = check(q, k, v, opts);
  const need = attentionBackwardQBindings(c.bias);
  if (need > gpu().limits.maxStorageBuffersPerShaderStage) {
    throw new Error(
      `${NAME} backward: needs ${need} storage buffers per shader stage, this adapter allows ` +
        `${gpu().limits.maxStorageBuffersPerShaderStage}`,
    );
  }
  const ins = [q, k, v, dOut, out, lse, ...(c.bias ? [opts.relH!, opts.relW!] : [])];
  const ds = ins.map((t) => dense(t));
  const [qd, kd, vd, dod, , ld] = ds;
  const bias = c.bias ? [ds[6], ds[7]] : [];
  const dq = empty(q.shape), dd = empty([c.g, c.nq]);
  const dRelH = c.bias ? empty([c.g, c.nq, c.kh]) : null;
  const dRelW = c.bias ? empty([c.g, c.nq, c.kw]) : null;
  // No queries: nothing attends to the keys, their gradients are zero.
  const mk = (shape: readonly number[]) =>
    !needKV ? null : c.nq === 0 ? fill(shape, 0) : empty(shape);
  const dk = mk(k.shape), dv = mk(v.shape);
  if (c.g > 0 && c.nq > 0) {
    const outs = [dq, dd, ...(c.bias ? [dRelH!, dRelW!] : [])];
    for (const [c0, c1] of chunks(c.nk, c, opts)) {
      dispatch(
        attentionBackwardQKernel(c.d, c.bias),
        [...ds, ...outs].map((t) => t.binding()),
        params(c, opts.scale, c0, c1),
        [Math.ceil(c.nq / ATTN_WG), c.g],
      );
    }
  }
  if (dk && dv && c.g > 0 && c.nq > 0) {
    for (const [c0, c1] of chunks(c.nq, c, opts)) {
      dispatch(
        attentionBackwardKVKernel(c.d, c.bias),
        [qd, kd, vd, dod, ld, dd, ...bias, dk, dv].map((t) => t.binding()),
        params(c, opts.scale, c0, c1),
        [Math.ceil(c.nk / ATTN_WG), c.g],
      );
    }
  }
  ds.forEach((t, i) => t !== ins[i] && t.dispose());
  dd.dispose();
  return { dq, dk, dv, dRelH, dRelW };
}

/**
 * softmax(scale·q·kᵀ + relH[·,·,j / kw] + relW[·,·,j % kw])·v for q [G, Nq, d] and k, v [G, Nk, d]
 * (d ≤ 128); differentiable in q, k, v, relH and relW.
 */
export function flashAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: FlashAttentionOptions,
): Tensor {
  const { out, lse } = flashAttentionRaw(q, k, v, opts);
  const inputs = [q, k, v, ...(opts.relH && opts.relW ? [opts.relH, opts.relW] : [])];
  const y = record(NAME, inputs, out, (g) => {
    const needKV = k.requiresGrad || v.requiresGrad;
    const r = flashAttentionBackwardRaw(q, k, v, out, lse, g, opts, needKV);
    return [r.dq, r.dk, r.dv, r.dRelH, r.dRelW];
  }, [...inputs, out, lse]);
  lse.dispose();
  return y;
}

/**
 * SAM's decomposed relative-position terms of q [G, qh·qw, d] or [B, H, qh·qw, d] with the gathered
 * tables rh [qh, kh, d] and rw [qw, kw, d]: relH[g, y·qw + x, k] = Σ_c q[g, y·qw + x, c]·rh[y, k, c]
 * and relW[g, y·qw + x, k] = Σ_c q[g, y·qw + x, c]·rw[x, k, c] (g = b·H + h), dense
 * [G, qh·qw, kh] and [G, qh·qw, kw]. Batched matmuls over views of q: a strided q (heads split
 * out of a projection) is read in place, relH comes out in its final layout and relW needs one
 * permute copy (the old composition copied q twice and both results once). Differentiable.
 */
export function relPosTerms(
  q: Tensor,
  rh: Tensor,
  rw: Tensor,
  qh: number,
  qw: number,
): { relH: Tensor; relW: Tensor } {
  const r = q.rank;
  const d = q.shape[r - 1];
  if (
    (r !== 3 && r !== 4) || q.shape[r - 2] !== qh * qw || rh.rank !== 3 || rw.rank !== 3 ||
    rh.shape[0] !== qh || rh.shape[2] !== d || rw.shape[0] !== qw || rw.shape[2] !== d
  ) {
    throw new Error(
      `relPosTerms: expected q [G, ${qh}·${qw}, d] or [B, H, ${qh}·${qw}, d], rh [${qh}, kh, d] ` +
        `and rw [${qw}, kw, d]; got q [${q.shape}], rh [${rh.shape}], rw [${rw.shape}]`,
    );
  }
  const G = q.shape.slice(0, -2).reduce((p, s) => p * s, 1);
  const kh = rh.shape[1], kw = rw.shape[1];
  if (!relPosComposed && (!isGradEnabled() || ![q, rh, rw].some((t) => t.requiresGrad))) {
    return relPosTermsDirect(q, rh, rw, qw, G);
  }
  // [..., qh, qw, d]: relH[..., y, x, :] = q[..., y, x, :]·rh[y]ᵀ, batched over (..., y).
  const q5 = unflatten(q, r - 2, [qh, qw]);
  const relH = reshape(matmul(q5, transpose(rh, 1, 2)), [G, qh * qw, kh]);
  // relW batched over (..., x): rows y, then back to [..., y, x, kw].
  const qT = transpose(q5, r - 2, r - 1);
  const relW = reshape(transpose(matmul(qT, transpose(rw, 1, 2)), r - 2, r - 1), [G, qh * qw, kw]);
  return { relH, relW };
}

/**
 * The element range a strided view reads, bound (the binding starts aligned below its first
 * element), with the view's offset from the binding's start; null when a stride is negative.
 */
function bindStrided(t: Tensor, op: string): { binding: BufferBinding; off: number } | null {
  if (t.strides.some((s) => s < 0)) return null;
  const hi = t.offset + t.shape.reduce((a, n, i) => a + (n - 1) * t.strides[i], 0);
  const r = bindRange(t, t.offset, hi);
  const limit = gpu().limits.maxStorageBufferBindingSize;
  if (r.binding.size > limit) {
    throw new Error(
      `${op}: input [${t.shape}] spans ${r.binding.size} bytes, past the ${limit}-byte binding ` +
        `limit (split the batch)`,
    );
  }
  return { binding: r.binding, off: t.offset - r.start };
}

const NAME_W = "windowPartition/windowUnpartition";

/** Vec4 items when the channel run, the offset and every other stride are whole vec4s. */
function vecWidth(off: number, strides: number[], c: number): 1 | 4 {
  return c % 4 === 0 && off % 4 === 0 && strides.every((s) => s % 4 === 0) ? 4 : 1;
}

/**
 * A window pass's source: the tensor as it lies where its last dim is contiguous and it binds
 * whole, else a dense copy (the caller disposes a copy).
 */
function bindWindowSource(t: Tensor): {
  src: Tensor;
  bound: NonNullable<ReturnType<typeof bindStrided>>;
} {
  const asIs = t.strides[3] === 1 ? bindStrided(t, NAME_W) : null;
  if (asIs) return { src: t, bound: asIs };
  const src = dense(t);
  return { src, bound: bindStrided(src, NAME_W)! };
}

/**
 * One window pass over `x` (partition: the grid; unpartition: the per-head output) into `out`,
 * the layout fields given in elements; `hd` (unpartition only) is also the channel run read
 * contiguously (partition's is C). `extra`: dense bindings after the output (the pad values).
 */
function windowPass(
  kernel: (v: 1 | 4) => Kernel,
  x: Tensor,
  out: Tensor,
  f: { C: number; hd?: number; ws: number; H: number; W: number; nWh: number; nWw: number },
  extra: Tensor[] = [],
): void {
  if (out.size === 0) return;
  const { src, bound } = bindWindowSource(x);
  const [s0, s1, s2] = src.strides;
  const v = vecWidth(bound.off, [s0, s1, s2], f.hd ?? f.C);
  dispatch(
    kernel(v),
    [bound.binding, out.binding(), ...extra.map((t) => t.binding())],
    WINDOW_UNIFORMS.pack({
      ...f,
      n: out.size / v,
      C: f.C / v,
      off: bound.off / v,
      s0: s0 / v,
      s1: s1 / v,
      s2: s2 / v,
      hd: f.hd === undefined ? 1 : f.hd / v,
    }),
    grid1d(out.size / v, WINDOW_WG),
  );
  if (src !== x) src.dispose();
}

/**
 * SAM's window_partition: x [B, H, W, C] (any strides) → [B·⌈H/ws⌉·⌈W/ws⌉, ws, ws, C], zero
 * where a window reaches past the grid, or `pad` [C] there (a per-channel value: the bias of a
 * projection moved before the partition; it gets no gradient). One pass
 * (kernels/attention/windows.ts) instead of a pad and a copy. Differentiable in x (the backward
 * is {@link windowUnpartition}'s pass).
 */
export function windowPartition(x: Tensor, ws: number, pad?: Tensor): Tensor {
  if (x.rank !== 4 || x.dtype !== "f32" || !(ws >= 1) || !Number.isInteger(ws)) {
    throw new Error(
      `windowPartition: expected an f32 grid [B, H, W, C] and an integer window >= 1, got ` +
        `${x.dtype} [${x.shape}] and ${ws}`,
    );
  }
  const [b, h, w, c] = x.shape;
  if (pad && (pad.dtype !== "f32" || pad.rank !== 1 || pad.shape[0] !== c)) {
    throw new Error(
      `windowPartition: pad must be f32 [${c}] (one value per channel of x [${x.shape}]), got ` +
        `${pad.dtype} [${pad.shape}]`,
    );
  }
  if (pad?.requiresGrad && isGradEnabled()) {
    throw new Error("windowPartition: pad gets no gradient; detach it or run without gradients");
  }
  const nWh = Math.ceil(h / ws), nWw = Math.ceil(w / ws);
  const out = empty([b * nWh * nWw, ws, ws, c]);
  const padD = pad && dense(pad);
  windowPass(
    (v) => windowPartitionKernel(v, padD !== undefined),
    x,
    out,
    { C: c, ws, H: h, W: w, nWh, nWw },
    padD ? [padD] : [],
  );
  disposeCopy(padD, pad);
  return record("windowPartition", [x], out, (g) => [
    windowUnpartition(reshape(g, [g.shape[0], 1, ws * ws, c]), ws, h, w),
  ]);
}

/**
 * The inverse of {@link windowPartition} with the heads merged: the attention's output per head
 * over windows, o [B·⌈H/ws⌉·⌈W/ws⌉, nh, ws·ws, hd] (any strides), → the grid cropped to
 * [B, H, W, nh·hd]. One pass instead of a merge-and-unpartition copy and a crop. Differentiable.
 */
export function windowUnpartition(o: Tensor, ws: number, h: number, w: number): Tensor {
  const nWh = Math.ceil(h / ws), nWw = Math.ceil(w / ws);
  if (
    o.rank !== 4 || o.dtype !== "f32" || !(ws >= 1) || !Number.isInteger(ws) || h < 1 || w < 1 ||
    o.shape[2] !== ws * ws || o.shape[0] % (nWh * nWw) !== 0
  ) {
    throw new Error(
      `windowUnpartition: expected f32 [B·${nWh}·${nWw}, heads, ${ws}·${ws}, hd] for a ${h}×${w} ` +
        `grid in ${ws}×${ws} windows, got ${o.dtype} [${o.shape}]`,
    );
  }
  const [bw, nh, , hd] = o.shape;
  const b = bw / (nWh * nWw);
  const out = empty([b, h, w, nh * hd]);
  windowPass(windowUnpartitionKernel, o, out, { C: nh * hd, hd, ws, H: h, W: w, nWh, nWw });
  return record("windowUnpartition", [o], out, (g) => {
    // [Bw, ws, ws, nh·hd] → [Bw, nh, ws·ws, hd]: o's shape (a view of the padded windows).
    const p = windowPartition(g, ws);
    return [permute(reshape(p, [bw, ws * ws, nh, hd]), [0, 2, 1, 3])];
  });
}

/**
 * Whether {@link relPosTerms} composes batched matmuls also where no gradient is recorded (for
 * A/B benchmarks: bench/sam_encoder_ab.ts); returns the old setting.
 */
export function setRelPosTermsComposed(on: boolean): boolean {
  const old = relPosComposed;
  relPosComposed = on;
  return old;
}
let relPosComposed = false;

/** relPosTerms in one pass (kernels/attention/rel_pos.ts); no gradient. */
function relPosTermsDirect(
  q: Tensor,
  rh: Tensor,
  rw: Tensor,
  qw: number,
  G: number,
): { relH: Tensor; relW: Tensor } {
  const r = q.rank, n = q.shape[r - 2], d = q.shape[r - 1];
  const kh = rh.shape[1], kw = rw.shape[1];
  const relH = empty([G, n, kh]), relW = empty([G, n, kw]);
  if (G * n === 0) return { relH, relW };
  let src = q.strides[r - 1] === 1 ? q : null;
  let bound = src && bindStrided(src, "relPosTerms");
  if (!bound) {
    src = dense(q);
    bound = bindStrided(src, "relPosTerms")!;
  }
  const rhd = dense(rh), rwd = dense(rw);
  const st = src!.strides;
  const [s0, s1, nb1] = r === 4 ? [st[0], st[1], q.shape[1]] : [0, st[0], G];
  const v = vecWidth(bound.off, [s0, s1, st[r - 2]], d);
  dispatch(
    relPosTermsKernel(v, d / v),
    [bound.binding, rhd.binding(), rwd.binding(), relH.binding(), relW.binding()],
    REL_POS_UNIFORMS.pack({
      rows: G * n,
      N: n,
      qw,
      kh,
      kw,
      nb1,
      off: bound.off / v,
      s0: s0 / v,
      s1: s1 / v,
      sN: st[r - 2] / v,
    }),
    grid1d(G * n, REL_POS_WG),
  );
  if (src !== q) src!.dispose();
  if (rhd !== rh) rhd.dispose();
  if (rwd !== rw) rwd.dispose();
  return { relH, relW };
}
