/**
 * Multi-head attention for SAM, with the image encoder's decomposed relative-position bias.
 * No path materialises ViT-B's full 12×4096×4096 global-attention scores (805 MB): the fused
 * flash kernel (engine/ops/attention.ts) never forms scores; the composed path (matmul, softmax)
 * forms them per group of slices small enough to stay within half the adapter's binding limit, and
 * so does the opt-in texture path (engine/ops/attention_texture.ts: software adapters, no
 * gradient, the probabilities written straight into the texture the product with v reads).
 */
import { bindingLimit, empty, F, gpu, isGradEnabled, type Tensor, tidy } from "../../engine/mod.ts";

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

// Which implementation runs where, and why: engine/routing.ts (re-exported for bench/models.ts).
import { attentionImpl } from "../../engine/routing.ts";
export { type AttentionImpl, attentionImpl, setAttentionImpl } from "../../engine/routing.ts";

let scoresKernel = true;

/**
 * Whether the composed path computes its biased attention's scores with the scores kernel where
 * it can (true) or the texture matmul; returns the old setting (A/B benchmarks, tests).
 */
export function setAttentionScoresKernel(on: boolean): boolean {
  const old = scoresKernel;
  scoresKernel = on;
  return old;
}

let probabilityViews = true;

/**
 * Whether the bias softmax's probabilities [G, Nq, Nk] (rows padded to 256 bytes for the P·V
 * product's texture copy) are split into [B, H, Nq, Nk] as a view (true) or by a reshape, which
 * copies a padded tensor densely (false: the code before; ~150 ms a windowed ViT-B block on
 * llvmpipe). Kept for A/B benchmarks (bench/sam_encoder_ab.ts); returns the old setting.
 */
export function setAttentionProbabilityViews(on: boolean): boolean {
  const old = probabilityViews;
  probabilityViews = on;
  return old;
}

/** p [G, Nq, Nk] → [pb, ph, Nq, Nk]: see {@link setAttentionProbabilityViews}. */
function splitHeads(p: Tensor, pb: number, ph: number): Tensor {
  return probabilityViews
    ? F.unflatten(p, 0, [pb, ph])
    : F.reshape(p, [pb, ph, p.shape[1], p.shape[2]]);
}

/**
 * softmax(q·kᵀ·scale + bias) for q [b, h, Nq, d], k [b, h, Nk, d] and the bias terms relH, relW
 * [b, h, Nq, ·]: the probabilities [b, h, Nq, Nk] (rows maybe padded: a view).
 */
function biasedProbabilities(
  q: Tensor,
  k: Tensor,
  relH: Tensor,
  relW: Tensor,
  scale: number,
): Tensor {
  const [pb, ph, nq] = q.shape;
  // Without gradients on software adapters the scores kernel stores vec4s where the texture
  // matmul stores a checked scalar each (a store-bound product at d = 64).
  const s = scoresKernel && gpu().isSoftware && !F.attentionScoresRefusal(q, k)
    ? F.attentionScoresRaw(q, k)
    : F.matmul(q, F.transpose(k, 2, 3));
  const flat = (t: Tensor) => F.reshape(t, [pb * ph, nq, -1]);
  // The bias and the scale are applied inside the softmax kernel, never materialised.
  const p = F.softmaxRelBias(flat(s), flat(relH), flat(relW), scale, { padRows: true });
  return splitHeads(p, pb, ph);
}

/** [B, H, N, d] seen as [B·H, N, d] (a copy unless the layout allows a view). */
function flat3(t: Tensor): Tensor {
  return t.rank === 3 ? t : F.reshape(t, [-1, t.shape[2], t.shape[3]]);
}

