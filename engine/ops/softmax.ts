/**
 * Softmax and log-softmax along any axis (no transpose: the kernel strides along the axis), and
 * softmax with SAM's decomposed relative-position bias fused in.
 */
import { type BufferBinding, dispatch, grid1d } from "../dispatch.ts";
import { bindingLimit, rowModeFor } from "../routing.ts";
import { gpu } from "../device.ts";
import { disposeCopy, empty, Tensor, view } from "../tensor.ts";
import { isGradEnabled, record } from "../autograd.ts";
import {
  rowItemsPerGroup,
  SOFTMAX_UNIFORMS,
  softmaxBackwardKernel,
  softmaxKernel,
} from "../../kernels/softmax.ts";
import {
  RELBIAS_MAX_KW,
  RELBIAS_WG,
  relBiasTexturePeriod,
  SOFTMAX_RELBIAS_TEXTURE_UNIFORMS,
  SOFTMAX_RELBIAS_UNIFORMS,
  softmaxRelBiasKernel,
  softmaxRelBiasPeriodKernel,
} from "../../kernels/softmax_relbias.ts";
import { assertLoopLimit } from "../../kernels/common.ts";
import { dense, normAxis, reshape } from "./view.ts";
import { add, mul } from "./elementwise.ts";
import { sum } from "./reduce.ts";

/** rows / L / inner of `shape` seen along `axis`. */
function rowsAlong(shape: readonly number[], axis: number): {
  rows: number;
  len: number;
  inner: number;
} {
  let outer = 1, inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return { rows: outer * inner, len: shape[axis], inner };
}

/**
 * Runs [o0, o1) of the outer index (everything before the softmax axis) whose bindings of the
 * dense tensors `ts` (each `per` f32 elements per outer index) fit the binding limit, each run
 * starting at an offset the adapter can bind, so the kernel needs no offset of its own: past the
 * limit (scores [12, 4096, 4096] are 768 MiB) the rows are softmaxed in several dispatches instead
 * of being refused, or silently wrong as in peers that bind the whole tensor.
 */
function outerChunks(
  name: string,
  outer: number,
  per: number,
  ts: Tensor[],
): [number, number, BufferBinding[]][] {
  const limit = bindingLimit();
  if (outer * per * 4 <= limit) return [[0, outer, ts.map((t) => t.binding())]];
  const align = gpu().limits.minStorageBufferOffsetAlignment;
  const gcd = (a: number, b: number): number => b ? gcd(b, a % b) : a;
  // Outer indices per chunk: a multiple of q keeps every chunk's byte offset aligned.
  const q = align / gcd(per * 4 % align || align, align);
  const step = Math.floor(limit / (per * 4) / q) * q;
  const misaligned = ts.find((t) => (t.offset * 4) % align !== 0);
  if (step === 0 || misaligned) {
    throw new Error(
      misaligned
        ? `${name}: [${misaligned.shape}] is past the binding limit (${limit} bytes) and starts ` +
          `at an unaligned offset: make it a fresh tensor first`
        : `${name}: ${q} slices of ${
          per * 4
        } bytes along the softmax axis do not fit a binding of ` +
          `${limit} bytes: softmax along a leading axis of a tensor this large is not supported`,
    );
  }
  const out: [number, number, BufferBinding[]][] = [];
  for (let o0 = 0; o0 < outer; o0 += step) {
    const o1 = Math.min(outer, o0 + step);
    out.push([
      o0,
      o1,
      ts.map((t) => ({
        buffer: t.storage.buffer,
        offset: t.storage.offset + (t.offset + o0 * per) * 4,
        size: (o1 - o0) * per * 4,
      })),
    ]);
  }
  return out;
}

function softmaxImpl(name: string, log: boolean, x: Tensor, axis: number): Tensor {
  x.assertAlive();
  if (x.dtype !== "f32") {
    throw new Error(`${name}: expected an f32 tensor, got ${x.dtype} [${x.shape}]`);
  }
  if (x.rank === 0) throw new Error(`${name}: needs at least one dimension, got a scalar`);
  const a = normAxis(axis, x.rank, `${name}: axis`);
  const { rows, len, inner } = rowsAlong(x.shape, a);
  const xd = dense(x);
  const y = empty(x.shape);
  const outer = rows / Math.max(1, inner);
  if (y.size > 0) {
    const m = rowModeFor(rows, len, inner);
    for (const [o0, o1, b] of outerChunks(name, outer, len * inner, [xd, y])) {
      dispatch(
        softmaxKernel(log, m),
        b,
        SOFTMAX_UNIFORMS.pack({ rows: (o1 - o0) * inner, L: len, inner }),
        grid1d((o1 - o0) * inner, rowItemsPerGroup(m)),
      );
    }
  }
  disposeCopy(xd, x);
  return record(name, [x], y, (g) => {
    const gd = dense(g);
    const dx = empty(x.shape);
    if (dx.size > 0) {
      const m = rowModeFor(rows, len, inner);
      for (const [o0, o1, b] of outerChunks(name, outer, len * inner, [y, gd, dx])) {
        dispatch(
          softmaxBackwardKernel(log, m),
          b,
          SOFTMAX_UNIFORMS.pack({ rows: (o1 - o0) * inner, L: len, inner }),
          grid1d((o1 - o0) * inner, rowItemsPerGroup(m)),
        );
      }
    }
    return [dx];
  }, [y]);
}

