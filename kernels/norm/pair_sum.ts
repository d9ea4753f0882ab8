/**
 * Two workgroup sums at once (BatchNorm's and LayerNorm's per-channel / per-column reductions):
 * each lane `l` stores its pair, then a fixed halving tree adds them, so the result does not
 * depend on scheduling (bit-reproducible).
 */

/** The workgroup arrays `ra`, `rb` of `w` floats that {@link pairSum} adds in. */
export function pairSumScratch(w: number): string {
  return `var<workgroup> ra: array<f32, ${w}>;
var<workgroup> rb: array<f32, ${w}>;`;
}

/**
 * Statements adding lane `l`'s `a` and `b` over the `w` lanes (a power of two): the sums end in
 * ra[0] and rb[0]; every lane must run them (barriers).
 */
export function pairSum(w: number, a: string, b: string): string {
  return `  ra[l] = ${a};
  rb[l] = ${b};
  workgroupBarrier();
  for (var s = ${w / 2}u; s > 0u; s = s >> 1u) {
    if (l < s) { ra[l] = ra[l] + ra[l + s]; rb[l] = rb[l] + rb[l + s]; }
    workgroupBarrier();
  }`;
}
