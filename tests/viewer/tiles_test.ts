/**
 * The viewer's tile arithmetic and bounded state without a browser or a GPU: deep-zoom geometry
 * and its validation, box averaging against a direct average, a level the file lacks made from the
 * next finer one, the GeoJSON checks, and the open-slide limit.
 */
import assert from "node:assert/strict";
import {
  boxDownsample,
  cutTile,
  deepZoomInfo,
  nearestUpsample,
  tileGeometry,
} from "../../pipeline/viewer/deep_zoom.ts";
import { parseTumourGeoJson } from "../../pipeline/viewer/geojson.ts";
import { TileService } from "../../pipeline/viewer/tiles.ts";
import type { SlideEntry } from "../../pipeline/viewer/catalog.ts";
import { generateSyntheticSlide } from "../../pipeline/wsi/synthetic.ts";

Deno.test("deep zoom: levels, edge tiles and refused addresses", () => {
  const dz = deepZoomInfo(1000, 600, 4);
  assert.equal(dz.maxLevel, 10);
  const g = tileGeometry(dz, 10, 3, 2);
  assert.ok(typeof g !== "string");
  assert.deepEqual(g, { downsample: 1, x0: 768, y0: 512, width: 232, height: 88 });
  const g9 = tileGeometry(dz, 9, 1, 1);
  assert.ok(typeof g9 !== "string");
  assert.deepEqual(g9, { downsample: 2, x0: 512, y0: 512, width: 244, height: 44 });
  for (
    const [l, x, y] of [[11, 0, 0], [10, 4, 0], [10, 0, 3], [-1, 0, 0], [10, 0.5, 0], [10, 1e20, 0]]
  ) {
    assert.equal(typeof tileGeometry(dz, l, x, y), "string", `${l}/${x}/${y}`);
  }
  assert.ok(dz.minLevel > 0 && dz.minLevel <= 10 - 2);
});

Deno.test("deep zoom: box averaging equals the direct mean of each source box", () => {
  const sw = 12, sh = 8;
  const px = Uint8Array.from({ length: sw * sh * 4 }, (_, i) => (i * 37 + (i >> 2) * 11) % 256);
  const out = boxDownsample(px, sw, sh, 3, 2, 4);
  for (let y = 0; y < 2; y++) {
    for (let x = 0; x < 3; x++) {
      for (let c = 0; c < 4; c++) {
        let s = 0;
        for (let dy = 0; dy < 4; dy++) {
          for (let dx = 0; dx < 4; dx++) s += px[((y * 4 + dy) * sw + x * 4 + dx) * 4 + c];
        }
        assert.equal(out[(y * 3 + x) * 4 + c], Math.round(s / 16));
      }
    }
  }
  const up = nearestUpsample(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]), 2, 1, 4, 1, 0.5, 0, 0);
  assert.deepEqual(Array.from(up), [1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8]);
});

Deno.test("deep zoom: a level the file lacks is made from the next finer one", async () => {
  // A two-level pyramid (downsample 1 and 4): a downsample-2 tile averages level 0.
  const W = 64;
  const l0 = Uint8Array.from({ length: W * W * 4 }, (_, i) => (i % 4 === 3 ? 255 : (i * 7) % 251));
  const reads: number[] = [];
  const src = {
    levels: [{ width: W, height: W, downsample: 1 }, { width: 16, height: 16, downsample: 4 }],
    readRegion(level: number, x0: number, y0: number, w: number, h: number) {
      reads.push(level);
      assert.equal(level, 0);
      const out = new Uint8Array(w * h * 4);
      for (let y = 0; y < h; y++) {
        out.set(l0.subarray(((y0 + y) * W + x0) * 4, ((y0 + y) * W + x0 + w) * 4), y * w * 4);
      }
      return Promise.resolve(out);
    },
  };
  const dz = deepZoomInfo(W, W, 4, 16);
  const g = tileGeometry(dz, dz.maxLevel - 1, 1, 0);
  assert.ok(typeof g !== "string");
  const t = await cutTile(src, g);
  assert.deepEqual(reads, [0]);
  assert.equal(t.length, 16 * 16 * 4);
  let s = 0;
  for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) s += l0[(dy * W + 32 + dx) * 4];
  assert.equal(t[0], Math.round(s / 4));
});

Deno.test("GeoJSON: QuPath polygons read; malformed files named with the reason", () => {
  const ring = [[0, 0], [10, 0], [10, 10], [0, 0]];
  const ok = parseTumourGeoJson(JSON.stringify({
    type: "FeatureCollection",
    features: [
      {
        type: "Feature",
        geometry: { type: "MultiPolygon", coordinates: [[ring], [ring]] },
        properties: { classification: { name: "Tumor", color: [200, 0, 0] } },
      },
    ],
  }));
  assert.equal(ok[0].name, "Tumor");
  assert.deepEqual(ok[0].color, [200, 0, 0]);
  assert.equal(ok[0].polygons.length, 2);
  const bad: [unknown, RegExp][] = [
    [{ type: "Feature" }, /FeatureCollection/],
    [{
      type: "FeatureCollection",
      features: [{ type: "Feature", geometry: { type: "Point", coordinates: [1, 2] } }],
    }, /Polygon or MultiPolygon/],
    [{
      type: "FeatureCollection",
      features: [{
        type: "Feature",
        geometry: { type: "Polygon", coordinates: [[[0, 0], [1, 0], [1, 1], [0, 1]]] },
      }],
    }, /not closed/],
    [{
      type: "FeatureCollection",
      features: [{
        type: "Feature",
        geometry: { type: "Polygon", coordinates: [[[0, 0], [1, 0], [0, 0]]] },
      }],
    }, />= 4/],
    [{
      type: "FeatureCollection",
      features: [{
        type: "Feature",
        geometry: { type: "Polygon", coordinates: [[[0, 0], [1, "a"], [1, 1], [0, 0]]] },
      }],
    }, /finite/],
  ];
  for (const [doc, re] of bad) {
    assert.throws(() => parseTumourGeoJson(JSON.stringify(doc), "t.geojson"), re);
  }
  assert.throws(() => parseTumourGeoJson("{", "t.geojson"), /t\.geojson: JSON/);
});

Deno.test({
  name: "tiles: at most maxOpenSlides slides open; every slide still serves",
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const entries = new Map<string, SlideEntry>();
      for (const k of [0, 1, 2]) {
        const path = `${dir}/s${k}.tif`;
        await generateSyntheticSlide({ seed: k, width: 512, height: 512, tumours: 1 }, path, null);
        entries.set(`s${k}`, {
          id: `s${k}`,
          path,
          annotation: null,
          probability: null,
          geojson: null,
          predictionPlaces: [],
          grid: [],
          gridPatch: null,
        });
      }
      const svc = new TileService(entries, { maxOpenSlides: 1, cacheBytes: 0 });
      for (let round = 0; round < 2; round++) {
        for (const id of ["s0", "s1", "s2"]) {
          const t = await svc.tile(id, "slide", 9, 1, 1);
          assert.ok(t && typeof t !== "string" && !t.error, `${id}: ${JSON.stringify(t)}`);
          assert.ok(svc.openCount <= 1);
        }
      }
      assert.equal(await svc.tile("nope", "slide", 9, 0, 0), null);
      assert.equal(svc.cache.bytes, 0);
      await svc.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
