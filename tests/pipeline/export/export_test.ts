import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import {
  asapXml,
  syntheticLayout,
  tumourPolygons as syntheticTumours,
} from "../../../pipeline/wsi/synthetic.ts";
import {
  type AnnotationSet,
  parseAsapXml,
  type Polygon,
  polygonOf,
  rasterize,
} from "../../../pipeline/wsi/annotations.ts";
import { polygonsFromMap } from "../../../pipeline/export/export.ts";
import { regionsToAsapXml } from "../../../pipeline/export/asap_xml.ts";
import { regionsToGeoJson } from "../../../pipeline/export/geojson.ts";
import { ringArea } from "../../../pipeline/export/simplify.ts";
import { maskIou } from "../../util/masks.ts";

const SIZE = 2048, DS = 2, MW = SIZE / DS, MPP: [number, number] = [0.243, 0.243];

/**
 * A probability map at downsample 2 of a synthetic slide: its tumour polygons (the ground truth,
 * rasterised by the project's parser), with a hole cut into the first tumour, an island left
 * inside that hole, an island-free hole in the second, and single-pixel specks elsewhere.
 */
function syntheticMap(seed: number) {
  const layout = syntheticLayout({ seed, width: SIZE, height: SIZE, tumours: 3 });
  const truth = parseAsapXml(asapXml(syntheticTumours(layout)), "truth.xml");
  const gt = rasterize(truth, MW, MW, DS);
  const prob = new Uint8Array(MW * MW).fill(40);
  for (let i = 0; i < gt.length; i++) if (gt[i]) prob[i] = 200;
  const disk = (cx: number, cy: number, r: number, v: number) => {
    for (let y = Math.floor(cy - r); y <= cy + r; y++) {
      for (let x = Math.floor(cx - r); x <= cx + r; x++) {
        if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) prob[y * MW + x] = v;
      }
    }
  };
  const centre = (p: [number, number][]) => {
    const c = p.reduce(([a, b], [x, y]) => [a + x, b + y], [0, 0]);
    return [c[0] / p.length / DS, c[1] / p.length / DS];
  };
  const [c0, c1] = layout.tumours.map(centre);
  disk(c0[0], c0[1], 18, 10);
  disk(c0[0], c0[1], 7, 250);
  if (c1) disk(c1[0], c1[1], 12, 90);
  for (let k = 0; k < 40; k++) prob[((37 * k + 11) % MW) * MW + ((101 * k) % MW)] = 140; // specks
  return { layout, prob, truth };
}

/** The thresholded map (value > 127) at level 0: the map pixel under each level-0 pixel. */
function level0(mask: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) out[y * SIZE + x] = mask[(y >> 1) * MW + (x >> 1)];
  }
  return out;
}

/** GeoJSON polygons rasterised by the project's rasteriser: holes bridged into the exterior. */
function rasterizeGeoJson(doc: ReturnType<typeof regionsToGeoJson>): Uint8Array {
  const positive: Polygon[] = [];
  for (const f of doc.features) {
    const [ext, ...holes] = f.geometry.coordinates.map((r) => r.slice(0, -1));
    const pts: number[] = [];
    // Corner convention → the parser's pixel-centre samples: shift by −½.
    const put = ([x, y]: [number, number]) => pts.push(x - 0.5, y - 0.5);
    ext.forEach(put);
    for (const h of holes) {
      h.forEach(put);
      put(h[0]);
      put(ext[ext.length - 1]);
    }
    positive.push(polygonOf("", "Tumor", "Polygon", Float64Array.from(pts)));
  }
  const set: AnnotationSet = { source: "geojson", positive, exclusion: [], ignored: [] };
  return rasterize(set, SIZE, SIZE, 1);
}

Deno.test("export round trip: exported XML and GeoJSON rasterise back to the thresholded map", () => {
  const { prob } = syntheticMap(3);
  const mask = new Uint8Array(prob.length);
  for (let i = 0; i < prob.length; i++) mask[i] = prob[i] > 127 ? 1 : 0;
  const want = level0(mask);
  const slide = { width0: SIZE, height0: SIZE, mpp: MPP };
  const map = { data: prob, width: MW, height: MW, downsample: DS };
  for (const tolerance of [0, undefined]) {
    const e = polygonsFromMap(map, slide, { minAreaPx: 0, tolerance });
    assert(e.holes >= 2, `${e.holes} holes`);
    const ann = parseAsapXml(regionsToAsapXml(e.regions), "export.xml");
    assertEquals(ann.positive.length, e.regions.length);
    assertEquals(ann.exclusion.length, e.holes);
    assertEquals(ann.ignored.length, 0);
    const xmlIoU = maskIou(rasterize(ann, SIZE, SIZE, 1), want);
    const gj = regionsToGeoJson(e.regions, { mpp: MPP });
    const gjIoU = maskIou(rasterizeGeoJson(gj), want);
    console.log(
      `  tolerance ${e.tolerance}: ${e.regions.length} regions, ${e.holes} holes, ` +
        `${e.vertices} vertices; IoU XML ${xmlIoU.toFixed(5)}, GeoJSON ${gjIoU.toFixed(5)}`,
    );
    if (tolerance === 0) {
      // Unsimplified, the polygons are the pixel outlines: the round trip is exact.
      assertEquals(xmlIoU, 1);
      assertEquals(gjIoU, 1);
    } else {
      assert(xmlIoU >= 0.98 && gjIoU >= 0.98);
    }
  }
});

