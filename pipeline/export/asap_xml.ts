/**
 * Tumour regions as ASAP annotation XML, in the layout of the Camelyon files that
 * `pipeline/wsi/annotations.ts` reads (`ASAP_Annotations` / `Annotations` / `Annotation
 * Type="Polygon"` / `Coordinates` / `Coordinate Order X Y`, then `AnnotationGroups`).
 *
 * Region exteriors go to group `Tumor`; holes go to group `Exclusion`, which ASAP's mask
 * conversion and the project's parser clear after all tumour polygons are filled (as Camelyon's
 * `_2`). A tumour island inside a hole would be cleared too, so such a hole's polygon is cut around
 * each island: a zero-width bridge runs from the hole's nearest vertex to the island, round the
 * island's exterior (the opposite way) and back. Under the non-zero winding rule (ASAP's and the
 * parser's) the bridge's two passes cancel and the island's inside has winding 0, so the exclusion
 * covers only the hole's own background.
 *
 * Coordinates: ASAP's mask conversion (and the parser) counts level-0 pixel (x, y) as tumour when
 * the point (x, y) is inside the polygon, i.e. it puts pixel centres at integers, while
 * `polygons.ts` puts them at (x + ½, y + ½). Every vertex is therefore written shifted by −½, so
 * the mask ASAP makes from the file has exactly the map's pixels (before simplification).
 */
import type { TumourRegion } from "./polygons.ts";

/** Group names written; the parser treats `Tumor` as tumour and `Exclusion` as holes. */
const TUMOUR_GROUP = "Tumor";
const EXCLUSION_GROUP = "Exclusion";

const fmt = (v: number) => (Math.round(v * 1e4) / 1e4).toString();

function annotation(name: string, group: string, color: string, ring: ArrayLike<number>): string {
  const c: string[] = [];
  for (let k = 0; k < ring.length; k += 2) {
    c.push(
      `\t\t\t\t<Coordinate Order="${k / 2}" X="${fmt(ring[k] - 0.5)}" Y="${
        fmt(ring[k + 1] - 0.5)
      }" />\n`,
    );
  }
  return `\t\t<Annotation Name="${name}" Type="Polygon" PartOfGroup="${group}" Color="${color}">\n` +
    `\t\t\t<Coordinates>\n${c.join("")}\t\t\t</Coordinates>\n\t\t</Annotation>\n`;
}

/** A hole ring with its islands' exteriors cut out by bridges (see the module comment). */
function holeWithIslands(hole: ArrayLike<number>, islands: ArrayLike<number>[]): number[] {
  if (!islands.length) return Array.from(hole);
  const m = hole.length / 2;
  const at: ArrayLike<number>[][] = Array.from({ length: m }, () => []);
  for (const isl of islands) {
    let best = 0, bd = Infinity;
    for (let k = 0; k < m; k++) {
      const d = (hole[2 * k] - isl[0]) ** 2 + (hole[2 * k + 1] - isl[1]) ** 2;
      if (d < bd) {
        bd = d;
        best = k;
      }
    }
    at[best].push(isl);
  }
  const out: number[] = [];
  for (let k = 0; k < m; k++) {
    const hx = hole[2 * k], hy = hole[2 * k + 1];
    out.push(hx, hy);
    for (const isl of at[k]) {
      // The island's exterior is positive and the hole negative: walking the island in its own
      // order inside the hole's ring gives it the opposite winding, as required.
      for (let j = 0; j < isl.length; j++) out.push(isl[j]);
      out.push(isl[0], isl[1], hx, hy);
    }
  }
  return out;
}

/** The ASAP XML document for `regions` (level-0 coordinates from `tumourRegions`). */
export function regionsToAsapXml(regions: TumourRegion[]): string {
  const parts: string[] = [];
  regions.forEach((r, i) => {
    parts.push(annotation(`Tumor ${i + 1}`, TUMOUR_GROUP, "#FF0000", r.outer));
    r.holes.forEach((h, j) => {
      const ring = holeWithIslands(h.ring, h.islands.map((k) => regions[k].outer));
      parts.push(annotation(`Tumor ${i + 1} hole ${j + 1}`, EXCLUSION_GROUP, "#00FF00", ring));
    });
  });
  return `<?xml version="1.0"?>\n<ASAP_Annotations>\n\t<Annotations>\n${parts.join("")}` +
    `\t</Annotations>\n\t<AnnotationGroups>\n` +
    `\t\t<Group Name="${TUMOUR_GROUP}" PartOfGroup="None" Color="#FF0000">\n` +
    `\t\t\t<Attributes />\n\t\t</Group>\n` +
    `\t\t<Group Name="${EXCLUSION_GROUP}" PartOfGroup="None" Color="#00FF00">\n` +
    `\t\t\t<Attributes />\n\t\t</Group>\n\t</AnnotationGroups>\n</ASAP_Annotations>\n`;
}
