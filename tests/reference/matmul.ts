/** Float64 CPU references for matrix products (torch.matmul / F.linear semantics). */
import { stridesOf } from "./shape.ts";

export interface Ref {
  data: Float64Array;
  shape: number[];
}

/** torch.matmul on row-major arrays: 1-D promotion, broadcast batch dims. */
export function matmulRef(
  a: ArrayLike<number>,
  aShape: number[],
  b: ArrayLike<number>,
  bShape: number[],
): Ref {
  if (!aShape.length || !bShape.length) throw new Error("matmulRef: rank 0");
  const as = aShape.length === 1 ? [1, aShape[0]] : aShape.slice();
  const bs = bShape.length === 1 ? [bShape[0], 1] : bShape.slice();
  const M = as[as.length - 2], K = as[as.length - 1], N = bs[bs.length - 1];
  if (bs[bs.length - 2] !== K) throw new Error(`matmulRef: [${aShape}] x [${bShape}]`);
  const ab = as.slice(0, -2), bb = bs.slice(0, -2);
  const rank = Math.max(ab.length, bb.length);
  const batch: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = ab[i - (rank - ab.length)] ?? 1, y = bb[i - (rank - bb.length)] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error("matmulRef: batch dims do not broadcast");
    batch.push(Math.max(x, y));
  }
  const nb = batch.reduce((p, q) => p * q, 1);
  const aSt = stridesOf(ab), bSt = stridesOf(bb);
  const out = new Float64Array(nb * M * N);
  for (let z = 0; z < nb; z++) {
    let rem = z, ao = 0, bo = 0;
    for (let i = rank - 1; i >= 0; i--) {
      const idx = rem % batch[i];
      rem = Math.floor(rem / batch[i]);
      const ia = i - (rank - ab.length), ib = i - (rank - bb.length);
      if (ia >= 0 && ab[ia] !== 1) ao += idx * aSt[ia];
      if (ib >= 0 && bb[ib] !== 1) bo += idx * bSt[ib];
    }
    const aBase = ao * M * K, bBase = bo * K * N, cBase = z * M * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[aBase + m * K + k] * b[bBase + k * N + n];
        out[cBase + m * N + n] = s;
      }
    }
  }
  const shape = [...batch];
  if (aShape.length > 1) shape.push(M);
  if (bShape.length > 1) shape.push(N);
  return { data: out, shape };
}

/** Row-major transpose of the last two dims. */
export function transposeRef(
  x: ArrayLike<number>,
  shape: number[],
): { data: Float64Array; shape: number[] } {
  const R = shape[shape.length - 2], C = shape[shape.length - 1];
  const nb = x.length / (R * C);
  const out = new Float64Array(x.length);
  for (let z = 0; z < nb; z++) {
    for (let r = 0; r < R; r++) {
      for (let c = 0; c < C; c++) out[z * R * C + c * R + r] = x[z * R * C + r * C + c];
    }
  }
  return { data: out, shape: [...shape.slice(0, -2), C, R] };
}

/** F.linear: x [..., in] · Wᵀ + bias. */
export function linearRef(
  x: ArrayLike<number>,
  xShape: number[],
  w: ArrayLike<number>,
  wShape: number[],
  bias?: ArrayLike<number>,
): Ref {
  const wt = transposeRef(w, wShape);
  const r = matmulRef(x, xShape, wt.data, wt.shape);
  if (bias) {
    const n = wShape[0];
    for (let i = 0; i < r.data.length; i++) r.data[i] += bias[i % n];
  }
  return r;
}