/**
 * softmax(q·kᵀ·scale + bias)·v for q [G, Nq, d], k and v [G, Nk, d] (G = batch·heads), or for
 * q [B, H, Nq, d], k and v [B, H, Nk, d]: the result has q's rank. On the composed path strided
 * operands (heads split out of a projection by a permute) are read in place by the matmuls, and
 * the scale goes into the bias softmax, or onto the smaller of q and k: neither is copied first.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, scale: number, rel?: RelPos): Tensor {
  const rank = q.rank;
  if (
    (rank !== 3 && rank !== 4) || k.rank !== rank || v.rank !== rank ||
    q.shape.slice(0, -2).join() !== k.shape.slice(0, -2).join() ||
    k.shape.join() !== v.shape.join() || q.shape[rank - 1] !== k.shape[rank - 1]
  ) {
    throw new Error(
      `attention: expected q [G, Nq, d] (or [B, H, Nq, d]) and k, v [G, Nk, d] (or [B, H, Nk, d]); ` +
        `got q [${q.shape}], k [${k.shape}], v [${v.shape}]`,
    );
  }
  // The bias terms read q in place (no copy of a strided q), dense [G, Nq, kh] and [G, Nq, kw].
  const terms = rel ? F.relPosTerms(q, rel.rh, rel.rw, rel.qh, rel.qw) : undefined;
  if (attentionImpl() === "fused") {
    const o = F.flashAttention(flat3(q), flat3(k), flat3(v), {
      scale,
      relH: terms?.relH,
      relW: terms?.relW,
    });
    return rank === 3 ? o : F.reshape(o, q.shape);
  }
  // Everything as [B, H, N, ·]: groups of heads are slices of the second axis.
  const to4 = (t: Tensor) => (t.rank === 4 ? t : F.unsqueeze(t, 0));
  const [q4, k4, v4] = [q, k, v].map(to4);
  if (
    terms && attentionImpl() === "texture" &&
    !F.attentionTextureRefusal(q4, k4, v4, terms.relH, terms.relW)
  ) {
    // Without gradients on software adapters: scores and probabilities in textures, the heads
    // written merged (a [B, H, Nq, d] view of a dense [B, Nq, H, d]).
    const o = F.attentionTextureRaw(q4, k4, v4, terms.relH, terms.relW, scale);
    return rank === 4 ? o : F.squeeze(o, 0);
  }
  const [B, H, nq] = q4.shape;
  const nk = k4.shape[2];
  const relH = terms && F.reshape(terms.relH, [B, H, nq, -1]);
  const relW = terms && F.reshape(terms.relW, [B, H, nq, -1]);
  // Two score-sized tensors live at once (scores and probabilities): keep each under half the limit.
  const budget = Math.floor(bindingLimit() / 2);
  const per = nq * nk * 4;
  if (per > budget) {
    throw new Error(
      `attention: one head's ${nq}×${nk} score matrix exceeds half the binding limit; use the fused kernel`,
    );
  }
  const whole = B * H * per <= budget;
  const heads = whole ? H : Math.max(1, Math.min(H, Math.floor(budget / per)));
  const recorded = isGradEnabled() &&
    [q, k, v, relH, relW].some((t) => t?.requiresGrad);
  if (!whole && !recorded && relH && relW) {
    // Without gradients each group's product writes its heads' rows of one output (a
    // contiguous range of [B, H, Nq, d]) instead of being concatenated afterwards.
    const o = empty([B, H, nq, v4.shape[3]]);
    for (let b = 0; b < B; b++) {
      for (let h0 = 0; h0 < H; h0 += heads) {
        const h1 = Math.min(H, h0 + heads);
        const part = (t: Tensor) => F.slice(F.slice(t, 0, b, b + 1), 1, h0, h1);
        tidy(() => {
          const p = biasedProbabilities(part(q4), part(k4), part(relH), part(relW), scale);
          F.matmulRaw(p, part(v4), { out: part(o) });
        });
      }
    }
    return rank === 4 ? o : F.squeeze(o, 0);
  }
  const outs: Tensor[] = [];
  for (let b = 0; b < (whole ? 1 : B); b++) {
    const row: Tensor[] = [];
    for (let h0 = 0; h0 < H; h0 += heads) {
      const h1 = Math.min(H, h0 + heads);
      const part = (t: Tensor) => (whole ? t : F.slice(F.slice(t, 0, b, b + 1), 1, h0, h1));
      // One scope per group: its scores and probabilities are freed before the next group's are
      // formed (under autograd the graph keeps what backward needs).
      row.push(tidy(() => {
        const qp = part(q4), kp = part(k4);
        if (relH && relW) {
          return F.matmul(biasedProbabilities(qp, kp, part(relH), part(relW), scale), part(v4));
        }
        const s = scale === 1
          ? F.matmul(qp, F.transpose(kp, 2, 3))
          : qp.size <= kp.size
          ? F.matmul(F.mul(qp, scale), F.transpose(kp, 2, 3))
          : F.matmul(qp, F.transpose(F.mul(kp, scale), 2, 3));
        return F.matmul(F.softmax(s, -1), part(v4));
      }));
    }
    outs.push(row.length === 1 ? row[0] : F.concat(row, 1));
  }
  const o = outs.length === 1 ? outs[0] : F.concat(outs, 0);
  return rank === 4 ? o : F.squeeze(o, 0);
}
