/**
 * Tumour regions as GeoJSON for QuPath (File > Import objects, or drag and drop).
 *
 * A `FeatureCollection` with one `Feature` per region: a `Polygon` (exterior, then its holes;
 * islands inside holes are regions of their own), properties as QuPath writes them for an
 * annotation: `objectType: "annotation"`, `name`, and `classification: {name: "Tumor", color:
 * [r, g, b]}`. That is QuPath's form since v0.4 (`GsonTools.PathClassTypeAdapter` and
 * `PathObjectTypeAdapters` in qupath-core, `qupath/lib/io/`: the class colour is written as an
 * [r, g, b] array; before v0.4 it was a packed integer `colorRGB`, which v0.4+ still reads). Shape
 * coordinates are full-resolution pixels with the origin at the top-left corner of the image
 * (QuPath documentation, "Exporting annotations").
 *
 * Rings are closed (first vertex repeated) and follow RFC 7946 §3.1.6 orientation on the
 * coordinate values as written: exteriors counter-clockwise (positive shoelace area), holes
 * clockwise. Caveat: image y grows downwards, so drawn on screen an exterior appears clockwise;
 * the right-hand rule is about the numbers, which tools such as shapely and JTS test.
 */
import type { TumourRegion } from "./polygons.ts";

/** QuPath classification written for every region. */
const TUMOUR_CLASS = { name: "Tumor", color: [200, 0, 0] as [number, number, number] };

function closed(ring: ArrayLike<number>): [number, number][] {
  const out: [number, number][] = [];
  for (let k = 0; k < ring.length; k += 2) out.push([ring[k], ring[k + 1]]);
  if (out.length) out.push([out[0][0], out[0][1]]);
  return out;
}

/** The GeoJSON FeatureCollection for `regions` (level-0 coordinates from `tumourRegions`). */
export function regionsToGeoJson(
  regions: TumourRegion[],
  extra: { mpp?: [number, number] | null } = {},
) {
  const mpp = extra.mpp;
  return {
    type: "FeatureCollection",
    features: regions.map((r, i) => ({
      type: "Feature",
      geometry: {
        type: "Polygon",
        coordinates: [closed(r.outer), ...r.holes.map((h) => closed(h.ring))],
      },
      properties: {
        objectType: "annotation",
        name: `Tumor ${i + 1}`,
        classification: { name: TUMOUR_CLASS.name, color: TUMOUR_CLASS.color },
        measurements: mpp
          ? { "Area px^2": r.area, "Area µm^2": r.area * mpp[0] * mpp[1] }
          : { "Area px^2": r.area },
      },
    })),
  };
}
