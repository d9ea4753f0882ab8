import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import fc from "fast-check";
import { type TracedRing, traceRings } from "../../../pipeline/export/trace.ts";
import { ringArea, simplifyRing } from "../../../pipeline/export/simplify.ts";

/** Mask from rows of '#' (tumour) and '.'. */
function grid(...rows: string[]): [Uint8Array, number, number] {
  const h = rows.length, w = rows[0].length;
  const m = new Uint8Array(w * h);
  rows.forEach((r, y) => [...r].forEach((c, x) => (m[y * w + x] = c === "#" ? 1 : 0)));
  return [m, w, h];
}

/** Winding number of a closed ring around (px, py). */
function winding(p: ArrayLike<number>, px: number, py: number): number {
  let wn = 0;
  const m = p.length / 2;
  for (let k = 0; k < m; k++) {
    const j = (k + 1) % m;
    const ya = p[2 * k + 1], yb = p[2 * j + 1], xa = p[2 * k], xb = p[2 * j];
    const cross = (xb - xa) * (py - ya) - (px - xa) * (yb - ya);
    if (ya <= py) {
      if (yb > py && cross > 0) wn++;
    } else if (yb <= py && cross < 0) wn--;
  }
  return wn;
}

/** 8-connected component sizes of the foreground (reference labelling by BFS). */
function componentCount(m: Uint8Array, w: number, h: number): number {
  const seen = new Uint8Array(w * h);
  let n = 0;
  for (let s = 0; s < w * h; s++) {
    if (!m[s] || seen[s]) continue;
    n++;
    const q = [s];
    seen[s] = 1;
    while (q.length) {
      const i = q.pop()!, x = i % w, y = (i - x) / w;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const X = x + dx, Y = y + dy, j = Y * w + X;
          if (X >= 0 && Y >= 0 && X < w && Y < h && m[j] && !seen[j]) {
            seen[j] = 1;
            q.push(j);
          }
        }
      }
    }
  }
  return n;
}

/** Checks every invariant the exporters rely on. */
function checkRings(m: Uint8Array, w: number, h: number, rings: TracedRing[]) {
  let total = 0, pixels = 0;
  for (const r of rings) total += r.area;
  for (let i = 0; i < w * h; i++) if (m[i]) pixels++;
  assertEquals(total, pixels); // signed areas add up to the pixel count
  assertEquals(rings.filter((r) => !r.hole).length, componentCount(m, w, h));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let wn = 0;
      for (const r of rings) wn += winding(r.points, x + 0.5, y + 0.5);
      assertEquals(wn, m[y * w + x] ? 1 : 0, `pixel ${x},${y}`);
    }
  }
  rings.forEach((r, i) => {
    assertEquals(ringArea(r.points), r.area);
    assert(r.hole === r.area < 0);
    // Ancestors by parent links == the other rings that enclose the ring's start pixel.
    const anc = new Set<number>();
    for (let p = r.parent; p >= 0; p = rings[p].parent) anc.add(p);
    const cx = r.points[0] + 0.5, cy = r.points[1] + 0.5;
    const enclosing = new Set<number>();
    rings.forEach((o, j) => {
      if (j !== i && winding(o.points, cx, cy) !== 0) enclosing.add(j);
    });
    assertEquals(anc, enclosing, `ring ${i}`);
    if (r.parent >= 0) assert(rings[r.parent].hole !== r.hole && r.parent < i);
    // Vertices are corners: no two consecutive collinear edges.
    const k = r.points.length / 2;
    for (let a = 0; a < k; a++) {
      const b = (a + 1) % k, c = (a + 2) % k;
      const d1x = r.points[2 * b] - r.points[2 * a],
        d1y = r.points[2 * b + 1] - r.points[2 * a + 1];
      const d2x = r.points[2 * c] - r.points[2 * b],
        d2y = r.points[2 * c + 1] - r.points[2 * b + 1];
      assert(d1x * d2y - d1y * d2x !== 0, `collinear vertex in ring ${i}`);
    }
  });
}

