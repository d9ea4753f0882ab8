/** Float64 CPU references for softmax and log-softmax along any axis. */

/** softmax / log-softmax of row-major `x` of `shape` along `axis`. */
export function softmaxRef(
  x: ArrayLike<number>,
  shape: number[],
  axis: number,
  log = false,
): Float64Array {
  const a = axis < 0 ? axis + shape.length : axis;
  const len = shape[a];
  let outer = 1, inner = 1;
  for (let i = 0; i < a; i++) outer *= shape[i];
  for (let i = a + 1; i < shape.length; i++) inner *= shape[i];
  const out = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * len * inner + i;
      let m = -Infinity;
      for (let k = 0; k < len; k++) m = Math.max(m, x[base + k * inner]);
      let s = 0;
      for (let k = 0; k < len; k++) s += Math.exp(x[base + k * inner] - m);
      for (let k = 0; k < len; k++) {
        const v = x[base + k * inner] - m;
        out[base + k * inner] = log ? v - Math.log(s) : Math.exp(v) / s;
      }
    }
  }
  return out;
}

/**
 * softmax(s + bias) along rows of length KH·KW, bias[r, kh·KW + kw] = relH[r, kh] + relW[r, kw]
 * (SAM's decomposed relative-position bias), for `rows` rows.
 */
export function softmaxRelBiasRef(
  s: ArrayLike<number>,
  relH: ArrayLike<number>,
  relW: ArrayLike<number>,
  rows: number,
  KH: number,
  KW: number,
): Float64Array {
  const L = KH * KW;
  const biased = new Float64Array(rows * L);
  for (let r = 0; r < rows; r++) {
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++) {
        const i = r * L + kh * KW + kw;
        biased[i] = s[i] + relH[r * KH + kh] + relW[r * KW + kw];
      }
    }
  }
  return softmaxRef(biased, [rows, L], 1);
}
