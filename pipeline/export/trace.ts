/**
 * Contour tracing of a binary map into closed rings with hole nesting.
 *
 * Rings run along pixel edges: map pixel (x, y) is the unit square with corners (x, y) and
 * (x + 1, y + 1), so every ring vertex is an integer corner and the ring encloses exactly the
 * pixels of its region (its shoelace area equals the pixel count of what it encloses). Foreground
 * is 8-connected (pixels touching at a corner are one region) and background 4-connected, so an
 * enclosed background component is a hole. At a saddle corner (two foreground pixels touching
 * diagonally) the tracer turns so that both pixels stay in one ring, which may then touch itself at
 * that corner; rings never cross.
 *
 * Orientation: exterior rings have positive shoelace area sum(x_i*y_(i+1) - x_(i+1)*y_i)/2 taken
 * on the coordinate values, holes negative. Each ring knows its parent: a hole's parent is the
 * exterior of the region around it; an exterior's parent is the hole it sits in (-1 at top level).
 *
 * Memory: one byte per pixel for foreground/visited flags and one int32 per pixel (+1 per row)
 * naming the ring of each vertical edge. A ring's parent is found from the first edge of another
 * ring left of its first pixel on the same row: if that ring is of the other kind (exterior vs
 * hole) it is the parent, otherwise they are siblings and share its parent. No flood fill, no
 * recursion; a parent always precedes its children in the list.
 */

/** One traced ring, vertices at map-pixel corners. */
export interface TracedRing {
  /** Corner coordinates x0, y0, x1, y1, ... (the closing vertex is not repeated). */
  points: Int32Array;
  /** Signed area in map pixels (positive: exterior; negative: hole). */
  area: number;
  /** Whether this ring is the boundary of a hole. */
  hole: boolean;
  /** Index of the enclosing ring (see module comment), or -1. */
  parent: number;
}

const E = 0, S = 1, W = 2, N = 3;

/**
 * Largest map traced: 2^28 pixels (16384² map pixels, e.g. a 131k-pixel-wide slide at downsample
 * 8), 5 bytes of working memory each (1.3 GiB) besides the map itself.
 */
export const MAX_TRACE_PIXELS = 2 ** 28;

/**
 * Traces every region of `mask` (`w`×`h`, row-major; foreground where the value is above `cut`,
 * so a probability map can be traced without a thresholded copy). Out-of-map pixels are
 * background, so regions on the border are closed along the border.
 */
export function traceRings(
  mask: Uint8Array,
  w: number,
  h: number,
  maxPixels = MAX_TRACE_PIXELS,
  cut = 0,
): TracedRing[] {
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 0 || h < 0 || mask.length < w * h) {
    throw new Error(`traceRings: mask of ${mask.length} bytes is not ${w}x${h}`);
  }
  if (w * h > maxPixels) {
    throw new Error(
      `traceRings: map of ${w}x${h} pixels exceeds the limit of ${maxPixels} pixels ` +
        `(5 bytes each of working memory)`,
    );
  }
  const flags = new Uint8Array(w * h); // bit 0 foreground, bit 1 top edge visited, bit 2 bottom
  for (let i = 0; i < w * h; i++) if (mask[i] > cut) flags[i] = 1;
  const W1 = w + 1;
  const vEdge = new Int32Array(W1 * h).fill(-1); // ring id of the edge left of pixel (k, y)
  const fg = (x: number, y: number) =>
    x >= 0 && y >= 0 && x < w && y < h && (flags[y * w + x] & 1) !== 0;
  const rings: TracedRing[] = [];
  const pts: number[] = [];
  // Horizontal boundaries in raster order: a ring is found at its topmost-leftmost horizontal
  // edge, the top of a pixel for an exterior (walked east), the bottom of a pixel for a hole
  // (walked west). A ring's enclosing ring has its top boundary on an earlier row, so parents are
  // found before their children.
  for (let y = 0; y <= h; y++) {
    for (let x = 0; x < w; x++) {
      const above = y > 0 ? flags[(y - 1) * w + x] : 0, below = y < h ? flags[y * w + x] : 0;
      let sx: number, dir0: number;
      if ((below & 3) === 1 && !(above & 1)) {
        sx = x;
        dir0 = E;
      } else if ((above & 5) === 1 && !(below & 1)) {
        sx = x + 1;
        dir0 = W;
      } else continue;
      const id = rings.length;
      pts.length = 0;
      pts.push(sx, y);
      let vx = sx, vy = y, dir = dir0;
      for (;;) {
        if (dir === E) {
          flags[vy * w + vx] |= 2;
          vx++;
        } else if (dir === S) {
          vEdge[vy * W1 + vx] = id;
          vy++;
        } else if (dir === W) {
          vx--;
          flags[(vy - 1) * w + vx] |= 4;
        } else {
          vy--;
          vEdge[vy * W1 + vx] = id;
        }
        const a = fg(vx - 1, vy - 1), b = fg(vx, vy - 1), c = fg(vx - 1, vy), d = fg(vx, vy);
        let nd: number;
        if (a && d && !b && !c) nd = dir === S ? E : W; // saddle: keep a and d in one ring
        else if (b && c && !a && !d) nd = dir === E ? N : S; // saddle: keep b and c in one ring
        else if (d && !b) nd = E;
        else if (c && !d) nd = S;
        else if (a && !c) nd = W;
        else nd = N;
        if (vx === sx && vy === y && nd === dir0) {
          // Back at the start; the start corner is a vertex only if the walk turns there.
          if (dir === dir0) pts.splice(0, 2);
          break;
        }
        if (nd !== dir) pts.push(vx, vy);
        dir = nd;
      }
      let a2 = 0;
      const m = pts.length / 2;
      for (let k = 0; k < m; k++) {
        const j = (k + 1) % m;
        a2 += pts[2 * k] * pts[2 * j + 1] - pts[2 * j] * pts[2 * k + 1];
      }
      const hole = a2 < 0;
      // Parent: the first edge of another ring left of pixel (x, y), which lies inside this ring
      // (module comment); such a ring was found earlier.
      let parent = -1;
      for (let k = x; k >= 0; k--) {
        const r = vEdge[y * W1 + k];
        if (r < 0 || r === id) continue;
        parent = rings[r].hole !== hole ? r : rings[r].parent;
        break;
      }
      if (hole && parent < 0) throw new Error("traceRings: internal error, hole without parent");
      rings.push({ points: Int32Array.from(pts), area: a2 / 2, hole, parent });
    }
  }
  return rings;
}