Deno.test("trace: awkward shapes (holes, islands in holes, diagonals, single pixels, borders)", () => {
  const cases: [string[], number, number][] = [
    // [rows, rings, holes]
    [["#"], 1, 0],
    [["...", ".#.", "..."], 1, 0],
    [["#.", ".#"], 1, 0], // diagonal pixels: one 8-connected region
    [[".#", "#."], 1, 0],
    [["#####", "#...#", "#.#.#", "#...#", "#####"], 3, 1], // island in a hole
    [["###", "#.#", "###"], 2, 1],
    [["##.", "#.#", ".##"], 2, 1], // hole touching the exterior at one corner
    [[".#.", "#.#", ".#."], 2, 1], // diamond: its centre is 4-enclosed, a hole
    [["#.#.#", ".#.#.", "#.#.#"], 2, 1], // checkerboard: one region through corners, one hole
    [["####", "####"], 1, 0], // the whole map, closed along the border
    [["#######", "#.....#", "#.###.#", "#.#.#.#", "#.###.#", "#.....#", "#######"], 4, 2],
    [
      [
        "#########",
        "#.......#",
        "#.#####.#",
        "#.#...#.#",
        "#.#.#.#.#",
        "#.#...#.#",
        "#.#####.#",
        "#.......#",
        "#########",
      ],
      5,
      2,
    ], // island in a hole of an island in a hole
  ];
  for (const [rows, nr, nh] of cases) {
    const [m, w, h] = grid(...rows);
    const rings = traceRings(m, w, h);
    checkRings(m, w, h, rings);
    assertEquals([rings.length, rings.filter((r) => r.hole).length], [nr, nh], rows.join("/"));
  }
  // A single pixel is a unit square with positive orientation.
  const [m1] = grid("#");
  assertEquals(Array.from(traceRings(m1, 1, 1)[0].points), [0, 0, 1, 0, 1, 1, 0, 1]);
  // Empty map: no rings.
  assertEquals(traceRings(new Uint8Array(12), 4, 3), []);
});

Deno.test("trace: refuses a map over its pixel limit before allocating", () => {
  let msg = "";
  try {
    traceRings(new Uint8Array(100), 10, 10, 99);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/10x10 .*exceeds the limit of 99 pixels/.test(msg), msg);
});

Deno.test("trace: fast-check — random maps: winding, areas, nesting, components", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 14 }),
      fc.integer({ min: 1, max: 14 }),
      fc.integer({ min: 1, max: 9 }),
      fc.infiniteStream(fc.integer({ min: 0, max: 9 })),
      (w, h, density, s) => {
        const m = new Uint8Array(w * h);
        const it = s[Symbol.iterator]();
        for (let i = 0; i < w * h; i++) m[i] = it.next().value < density ? 1 : 0;
        checkRings(m, w, h, traceRings(m, w, h));
      },
    ),
    { numRuns: 400, seed: 11 },
  );
});

Deno.test("simplify: Douglas–Peucker keeps vertices within tolerance and never collapses", () => {
  // A staircase diagonal: simplified to its corners within half a pixel.
  const stairs: number[] = [0, 0];
  for (let k = 1; k <= 10; k++) stairs.push(k, k - 1, k, k);
  stairs.push(0, 10);
  const s = simplifyRing(stairs, 0.75);
  assert(s.length / 2 < stairs.length / 2 / 2, `${s.length / 2} vertices`);
  assert(Math.abs(ringArea(s) - ringArea(stairs)) <= 10 * 0.75);
  // A unit square survives any tolerance (it would collapse).
  assertEquals(Array.from(simplifyRing([0, 0, 1, 0, 1, 1, 0, 1], 5)), [0, 0, 1, 0, 1, 1, 0, 1]);
  assertEquals(Array.from(simplifyRing([0, 0, 1, 0, 1, 1, 0, 1], 0.5)), [0, 0, 1, 0, 1, 1, 0, 1]);
});
