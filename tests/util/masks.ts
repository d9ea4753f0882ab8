/** Comparing binary masks in tests (nonzero = inside). */

/** Intersection over union of two masks of equal length; 1 when both are empty. */
export function maskIou(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maskIou: ${a.length} pixels vs ${b.length}`);
  let inter = 0, union = 0;
  for (let k = 0; k < a.length; k++) {
    const p = a[k] !== 0, q = b[k] !== 0;
    if (p && q) inter++;
    if (p || q) union++;
  }
  return union ? inter / union : 1;
}
