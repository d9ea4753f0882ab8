/** Float64 CPU reference for attention with SAM's decomposed relative-position bias. */

export interface AttnRefInput {
  g: number;
  nq: number;
  nk: number;
  d: number;
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  scale: number;
  /** [g, nq, kh] and [g, nq, kw] with kh·kw = nk. */
  relH?: ArrayLike<number>;
  relW?: ArrayLike<number>;
  kh?: number;
  kw?: number;
}

function probsRow(a: AttnRefInput, g: number, i: number): Float64Array {
  const { nq, nk, d, q, k, scale } = a;
  const kh = a.kh ?? 1, kw = a.kw ?? nk;
  const s = new Float64Array(nk);
  const qb = (g * nq + i) * d;
  let m = -Infinity;
  for (let j = 0; j < nk; j++) {
    const kb = (g * nk + j) * d;
    let dot = 0;
    for (let c = 0; c < d; c++) dot += q[qb + c] * k[kb + c];
    let x = scale * dot;
    if (a.relH && a.relW) {
      x += a.relH[(g * nq + i) * kh + Math.floor(j / kw)] + a.relW[(g * nq + i) * kw + (j % kw)];
    }
    s[j] = x;
    m = Math.max(m, x);
  }
  let sum = 0;
  for (let j = 0; j < nk; j++) sum += s[j] = Math.exp(s[j] - m);
  for (let j = 0; j < nk; j++) s[j] /= sum;
  return s;
}

/**
 * Output rows [g, i, :] for the listed (g, i) pairs (all when `rows` is omitted), row-major, and
 * their log-sum-exp.
 */
export function attentionRef(
  a: AttnRefInput,
  rows?: [number, number][],
): { out: Float64Array; lse: Float64Array } {
  const list = rows ??
    Array.from({ length: a.g * a.nq }, (_, r) => [Math.floor(r / a.nq), r % a.nq]);
  const out = new Float64Array(list.length * a.d);
  const lse = new Float64Array(list.length);
  list.forEach(([g, i], r) => {
    const p = probsRow(a, g, i);
    for (let j = 0; j < a.nk; j++) {
      const vb = (g * a.nk + j) * a.d;
      for (let c = 0; c < a.d; c++) out[r * a.d + c] += p[j] * a.v[vb + c];
    }
    // lse = log Σ exp(s): recover it from one probability and its score.
    const kh = a.kh ?? 1, kw = a.kw ?? a.nk;
    let dot = 0;
    for (let c = 0; c < a.d; c++) dot += a.q[(g * a.nq + i) * a.d + c] * a.k[g * a.nk * a.d + c];
    let s0 = a.scale * dot;
    if (a.relH && a.relW) s0 += a.relH[(g * a.nq + i) * kh] + a.relW[(g * a.nq + i) * kw];
    lse[r] = s0 - Math.log(p[0]);
  });
  return { out, lse };
}

/** Gradients of Σ out·dOut with respect to q, k, v, relH, relW (float64). */
export function attentionGradRef(a: AttnRefInput, dOut: ArrayLike<number>): {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dRelH: Float64Array;
  dRelW: Float64Array;
} {
  const { g: G, nq, nk, d, q, k, v, scale } = a;
  const kh = a.kh ?? 1, kw = a.kw ?? nk;
  const dq = new Float64Array(G * nq * d),
    dk = new Float64Array(G * nk * d),
    dv = new Float64Array(G * nk * d);
  const dRelH = new Float64Array(G * nq * kh), dRelW = new Float64Array(G * nq * kw);
  for (let g = 0; g < G; g++) {
    for (let i = 0; i < nq; i++) {
      const p = probsRow(a, g, i);
      const ob = (g * nq + i) * d;
      const dp = new Float64Array(nk);
      let dsum = 0;
      for (let j = 0; j < nk; j++) {
        const vb = (g * nk + j) * d;
        for (let c = 0; c < d; c++) {
          dp[j] += dOut[ob + c] * v[vb + c];
          dv[vb + c] += p[j] * dOut[ob + c];
        }
        dsum += p[j] * dp[j];
      }
      for (let j = 0; j < nk; j++) {
        const ds = p[j] * (dp[j] - dsum);
        const kb = (g * nk + j) * d;
        for (let c = 0; c < d; c++) {
          dq[ob + c] += scale * ds * k[kb + c];
          dk[kb + c] += scale * ds * q[ob + c];
        }
        dRelH[(g * nq + i) * kh + Math.floor(j / kw)] += ds;
        dRelW[(g * nq + i) * kw + (j % kw)] += ds;
      }
    }
  }
  return { dq, dk, dv, dRelH, dRelW };
}
