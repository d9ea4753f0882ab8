/** Float64 CPU references for batch norm, layer norm and SAM's LayerNorm2d (forward + backward). */

/** BatchNorm2d forward over NCHW; returns y and the batch statistics (biased and unbiased var). */
export function batchNormRef(
  x: ArrayLike<number>,
  [N, C, H, W]: number[],
  o: {
    weight?: ArrayLike<number>;
    bias?: ArrayLike<number>;
    mean?: ArrayLike<number>;
    var?: ArrayLike<number>;
    eps: number;
  },
): { y: Float64Array; mean: Float64Array; varBiased: Float64Array; varUnbiased: Float64Array } {
  const HW = H * W, n = N * HW;
  const y = new Float64Array(x.length);
  const mean = new Float64Array(C), varB = new Float64Array(C), varU = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let b = 0; b < N; b++) for (let i = 0; i < HW; i++) s += x[(b * C + c) * HW + i];
    const m = s / n;
    let q = 0;
    for (let b = 0; b < N; b++) {
      for (let i = 0; i < HW; i++) q += (x[(b * C + c) * HW + i] - m) ** 2;
    }
    mean[c] = m;
    varB[c] = q / n;
    varU[c] = q / (n - 1);
    const mu = o.mean ? o.mean[c] : m, v = o.var ? o.var[c] : varB[c];
    const is = 1 / Math.sqrt(v + o.eps);
    for (let b = 0; b < N; b++) {
      for (let i = 0; i < HW; i++) {
        const k = (b * C + c) * HW + i;
        y[k] = (x[k] - mu) * is * (o.weight ? o.weight[c] : 1) + (o.bias ? o.bias[c] : 0);
      }
    }
  }
  return { y, mean, varBiased: varB, varUnbiased: varU };
}

/** Training-mode BatchNorm2d backward: dx, dweight, dbias. */
export function batchNormBackwardRef(
  x: ArrayLike<number>,
  g: ArrayLike<number>,
  [N, C, H, W]: number[],
  weight: ArrayLike<number> | undefined,
  eps: number,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const HW = H * W, n = N * HW;
  const { mean, varBiased } = batchNormRef(x, [N, C, H, W], { eps });
  const dx = new Float64Array(x.length), dw = new Float64Array(C), db = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const is = 1 / Math.sqrt(varBiased[c] + eps);
    let sg = 0, sgx = 0;
    const idx = (b: number, i: number) => (b * C + c) * HW + i;
    for (let b = 0; b < N; b++) {
      for (let i = 0; i < HW; i++) {
        sg += g[idx(b, i)];
        sgx += g[idx(b, i)] * (x[idx(b, i)] - mean[c]) * is;
      }
    }
    dw[c] = sgx;
    db[c] = sg;
    const w = weight ? weight[c] : 1;
    for (let b = 0; b < N; b++) {
      for (let i = 0; i < HW; i++) {
        const xh = (x[idx(b, i)] - mean[c]) * is;
        dx[idx(b, i)] = w * is * (g[idx(b, i)] - sg / n - xh * sgx / n);
      }
    }
  }
  return { dx, dw, db };
}

/**
 * Layer norm over rows: row r = (o, i), elements at o·L·inner + k·inner + i (inner = 1: torch's
 * layer_norm over trailing dims; inner = H·W, L = C: SAM's LayerNorm2d). Forward and backward.
 */
export function layerNormRowsRef(
  x: ArrayLike<number>,
  rows: number,
  L: number,
  inner: number,
  weight: ArrayLike<number> | undefined,
  bias: ArrayLike<number> | undefined,
  eps: number,
  g?: ArrayLike<number>,
): { y: Float64Array; dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const y = new Float64Array(x.length), dx = new Float64Array(x.length);
  const dw = new Float64Array(L), db = new Float64Array(L);
  for (let r = 0; r < rows; r++) {
    const base = Math.floor(r / inner) * L * inner + (r % inner);
    const at = (k: number) => base + k * inner;
    let s = 0;
    for (let k = 0; k < L; k++) s += x[at(k)];
    const mu = s / L;
    let q = 0;
    for (let k = 0; k < L; k++) q += (x[at(k)] - mu) ** 2;
    const rstd = 1 / Math.sqrt(q / L + eps);
    let a = 0, b = 0;
    for (let k = 0; k < L; k++) {
      const xh = (x[at(k)] - mu) * rstd;
      y[at(k)] = xh * (weight ? weight[k] : 1) + (bias ? bias[k] : 0);
      if (g) {
        const gh = g[at(k)] * (weight ? weight[k] : 1);
        a += gh;
        b += gh * xh;
        dw[k] += g[at(k)] * xh;
        db[k] += g[at(k)];
      }
    }
    if (g) {
      for (let k = 0; k < L; k++) {
        const xh = (x[at(k)] - mu) * rstd;
        const gh = g[at(k)] * (weight ? weight[k] : 1);
        dx[at(k)] = rstd * (gh - a / L - xh * b / L);
      }
    }
  }
  return { y, dx, dw, db };
}