/** softmax(x) along `axis` (default the last), numerically stable. */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl("softmax", false, x, axis);
}

/** log(softmax(x)) along `axis` (default the last), computed as x − max − log Σ exp(x − max). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl("logSoftmax", true, x, axis);
}

let relBiasPeriods = true;

/**
 * Whether {@link softmaxRelBias} takes the vec4 period kernel for a KW that is not a multiple of 4
 * (true) or the scalar one; returns the old setting (A/B benchmarks, tests).
 */
export function setSoftmaxRelBiasPeriods(on: boolean): boolean {
  const old = relBiasPeriods;
  relBiasPeriods = on;
  return old;
}

/**
 * softmax(scale·s + bias) along the last axis of scores s [G, Nq, KH·KW], where the bias of element
 * kh·KW + kw is relH[g, q, kh] + relW[g, q, kw] (relH [G, Nq, KH], relW [G, Nq, KW]): SAM's
 * attention probabilities in one kernel, without materialising the bias or scaling q first.
 */
export function softmaxRelBias(
  s: Tensor,
  relH: Tensor,
  relW: Tensor,
  scale = 1,
  opts: { padRows?: boolean } = {},
): Tensor {
  if (!Number.isFinite(scale)) {
    throw new Error(`softmaxRelBias: scale must be a finite number, got ${scale}`);
  }
  for (const t of [s, relH, relW]) {
    t.assertAlive();
    if (t.dtype !== "f32" || t.rank !== 3) {
      throw new Error(
        `softmaxRelBias: expected f32 tensors of rank 3, got ${t.dtype} [${t.shape}]`,
      );
    }
  }
  const [G, nq, nk] = s.shape, KH = relH.shape[2], KW = relW.shape[2];
  if (
    relH.shape[0] !== G || relH.shape[1] !== nq || relW.shape[0] !== G || relW.shape[1] !== nq ||
    KH * KW !== nk
  ) {
    throw new Error(
      `softmaxRelBias: scores [${s.shape}] need relH [${G}, ${nq}, KH] and relW [${G}, ${nq}, KW] ` +
        `with KH·KW = ${nk}, got [${relH.shape}] and [${relW.shape}]`,
    );
  }
  if (KW > RELBIAS_MAX_KW) {
    const bias = add(reshape(relH, [G, nq, KH, 1]), reshape(relW, [G, nq, 1, KW]));
    return softmax(add(scale === 1 ? s : mul(s, scale), reshape(bias, [G, nq, nk])));
  }
  const rows = G * nq;
  if (gpu().isSoftware) assertLoopLimit("softmaxRelBias", 2 * (KH + 1), `KH = ${KH}`);
  const sd = dense(s), hd = dense(relH), wd = dense(relW);
  // A KW that is not a multiple of 4 (SAM's 14×14 windows) still reads and writes vec4s where
  // the row is whole periods of lcm(KW, 4) keys.
  const periods = relBiasPeriods && KW % 4 !== 0 && relBiasTexturePeriod(KH, KW) !== null;
  // Rows padded to 64 floats (256 bytes): a texture matmul then copies the probabilities into
  // its staging texture instead of packing them. No gradient: the backward reads y dense.
  const recorded = isGradEnabled() && [s, relH, relW].some((t) => t.requiresGrad);
  const rowLen = periods && opts.padRows && !recorded && nk % 64 !== 0
    ? Math.ceil(nk / 64) * 64
    : nk;
  const y = rowLen === nk ? empty(s.shape) : empty([G, nq, rowLen]);
  if (y.size > 0) {
    dispatch(
      periods ? softmaxRelBiasPeriodKernel(KH, KW) : softmaxRelBiasKernel(KW),
      [sd.binding(), hd.binding(), wd.binding(), y.binding()],
      periods
        ? SOFTMAX_RELBIAS_TEXTURE_UNIFORMS.pack({
          rows,
          KH,
          scale,
          r0: 0,
          hOff: 0,
          wOff: 0,
          oRow: rowLen / 4,
        })
        : SOFTMAX_RELBIAS_UNIFORMS.pack({ rows, KH, scale }),
      grid1d(rows, RELBIAS_WG),
    );
  }
  for (const [d, t] of [[sd, s], [hd, relH], [wd, relW]]) disposeCopy(d, t);
  if (rowLen !== nk) {
    const v = view(y, s.shape, [nq * rowLen, rowLen, 1], y.offset);
    y.dispose();
    return v;
  }
  return record("softmaxRelBias", [s, relH, relW], y, (g) => {
    // d(logits) is softmax's backward; each bias term's gradient sums it over the other index,
    // the scores' is it times the scale.
    const gd = dense(g);
    const ds = empty(s.shape);
    if (ds.size > 0) {
      const m = rowModeFor(rows, nk, 1);
      dispatch(
        softmaxBackwardKernel(false, m),
        [y.binding(), gd.binding(), ds.binding()],
        SOFTMAX_UNIFORMS.pack({ rows, L: nk, inner: 1 }),
        grid1d(rows, rowItemsPerGroup(m)),
      );
    }
    disposeCopy(gd, g);
    const ds4 = reshape(ds, [G, nq, KH, KW]);
    return [
      s.requiresGrad ? (scale === 1 ? ds : mul(ds, scale)) : null,
      relH.requiresGrad ? sum(ds4, 3) : null,
      relW.requiresGrad ? sum(ds4, 2) : null,
    ];
  }, [y]);
}
