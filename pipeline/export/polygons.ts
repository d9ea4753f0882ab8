/**
 * Tumour regions as polygons from a probability map: threshold, trace (outer contours, holes and
 * islands in holes, see `trace.ts`), drop tiny regions and fill tiny holes, map to level-0
 * coordinates and simplify.
 *
 * Coordinates: level-0 pixel (x, y) is the unit square [x, x+1) × [y, y+1) (the convention of
 * `Slide.readRegion`, QuPath and OpenSeadragon). A map pixel (i, j) at downsample `ds` covers
 * [i·ds, (i+1)·ds) × [j·ds, (j+1)·ds), so map corner (i, j) goes to level-0 point (i·ds, j·ds),
 * clipped to the slide's level-0 size. (The ASAP writer shifts these by −½, see `asap_xml.ts`.)
 */
import { type TracedRing, traceRings } from "./trace.ts";
import { simplifyRing } from "./simplify.ts";

export interface RegionOptions {
  /** Level-0 pixels per map pixel. */
  downsample: number;
  /** Level-0 size of the slide: vertices are clipped to it. */
  width0: number;
  height0: number;
  /** Smallest region kept and smallest hole kept (smaller holes are filled), level-0 pixels². */
  minArea: number;
  /** Douglas–Peucker tolerance in level-0 pixels (0: the exact pixel outline). */
  tolerance: number;
  /** Largest map accepted (pixels), see `MAX_TRACE_PIXELS`. */
  maxPixels?: number;
  /** Tumour where the map's value is above this (default 0: any non-zero pixel). */
  cut?: number;
}

/** A hole of a region; `islands` are regions lying inside the hole (indices into the list). */
export interface RegionHole {
  ring: Float64Array;
  islands: number[];
}

/** One connected tumour region (8-connected map pixels). */
export interface TumourRegion {
  /** Exterior ring, level-0 coordinates x0, y0, ... (not closed), positive shoelace area. */
  outer: Float64Array;
  /** Holes, negative shoelace area. */
  holes: RegionHole[];
  /** Tumour area of the region (without its kept holes) in level-0 pixels², before simplifying. */
  area: number;
}

const EMITTED = 1, DROPPED = 2, SUBSUMED = 3, KEPT = 4, FILLED = 5, IRRELEVANT = 6;

/** Ring corners to level-0 coordinates (clipped), without repeated consecutive vertices. */
function toLevel0(r: TracedRing, o: RegionOptions): Float64Array {
  const out: number[] = [];
  const p = r.points, ds = o.downsample;
  for (let k = 0; k < p.length; k += 2) {
    const x = Math.min(p[k] * ds, o.width0), y = Math.min(p[k + 1] * ds, o.height0);
    const n = out.length;
    if (n && out[n - 2] === x && out[n - 1] === y) continue;
    out.push(x, y);
  }
  while (out.length > 2 && out[0] === out[out.length - 2] && out[1] === out[out.length - 1]) {
    out.length -= 2;
  }
  return simplifyRing(out, o.tolerance);
}

/**
 * Regions of a map (`w`×`h`, tumour where the value is above `o.cut`). Regions whose area (without holes) is
 * under `minArea` are dropped; holes under `minArea` are filled (with whatever lies inside them).
 */
export function tumourRegions(
  mask: Uint8Array,
  w: number,
  h: number,
  o: RegionOptions,
): TumourRegion[] {
  if (!(o.downsample > 0) || !(o.minArea >= 0) || !(o.tolerance >= 0)) {
    throw new Error(
      `tumourRegions: bad options downsample=${o.downsample} minArea=${o.minArea} ` +
        `tolerance=${o.tolerance}`,
    );
  }
  // Every map pixel must overlap the slide, or clipping could collapse a ring to nothing.
  if ((w - 1) * o.downsample >= o.width0 || (h - 1) * o.downsample >= o.height0) {
    throw new Error(
      `tumourRegions: a ${w}x${h} map at downsample ${o.downsample} extends past the ` +
        `${o.width0}x${o.height0} slide`,
    );
  }
  const rings = traceRings(mask, w, h, o.maxPixels, o.cut ?? 0);
  const px2 = o.downsample * o.downsample; // level-0 pixels² per map pixel
  const n = rings.length;
  const big = (r: TracedRing) => Math.abs(r.area) * px2 >= o.minArea;
  const net = new Float64Array(n);
  for (let i = 0; i < n; i++) if (!rings[i].hole) net[i] = rings[i].area;
  for (let i = 0; i < n; i++) {
    const r = rings[i];
    if (r.hole && big(r)) net[r.parent] += r.area; // hole areas are negative
  }
  const state = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = rings[i], ps = r.parent < 0 ? 0 : state[r.parent];
    if (!r.hole) {
      if (ps === 0 || ps === KEPT || ps === IRRELEVANT) {
        state[i] = net[i] * px2 >= o.minArea && net[i] > 0 ? EMITTED : DROPPED;
      } else state[i] = SUBSUMED;
    } else {
      state[i] = ps === EMITTED ? (big(r) ? KEPT : FILLED) : ps === DROPPED ? IRRELEVANT : SUBSUMED;
    }
  }
  const regionOf = new Int32Array(n).fill(-1);
  const holeOf = new Map<number, RegionHole>();
  const regions: TumourRegion[] = [];
  for (let i = 0; i < n; i++) {
    const r = rings[i];
    if (state[i] === EMITTED) {
      regionOf[i] = regions.length;
      regions.push({ outer: toLevel0(r, o), holes: [], area: net[i] * px2 });
      if (r.parent >= 0) holeOf.get(r.parent)!.islands.push(regionOf[i]);
    } else if (state[i] === KEPT) {
      const hole: RegionHole = { ring: toLevel0(r, o), islands: [] };
      holeOf.set(i, hole);
      regions[regionOf[r.parent]].holes.push(hole);
    }
  }
  return regions;
}
