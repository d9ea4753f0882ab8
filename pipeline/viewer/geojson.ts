/**
 * Reading the predicted tumour polygons (`tumour.geojson`, QuPath's GeoJSON: a FeatureCollection of
 * Polygon / MultiPolygon features in level-0 pixels, `properties.classification {name, color}`).
 * The file is checked before the page gets it: sizes are bounded, every ring must be closed with
 * at least four finite positions; a bad file is an error naming the feature and what was expected.
 */

/** Largest GeoJSON file read (bytes). */
export const MAX_GEOJSON_BYTES = 64 * 2 ** 20;
/** Most positions over all rings. */
const MAX_POSITIONS = 4_000_000;

/** One feature as the page draws it: rings per polygon, flat x,y arrays. */
export interface PredictedRegion {
  name: string;
  color: [number, number, number] | null;
  /** polygons → rings (outer first, then holes) → [x0, y0, x1, y1, ...]. */
  polygons: number[][][];
}

function fail(file: string, where: string, what: string): never {
  throw new Error(`${file}: ${where}: ${what}`);
}

/** Parses and validates QuPath GeoJSON text. */
export function parseTumourGeoJson(text: string, file = "tumour.geojson"): PredictedRegion[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    fail(file, "JSON", (e as Error).message);
  }
  const d = doc as { type?: unknown; features?: unknown };
  if (typeof d !== "object" || d === null || d.type !== "FeatureCollection") {
    fail(file, "root", 'expected {"type": "FeatureCollection", "features": [...]}');
  }
  if (!Array.isArray(d.features)) fail(file, "features", "expected an array");
  let positions = 0;
  const out: PredictedRegion[] = [];
  (d.features as unknown[]).forEach((f, i) => {
    const where = `features[${i}]`;
    const ft = f as { type?: unknown; geometry?: unknown; properties?: unknown };
    if (typeof ft !== "object" || ft === null || ft.type !== "Feature") {
      fail(file, where, 'expected {"type": "Feature", ...}');
    }
    const g = ft.geometry as { type?: unknown; coordinates?: unknown };
    if (typeof g !== "object" || g === null) fail(file, `${where}.geometry`, "missing");
    const polys = g.type === "Polygon"
      ? [g.coordinates]
      : g.type === "MultiPolygon"
      ? g.coordinates
      : fail(
        file,
        `${where}.geometry.type`,
        `expected Polygon or MultiPolygon, got ${String(g.type)}`,
      );
    if (!Array.isArray(polys)) fail(file, `${where}.geometry.coordinates`, "expected an array");
    const polygons: number[][][] = [];
    (polys as unknown[]).forEach((poly, pi) => {
      if (!Array.isArray(poly) || !poly.length) {
        fail(file, `${where} polygon ${pi}`, "expected a non-empty array of rings");
      }
      const rings: number[][] = [];
      poly.forEach((ring: unknown, ri: number) => {
        const w = `${where} polygon ${pi} ring ${ri}`;
        if (!Array.isArray(ring) || ring.length < 4) fail(file, w, "expected >= 4 positions");
        positions += ring.length;
        if (positions > MAX_POSITIONS) fail(file, w, `more than ${MAX_POSITIONS} positions`);
        const flat: number[] = [];
        for (const p of ring) {
          if (!Array.isArray(p) || p.length < 2 || !p.every((v) => Number.isFinite(v))) {
            fail(file, w, "positions must be [x, y] finite numbers");
          }
          flat.push(p[0], p[1]);
        }
        const n = flat.length;
        if (flat[0] !== flat[n - 2] || flat[1] !== flat[n - 1]) {
          fail(file, w, "ring is not closed (first and last positions differ)");
        }
        rings.push(flat);
      });
      polygons.push(rings);
    });
    const props = (ft.properties ?? {}) as { classification?: { name?: unknown; color?: unknown } };
    const cls = props.classification;
    const c = cls?.color;
    const color = Array.isArray(c) && c.length === 3 && c.every((v) => Number.isInteger(v))
      ? c as [number, number, number]
      : null;
    out.push({ name: typeof cls?.name === "string" ? cls.name : "", color, polygons });
  });
  return out;
}
