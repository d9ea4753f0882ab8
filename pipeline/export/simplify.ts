/**
 * Douglas–Peucker simplification of a closed ring: every removed vertex lies within `tolerance`
 * of the chord that replaces it. Iterative (an explicit stack), so a ring of millions of vertices
 * cannot overflow the call stack.
 */

/** Distance from (px, py) to the segment (ax, ay)–(bx, by). */
function segmentDistance(
  px: number,
  py: number,
  ax: number,
  ay: number,
  bx: number,
  by: number,
): number {
  const dx = bx - ax, dy = by - ay, l2 = dx * dx + dy * dy;
  let t = l2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / l2 : 0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Signed shoelace area of interleaved ring coordinates. */
export function ringArea(p: ArrayLike<number>): number {
  const m = p.length / 2;
  let a2 = 0;
  for (let k = 0; k < m; k++) {
    const j = k + 1 === m ? 0 : k + 1;
    a2 += p[2 * k] * p[2 * j + 1] - p[2 * j] * p[2 * k + 1];
  }
  return a2 / 2;
}

/**
 * Simplifies a closed ring (interleaved x, y; closing vertex not repeated). The ring is split at
 * vertex 0 and the vertex farthest from it, and each half is simplified. A ring that would
 * collapse (under 3 vertices, or its area changing sign) is returned unchanged.
 */
export function simplifyRing(p: ArrayLike<number>, tolerance: number): Float64Array {
  const m = p.length / 2;
  if (m <= 3 || !(tolerance > 0)) return Float64Array.from(p);
  const keep = new Uint8Array(m + 1); // index m stands for vertex 0 closing the ring
  let far = 0, best = -1;
  for (let k = 1; k < m; k++) {
    const d = Math.hypot(p[2 * k] - p[0], p[2 * k + 1] - p[1]);
    if (d > best) {
      best = d;
      far = k;
    }
  }
  keep[0] = keep[far] = keep[m] = 1;
  const X = (k: number) => p[2 * (k % m)], Y = (k: number) => p[2 * (k % m) + 1];
  const stack: number[] = [0, far, far, m];
  while (stack.length) {
    const b = stack.pop()!, a = stack.pop()!;
    let worst = -1, dmax = tolerance;
    for (let k = a + 1; k < b; k++) {
      const d = segmentDistance(X(k), Y(k), X(a), Y(a), X(b), Y(b));
      if (d > dmax) {
        dmax = d;
        worst = k;
      }
    }
    if (worst >= 0) {
      keep[worst] = 1;
      stack.push(a, worst, worst, b);
    }
  }
  const out: number[] = [];
  for (let k = 0; k < m; k++) if (keep[k]) out.push(p[2 * k], p[2 * k + 1]);
  if (out.length < 6 || Math.sign(ringArea(out)) !== Math.sign(ringArea(p))) {
    return Float64Array.from(p);
  }
  return Float64Array.from(out);
}