Deno.test("export: tiny regions dropped and tiny holes filled by area; ground truth recovered", () => {
  const { prob, truth } = syntheticMap(5);
  const slide = { width0: SIZE, height0: SIZE, mpp: MPP };
  const map = { data: prob, width: MW, height: MW, downsample: DS };
  const all = polygonsFromMap(map, slide, { minAreaPx: 0 });
  const e = polygonsFromMap(map, slide, {}); // default 200 µm² = 3387 px² at 0.243 µm/px
  assert(e.minAreaPx > 3380 && e.minAreaPx < 3390, e.minAreaNote);
  // Specks (4 px²) and the island in the first tumour's hole (radius 7 map px, ~620 px²) are
  // dropped; the second tumour's hole (radius 12, ~1800 px²) is filled; the first one's
  // (radius 18, ~4100 px²) is kept.
  const small = all.regions.filter((r) => r.area < e.minAreaPx).length;
  assert(small >= 30, `${small} small regions`);
  assertEquals(e.regions.length, all.regions.length - small);
  assertEquals([all.holes, e.holes], [2, 1]);
  for (const r of e.regions) assert(r.area >= e.minAreaPx);
  // Every hole left is at least the minimum area.
  for (const r of e.regions) {
    for (const h of r.holes) assert(-ringArea(h.ring) >= e.minAreaPx * 0.9);
  }
  // Against the synthetic slide's own tumour polygons (polygonsFromMap, the ground truth), at
  // level 0: the map is at downsample 2 and has the carved holes, so a looser bound.
  const gt = rasterize(truth, SIZE, SIZE, 1);
  const got = rasterize(parseAsapXml(regionsToAsapXml(e.regions), "e.xml"), SIZE, SIZE, 1);
  const v = maskIou(got, gt);
  console.log(`  IoU vs synthetic ground truth: ${v.toFixed(4)}`);
  assert(v >= 0.9, `${v}`);
  // GeoJSON shape: closed rings, RFC 7946 orientation, QuPath classification.
  const gj = regionsToGeoJson(e.regions, { mpp: MPP });
  assertEquals(gj.type, "FeatureCollection");
  for (const f of gj.features) {
    assertEquals(f.geometry.type, "Polygon");
    assertEquals(f.properties.classification.name, "Tumor");
    assert(
      f.properties.classification.color.every((c) => Number.isInteger(c) && c >= 0 && c < 256),
    );
    f.geometry.coordinates.forEach((ring, k) => {
      assertEquals(ring[0], ring[ring.length - 1]);
      const area = ringArea(ring.slice(0, -1).flat());
      assert(k === 0 ? area > 0 : area < 0, `ring ${k} area ${area}`);
    });
  }
});

Deno.test("export: a slide without resolution refuses µm² and keeps everything by default", () => {
  const prob = new Uint8Array(16 * 16);
  prob[5 * 16 + 5] = 255;
  const map = { data: prob, width: 16, height: 16, downsample: 4 };
  const slide = { width0: 64, height0: 61, mpp: null };
  const e = polygonsFromMap(map, slide);
  assertEquals(e.regions.length, 1);
  // Map corner (5, 5) → level 0 (20, 20); (6, 6) → (24, 24).
  assertEquals(Array.from(e.regions[0].outer), [20, 20, 24, 20, 24, 24, 20, 24]);
  let msg = "";
  try {
    polygonsFromMap(map, slide, { minAreaUm2: 10 });
  } catch (err) {
    msg = (err as Error).message;
  }
  assert(/no resolution.*--min-area-px/.test(msg), msg);
  assertEquals(polygonsFromMap(map, slide, { minAreaPx: 17 }).regions.length, 0);
  // The last row is clipped to the slide's height (61, not 64).
  prob.fill(0);
  prob[15 * 16 + 0] = 255;
  assertEquals(Array.from(polygonsFromMap(map, slide).regions[0].outer), [
    0,
    60,
    4,
    60,
    4,
    61,
    0,
    61,
  ]);
  // The ASAP file puts the same pixel corners at −½ (pixel centres at integers).
  assert(regionsToAsapXml(polygonsFromMap(map, slide).regions).includes('X="-0.5" Y="59.5"'));
});
