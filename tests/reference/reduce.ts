/** Float64 CPU references for reductions over any set of axes of a row-major array. */
import { stridesOf } from "./shape.ts";

export type RefReduceOp = "sum" | "mean" | "max" | "min" | "argmax" | "argmin" | "var";

/**
 * Reduces `data` (row-major, `shape`) over `axes` (all when omitted). argmax/argmin return the
 * first index of the extremum in the flattened reduced dims (one axis in practice). `var` uses
 * `correction` (Bessel's 1 by default) and divides by max(n − correction, 0) as torch.var.
 */
export function reduceRef(
  op: RefReduceOp,
  data: ArrayLike<number>,
  shape: readonly number[],
  axes?: readonly number[],
  opts: { keepdim?: boolean; correction?: number } = {},
): { data: Float64Array; shape: number[] } {
  const rank = shape.length;
  const ax = axes === undefined
    ? [...Array(rank).keys()]
    : [...new Set(axes.map((a) => (a < 0 ? a + rank : a)))];
  const kept = [...Array(rank).keys()].filter((i) => !ax.includes(i));
  const outShape: number[] = [];
  shape.forEach((s, i) => {
    if (!ax.includes(i)) outShape.push(s);
    else if (opts.keepdim) outShape.push(1);
  });
  const st = stridesOf(shape);
  const nOut = kept.reduce((p, i) => p * shape[i], 1);
  const inner = ax.reduce((p, i) => p * shape[i], 1);
  const out = new Float64Array(nOut);
  const redSorted = ax.slice().sort((a, b) => a - b);
  const vals = new Float64Array(inner);
  for (let o = 0; o < nOut; o++) {
    let rem = o, base = 0;
    for (let k = kept.length - 1; k >= 0; k--) {
      const d = kept[k];
      base += (rem % shape[d]) * st[d];
      rem = Math.floor(rem / shape[d]);
    }
    for (let r = 0; r < inner; r++) {
      let rr = r, off = base;
      for (let k = redSorted.length - 1; k >= 0; k--) {
        const d = redSorted[k];
        off += (rr % shape[d]) * st[d];
        rr = Math.floor(rr / shape[d]);
      }
      vals[r] = data[off];
    }
    out[o] = reduceValues(op, vals, opts.correction ?? 1);
  }
  return { data: out, shape: outShape };
}

function reduceValues(op: RefReduceOp, v: Float64Array, correction: number): number {
  const n = v.length;
  switch (op) {
    case "sum":
      return v.reduce((a, b) => a + b, 0);
    case "mean":
      return v.reduce((a, b) => a + b, 0) / n;
    case "max":
      return v.reduce((a, b) => Math.max(a, b), -Infinity);
    case "min":
      return v.reduce((a, b) => Math.min(a, b), Infinity);
    case "argmax":
    case "argmin": {
      let best = 0;
      for (let i = 1; i < n; i++) if (op === "argmax" ? v[i] > v[best] : v[i] < v[best]) best = i;
      return best;
    }
    case "var": {
      const m = v.reduce((a, b) => a + b, 0) / n;
      let s = 0;
      for (const x of v) s += (x - m) * (x - m);
      return s / Math.max(n - correction, 0);
    }
  }
}
