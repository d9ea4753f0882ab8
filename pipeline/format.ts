/** Number formatting shared by the pipeline's logs and tables. */

/** A score with four decimals, or `n/a` when it is NaN/infinite (e.g. no patch to average). */
export const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(4) : "n/a");
