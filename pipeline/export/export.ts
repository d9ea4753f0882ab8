/**
 * Tumour polygons from a probability map to ASAP XML and QuPath GeoJSON, for `deno task export`
 * and `infer --slide` (which writes `tumour.xml` and `tumour.geojson` next to `probability.tif`).
 *
 * Defaults, and why:
 * - threshold 0.5: a map pixel is tumour when its probability (stored value / 255) is above it, as
 *   the pipeline's masks (logit > 0);
 * - minimum area 200 µm²: a speck smaller than one tumour cell (about 15 µm across) cannot be a
 *   metastasis, while isolated-tumour-cell clusters (reported clinically) are larger and kept.
 *   Holes under the same area are filled. A slide without a resolution has no µm: then the area is
 *   given in level-0 pixels² (`minAreaPx`), and without it nothing is dropped;
 * - simplification tolerance half a map pixel (in level-0 pixels: downsample / 2): the outline
 *   stays within half a map pixel of the pixel staircase, and a single map pixel survives.
 */
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { regionsToAsapXml } from "./asap_xml.ts";
import { regionsToGeoJson } from "./geojson.ts";
import { type TumourRegion, tumourRegions } from "./polygons.ts";

export const DEFAULT_THRESHOLD = 0.5;
export const DEFAULT_MIN_AREA_UM2 = 200;

/** The probability map and where it lies on the slide. */
export interface ProbabilityMap {
  /** Values 0..255 (probability × 255), row-major `width`×`height`. */
  data: Uint8Array;
  width: number;
  height: number;
  /** Level-0 pixels per map pixel. */
  downsample: number;
}

/** The slide the map belongs to. */
export interface SlideGeometry {
  width0: number;
  height0: number;
  /** Microns per level-0 pixel (x, y), or null when the slide has no resolution. */
  mpp: [number, number] | null;
}

export interface PolygonExportOptions {
  threshold?: number;
  /** Minimum region / hole area in µm² (needs the slide's mpp). */
  minAreaUm2?: number;
  /** Minimum region / hole area in level-0 pixels² (overrides `minAreaUm2`). */
  minAreaPx?: number;
  /** Douglas–Peucker tolerance in level-0 pixels (default downsample / 2). */
  tolerance?: number;
  maxPixels?: number;
}

export interface PolygonExport {
  regions: TumourRegion[];
  holes: number;
  vertices: number;
  /** The minimum area used, in level-0 pixels², and how it was given. */
  minAreaPx: number;
  minAreaNote: string;
  tolerance: number;
}

/** The minimum area in level-0 pixels² from the options and the slide's resolution. */
function resolveMinArea(
  o: PolygonExportOptions,
  mpp: [number, number] | null,
): { px: number; note: string } {
  if (o.minAreaPx !== undefined) return { px: o.minAreaPx, note: `${o.minAreaPx} px²` };
  if (!mpp) {
    if (o.minAreaUm2 !== undefined) {
      throw new Error(
        "the slide has no resolution (microns per pixel), so --min-area in µm² cannot be " +
          "converted; give --min-area-px (level-0 pixels²) instead",
      );
    }
    return { px: 0, note: "0 (the slide has no resolution: no region dropped)" };
  }
  const um2 = o.minAreaUm2 ?? DEFAULT_MIN_AREA_UM2;
  const px = um2 / (mpp[0] * mpp[1]);
  return { px, note: `${um2} µm² = ${px.toFixed(1)} px² at ${mpp[0]}×${mpp[1]} µm/px` };
}

/** Traces, filters and simplifies the tumour regions of a probability map. */
export function polygonsFromMap(
  map: ProbabilityMap,
  slide: SlideGeometry,
  o: PolygonExportOptions = {},
): PolygonExport {
  const threshold = o.threshold ?? DEFAULT_THRESHOLD;
  if (!(threshold >= 0 && threshold < 1)) throw new Error(`threshold ${threshold} not in [0, 1)`);
  const min = resolveMinArea(o, slide.mpp);
  const tolerance = o.tolerance ?? map.downsample / 2;
  const regions = tumourRegions(map.data, map.width, map.height, {
    downsample: map.downsample,
    width0: slide.width0,
    height0: slide.height0,
    minArea: min.px,
    tolerance,
    maxPixels: o.maxPixels,
    cut: 255 * threshold,
  });
  let holes = 0, vertices = 0;
  for (const r of regions) {
    holes += r.holes.length;
    vertices += r.outer.length / 2;
    for (const h of r.holes) vertices += h.ring.length / 2;
  }
  return { regions, holes, vertices, minAreaPx: min.px, minAreaNote: min.note, tolerance };
}

/** Writes the XML and/or GeoJSON of an export (each atomically). */
export async function writePolygonExport(
  e: PolygonExport,
  slide: SlideGeometry,
  out: { xml?: string; geojson?: string },
): Promise<void> {
  if (out.xml) await writeFileAtomic(out.xml, regionsToAsapXml(e.regions));
  if (out.geojson) {
    const doc = regionsToGeoJson(e.regions, { mpp: slide.mpp });
    await writeFileAtomic(out.geojson, JSON.stringify(doc) + "\n");
  }
}

/** What `infer --slide` records next to `probability.tif` (`probability.json`). */
export interface ProbabilityInfo {
  /** Level-0 pixels per map pixel. */
  downsample: number;
  width: number;
  height: number;
  slide: string;
  width0: number;
  height0: number;
}

/** The map's downsample: from `probability.json`, else `given`, else from the sizes if they agree. */
export function mapDownsample(
  w: number,
  h: number,
  slide: SlideGeometry,
  info: ProbabilityInfo | null,
  given: number | undefined,
  source: string,
): number {
  const fits = (ds: number) =>
    Math.ceil(slide.width0 / ds - 1e-9) === w && Math.ceil(slide.height0 / ds - 1e-9) === h;
  const ds = given ?? info?.downsample ?? slide.width0 / w;
  if (!(ds > 0) || !fits(ds)) {
    throw new Error(
      `${source}: a ${w}x${h} map does not cover the ${slide.width0}x${slide.height0} slide at ` +
        `downsample ${ds}${
          given === undefined && !info ? " (guessed from the sizes; give --downsample)" : ""
        }`,
    );
  }
  return ds;
}

/**
 * Reads level 0 of a gray probability TIFF (as `infer --slide` writes it) in strips of rows, so
 * only the map itself (one byte per pixel) is held. Refuses a map over `maxPixels` before reading.
 */
export async function readProbabilityTiff(
  path: string,
  maxPixels: number,
  onStrip?: (done: number, total: number) => void,
): Promise<{ data: Uint8Array; width: number; height: number }> {
  const { openSlide } = await import("../wsi/slide.ts");
  const s = await openSlide(path);
  try {
    const { width, height } = s.levels[0];
    if (width * height > maxPixels) {
      throw new Error(
        `${path}: ${width}x${height} map exceeds the limit of ${maxPixels} pixels (--max-pixels)`,
      );
    }
    const data = new Uint8Array(width * height);
    const rows = Math.max(1, Math.floor(2 ** 22 / width));
    for (let y = 0; y < height; y += rows) {
      const n = Math.min(rows, height - y);
      const rgba = await s.readRegion(0, 0, y, width, n);
      for (let i = 0, o = y * width; i < width * n; i++) data[o + i] = rgba[i * 4];
      onStrip?.(Math.min(height, y + n), height);
    }
    return { data, width, height };
  } finally {
    await s.close();
  }
}
