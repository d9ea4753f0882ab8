/**
 * Multi-head attention for SAM, with the image encoder's decomposed relative-position bias.
 * Neither path materialises ViT-B's full 12×4096×4096 global-attention scores (805 MB): the fused
 * flash kernel (engine/ops/attention.ts) never forms scores; the composed path (matmul, softmax)
 * forms them per group of slices small enough to stay within half the adapter's binding limit.
 */
import { F, gpu, type Tensor, tidy } from "../../engine/mod.ts";

/** Relative-position lookup indices as get_rel_pos computes them (qSize × kSize). */
export function relPosIndex(qSize: number, kSize: number): Int32Array {
  const qs = Math.max(kSize / qSize, 1), ks = Math.max(qSize / kSize, 1);
  const idx = new Int32Array(qSize * kSize);
  for (let q = 0; q < qSize; q++) {
    for (let k = 0; k < kSize; k++) {
      idx[q * kSize + k] = Math.trunc(q * qs - k * ks + (kSize - 1) * ks);
    }
  }
  return idx;
}

export interface RelPos {
  /** rel_pos_h gathered to [qh, kh, hd]. */
  rh: Tensor;
  /** rel_pos_w gathered to [qw, kw, hd]. */
  rw: Tensor;
  qh: number;
  qw: number;
}

/** The per-query bias terms for q [G, qh·qw, hd]: relH [G, Nq, kh] and relW [G, Nq, kw]. */
function relTerms(q: Tensor, rp: RelPos): { relH: Tensor; relW: Tensor } {
  const [g, , hd] = q.shape;
  const { qh, qw } = rp;
  const kh = rp.rh.shape[1], kw = rp.rw.shape[1];
  const rq = F.reshape(q, [g, qh, qw, hd]);
  // rel_h[b,h,w,k] = Σ_c rq[b,h,w,c]·Rh[h,k,c]: batch the matmul over h.
  const qH = F.reshape(F.permute(rq, [1, 0, 2, 3]), [qh, g * qw, hd]);
  const relH = F.permute(F.reshape(F.matmul(qH, F.transpose(rp.rh, 1, 2)), [qh, g, qw, kh]), [
    1,
    0,
    2,
    3,
  ]);
  const qW = F.reshape(F.permute(rq, [2, 0, 1, 3]), [qw, g * qh, hd]);
  const relW = F.permute(F.reshape(F.matmul(qW, F.transpose(rp.rw, 1, 2)), [qw, g, qh, kw]), [
    1,
    2,
    0,
    3,
  ]);
  return { relH: F.reshape(relH, [g, qh * qw, kh]), relW: F.reshape(relW, [g, qh * qw, kw]) };
}

// Which implementation runs where, and why: engine/routing.ts (re-exported for bench/models.ts).
import { attentionImpl } from "../../engine/routing.ts";
export { type AttentionImpl, attentionImpl, setAttentionImpl } from "../../engine/routing.ts";

/**
 * softmax(q·kᵀ·scale + bias)·v for q [G, Nq, d], k and v [G, Nk, d] (G = batch·heads).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, scale: number, rel?: RelPos): Tensor {
  const terms = rel ? relTerms(q, rel) : undefined;
  if (attentionImpl() === "fused") {
    return F.flashAttention(q, k, v, { scale, relH: terms?.relH, relW: terms?.relW });
  }
  const [g, nq] = q.shape;
  const nk = k.shape[1];
  // Two score-sized tensors live at once (scores and probabilities): keep each under half the limit.
  const budget = Math.floor(gpu().limits.maxStorageBufferBindingSize / 2);
  const per = nq * nk * 4;
  if (per > budget) {
    throw new Error(
      `attention: one head's ${nq}×${nk} score matrix exceeds half the binding limit; use the fused kernel`,
    );
  }
  const groupSize = Math.max(1, Math.min(g, Math.floor(budget / per)));
  const outs: Tensor[] = [];
  for (let g0 = 0; g0 < g; g0 += groupSize) {
    const g1 = Math.min(g, g0 + groupSize);
    const part = (t: Tensor) => (groupSize >= g ? t : F.slice(t, 0, g0, g1));
    // One scope per group: its scores and probabilities are freed before the next group's are
    // formed (under autograd the graph keeps what backward needs).
    outs.push(tidy(() => {
      const s = F.matmul(F.mul(part(q), scale), F.transpose(part(k), 1, 2));
      // The bias is added inside the softmax kernel, never materialised.
      const p = terms ? F.softmaxRelBias(s, part(terms.relH), part(terms.relW)) : F.softmax(s, -1);
      return F.matmul(p, part(v));
    }));
  }
  return outs.length === 1 ? outs[0] : F.concat(outs, 0);
}
