/** Slide reader vs OpenSlide fixtures, TIFF writer round trips, corrupt-file fuzzing. */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert";
import fc from "fast-check";
import { fromFile } from "geotiff";
import { fixturePath, haveFixtures } from "../../fixtures.ts";
import { readPng } from "../../../engine/io/png.ts";
import { openSlide } from "../../../pipeline/wsi/slide.ts";
import { type TileSource, writePyramidTiff } from "../../../pipeline/wsi/tiff_writer.ts";
import { TileCache } from "../../../pipeline/wsi/tile_cache.ts";

const fixtures = haveFixtures();
const tmp = await Deno.makeTempDir({ prefix: "wsi_slide_test_" });
addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

interface Ref {
  file: string;
  level: number;
  x_level0: number;
  y_level0: number;
  width: number;
  height: number;
  png: string;
  level_dimensions: [number, number];
}

/** Per-channel max and mean absolute difference of two RGBA buffers. */
function diff(a: Uint8Array, b: Uint8Array) {
  const max = [0, 0, 0, 0], sum = [0, 0, 0, 0];
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > max[i & 3]) max[i & 3] = d;
    sum[i & 3] += d;
  }
  return { max, mean: sum.map((s) => s / (a.length / 4)) };
}

Deno.test({
  name: "readRegion agrees with OpenSlide 3.4.1 on every fixture region (RGBA, alpha too)",
  ignore: !fixtures,
  async fn() {
    const refs: Ref[] = JSON.parse(await Deno.readTextFile(fixturePath("wsi", "refs.json")))
      .regions;
    assert(refs.length >= 5);
    for (const r of refs) {
      const s = await openSlide(fixturePath("wsi", r.file));
      try {
        assertEquals([s.levels[r.level].width, s.levels[r.level].height], r.level_dimensions);
        const got = await s.readRegion(r.level, r.x_level0, r.y_level0, r.width, r.height);
        const ref = await readPng(fixturePath("wsi", r.png));
        assertEquals(ref.channels, 4);
        const d = diff(got, ref.data);
        // Measured bound: exact on LZW, and exact on JPEG too, because our JPEG decoder
        // reproduces libjpeg's islow IDCT + fancy upsampling + YCbCr tables
        // (max abs 0, mean abs 0 per channel on all three JPEG regions).
        assertEquals(d.max, [0, 0, 0, 0], `${r.png}: max abs diff ${d.max}, mean ${d.mean}`);
      } finally {
        await s.close();
      }
    }
  },
});

Deno.test({
  name: "info of the fixtures: levels, downsamples, tiles, mpp 0.243 from px/cm tags",
  ignore: !fixtures,
  async fn() {
    const cases = [
      ["slide_jpeg_t256.tif", 4096, 5, 256, "jpeg"],
      ["slide_lzw_t512.tif", 2048, 3, 512, "lzw"],
      ["ihc_tissue_jpeg_t256.tif", 4096, 5, 256, "jpeg"],
    ] as const;
    for (const [file, size, n, tile, comp] of cases) {
      const s = await openSlide(fixturePath("wsi", file));
      try {
        assertEquals(s.compression, comp);
        assertEquals(s.levels.length, n);
        s.levels.forEach((l, k) => {
          assertEquals([l.width, l.height], [size >> k, size >> k]);
          assertEquals(l.downsample, 2 ** k);
          assertEquals([l.tileWidth, l.tileHeight], [tile, tile]);
        });
        const mpp = s.mpp ?? [NaN, NaN];
        assert(Math.abs(mpp[0] - 0.243) < 1e-6 && Math.abs(mpp[1] - 0.243) < 1e-6, `${mpp}`);
      } finally {
        await s.close();
      }
    }
  },
});

Deno.test({
  name: "IHC fixture opens and reads real-looking content; outside the slide is transparent",
  ignore: !fixtures,
  async fn() {
    const s = await openSlide(fixturePath("wsi", "ihc_tissue_jpeg_t256.tif"), {
      cacheBytes: 1 << 20,
    });
    try {
      const r = await s.readRegion(0, 2000, 2000, 256, 256);
      let lo = 255, hi = 0;
      for (let i = 0; i < r.length; i += 4) {
        lo = Math.min(lo, r[i + 1]);
        hi = Math.max(hi, r[i + 1]);
        assertEquals(r[i + 3], 255);
      }
      assert(hi - lo > 50, `flat region: ${lo}..${hi}`);
      const edge = await s.readRegion(4, 4096 - 64, -32, 8, 8); // level 4 is 256x256
      for (let y = 0; y < 8; y++) {
        for (let x = 0; x < 8; x++) {
          const a = edge[(y * 8 + x) * 4 + 3];
          assertEquals(a, y >= 2 && x < 4 ? 255 : 0, `alpha at ${x},${y}`);
        }
      }
      const stats = s.cacheStats();
      assert(stats.bytes <= 1 << 20);
    } finally {
      await s.close();
    }
  },
});

Deno.test("TileCache evicts least recently used entries by bytes", () => {
  const c = new TileCache<Uint8Array>(10);
  c.set("a", new Uint8Array(4));
  c.set("b", new Uint8Array(4));
  c.get("a");
  c.set("c", new Uint8Array(4));
  assertEquals([c.get("a")?.length, c.get("b"), c.get("c")?.length], [4, undefined, 4]);
  c.set("huge", new Uint8Array(11));
  assertEquals(c.get("huge"), undefined);
  assert(c.bytes <= 10);
});

/** A smooth synthetic RGB (or gray) image so JPEG error stays small. */
const smooth = (x: number, y: number, c: number) =>
  Math.round(128 + 60 * Math.sin(x / 37 + c) * Math.cos(y / 23 - c));

function source(T: number, ch: number, sparse?: (tx: number, ty: number) => boolean): TileSource {
  return (tx, ty) => {
    if (sparse?.(tx, ty)) return null;
    const t = new Uint8Array(T * T * ch);
    for (let y = 0; y < T; y++) {
      for (let x = 0; x < T; x++) {
        for (let c = 0; c < ch; c++) t[(y * T + x) * ch + c] = smooth(tx * T + x, ty * T + y, c);
      }
    }
    return t;
  };
}

/** Checks a written slide against `smooth` at level 0 and against a 2x2 box average at level 1. */
async function checkRoundTrip(path: string, W: number, H: number, ch: number, tol: number) {
  const s = await openSlide(path);
  try {
    assertEquals(s.levels.map((l) => [l.width, l.height]).slice(0, 2), [[W, H], [W >> 1, H >> 1]]);
    assert(s.mpp && Math.abs(s.mpp[0] - 0.5) < 1e-6);
    const r = await s.readRegion(0, -5, -5, W + 10, H + 10);
    let max = 0, sum = 0;
    for (let y = 0; y < H + 10; y++) {
      for (let x = 0; x < W + 10; x++) {
        const i = (y * (W + 10) + x) * 4, gx = x - 5, gy = y - 5;
        const inside = gx >= 0 && gy >= 0 && gx < W && gy < H;
        assertEquals(r[i + 3], inside ? 255 : 0);
        if (!inside) continue;
        for (let c = 0; c < 3; c++) {
          const d = Math.abs(r[i + c] - smooth(gx, gy, ch === 1 ? 0 : c));
          max = Math.max(max, d);
          sum += d;
        }
      }
    }
    assert(max <= tol, `level 0 max abs diff ${max} > ${tol}`);
    if (tol === 0) {
      const l1 = await s.readRegion(1, 0, 0, W >> 1, H >> 1);
      for (let y = 0; y < H >> 1; y++) {
        for (let x = 0; x < W >> 1; x++) {
          for (let c = 0; c < 3; c++) {
            const cc = ch === 1 ? 0 : c;
            const want = (smooth(2 * x, 2 * y, cc) + smooth(2 * x + 1, 2 * y, cc) +
              smooth(2 * x, 2 * y + 1, cc) + smooth(2 * x + 1, 2 * y + 1, cc) + 2) >> 2;
            assertEquals(l1[(y * (W >> 1) + x) * 4 + c], want);
          }
        }
      }
    }
    return { max, mean: sum / (W * H * 3) };
  } finally {
    await s.close();
  }
}

Deno.test("writer -> reader round trip: none/deflate exact, JPEG close, gray, BigTIFF", async () => {
  const W = 600, H = 420, T = 128;
  for (const compression of ["none", "deflate", "jpeg"] as const) {
    for (const bigTiff of [false, true]) {
      const path = `${tmp}/rt_${compression}_${bigTiff}.tif`;
      const info = await writePyramidTiff(
        path,
        { width: W, height: H, channels: 3, compression, tileSize: T, mpp: 0.5, bigTiff },
        source(T, 3),
      );
      assertEquals(info.bigTiff, bigTiff);
      const head = (await Deno.readFile(path)).subarray(0, 4);
      assertEquals(head[2], bigTiff ? 43 : 42);
      assertEquals(info.levels.length, 4); // 600x420 .. 75x52
      const { mean } = await checkRoundTrip(path, W, H, 3, compression === "jpeg" ? 8 : 0);
      if (compression === "jpeg") assert(mean < 1.5, `JPEG mean abs diff ${mean}`);
    }
  }
  const gray = `${tmp}/gray.tif`;
  await writePyramidTiff(
    gray,
    { width: W, height: H, channels: 1, compression: "deflate", tileSize: T, mpp: 0.5 },
    source(T, 1),
  );
  await checkRoundTrip(gray, W, H, 1, 0);
  await rejects(
    writePyramidTiff(`${tmp}/bad.tif`, { width: 10, height: 10, channels: 1 }, source(16, 1)),
    /JPEG needs 3 channels/,
  );
});

Deno.test("geotiff.js (fromFile) decodes our YCbCr JPEG tiles the same way", async () => {
  const W = 300, H = 200, T = 128, path = `${tmp}/gt.tif`;
  await writePyramidTiff(
    path,
    { width: W, height: H, channels: 3, compression: "jpeg", tileSize: T, mpp: 0.5 },
    source(T, 3),
  );
  const tiff = await fromFile(path);
  try {
    const img = await tiff.getImage(0);
    const rgb = await img.readRGB({ interleave: true }) as unknown as Uint8Array;
    let max = 0;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let c = 0; c < 3; c++) {
          max = Math.max(max, Math.abs(rgb[(y * W + x) * 3 + c] - smooth(x, y, c)));
        }
      }
    }
    assert(max <= 8, `geotiff.js max abs diff ${max}`);
  } finally {
    await tiff.close();
  }
});

Deno.test("sparse tiles (TileByteCounts 0) read as transparent; readRegionRGB gives white", async () => {
  const W = 512, H = 512, T = 128, path = `${tmp}/sparse.tif`;
  const missing = (tx: number, ty: number) => tx === 1 && ty <= 1;
  await writePyramidTiff(
    path,
    { width: W, height: H, channels: 3, compression: "deflate", tileSize: T, mpp: 0.5 },
    source(T, 3, missing),
  );
  const s = await openSlide(path);
  try {
    const r = await s.readRegion(0, 0, 0, W, H);
    const rgb = await s.readRegionRGB(0, 0, 0, W, H);
    for (const [x, y] of [[130, 5], [200, 250], [10, 10], [300, 300]]) {
      const i = y * W + x, miss = missing(Math.floor(x / T), Math.floor(y / T));
      assertEquals(r[i * 4 + 3], miss ? 0 : 255);
      if (miss) assertEquals([...rgb.subarray(i * 3, i * 3 + 3)], [255, 255, 255]);
      else assertEquals(rgb[i * 3], smooth(x, y, 0));
    }
  } finally {
    await s.close();
  }
});

/** Offset of the first IFD's entry for `tag` in a little-endian classic TIFF. */
function findEntry(b: Uint8Array, tag: number): number {
  const v = new DataView(b.buffer);
  const ifd = v.getUint32(4, true);
  const n = v.getUint16(ifd, true);
  for (let i = 0; i < n; i++) {
    if (v.getUint16(ifd + 2 + 12 * i, true) === tag) return ifd + 2 + 12 * i;
  }
  throw new Error(`tag ${tag} not found`);
}

Deno.test("clear errors: JPEG 2000, missing file, truncated file", async () => {
  const path = `${tmp}/small.tif`;
  await writePyramidTiff(
    path,
    { width: 64, height: 48, channels: 3, compression: "deflate", tileSize: 16, mpp: 0.5 },
    source(16, 3),
  );
  const bytes = await Deno.readFile(path);
  const j2k = bytes.slice();
  new DataView(j2k.buffer).setUint16(findEntry(j2k, 259) + 8, 33003, true);
  await Deno.writeFile(`${tmp}/j2k.tif`, j2k);
  await rejects(openSlide(`${tmp}/j2k.tif`), (e: Error) => {
    assert(e.message.includes(`${tmp}/j2k.tif`) && /33003/.test(e.message), e.message);
    assert(/jpeg2000/.test(e.message), e.message);
    return true;
  });
  await rejects(openSlide(`${tmp}/nope.tif`), /nope\.tif: cannot open/);
  await Deno.writeFile(`${tmp}/trunc.tif`, bytes.subarray(0, bytes.length - 40));
  await rejects(openSlide(`${tmp}/trunc.tif`), /trunc\.tif: truncated or corrupt/);
});

Deno.test("fuzz: mutated or truncated TIFF bytes give an Error naming the file, never a hang", async () => {
  const goods: Uint8Array[] = [];
  for (const compression of ["deflate", "jpeg"] as const) {
    const path = `${tmp}/fuzz_src_${compression}.tif`;
    await writePyramidTiff(
      path,
      { width: 64, height: 48, channels: 3, compression, tileSize: 16, mpp: 0.5 },
      source(16, 3),
    );
    goods.push(await Deno.readFile(path));
  }
  const target = `${tmp}/fuzz.tif`;
  const started = performance.now();
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 6 }),
      fc.option(fc.nat(), { nil: undefined }),
      fc.boolean(),
      fc.nat(1),
      async (muts, cut, nearDir, which) => {
        const b = goods[which].slice();
        // Bias half the mutations into the directory area at the end, where structure lives.
        const dirStart = new DataView(b.buffer).getUint32(4, true);
        for (const [pos, val] of muts) {
          const p = nearDir ? dirStart + (pos % (b.length - dirStart)) : pos % b.length;
          b[p] = val;
        }
        const data = cut === undefined ? b : b.subarray(0, cut % b.length);
        await Deno.writeFile(target, data);
        const work = (async () => {
          const s = await openSlide(target);
          try {
            await s.readRegion(0, 0, 0, 64, 48);
            for (let l = 1; l < s.levels.length; l++) await s.readRegion(l, 0, 0, 16, 16);
          } finally {
            await s.close();
          }
        })();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<"timeout">((
          res,
        ) => (timer = setTimeout(() => res("timeout"), 5000)));
        try {
          const r = await Promise.race([work.then(() => "ok" as const), timeout]);
          assert(r === "ok", "reader hung on a corrupt file");
        } catch (e) {
          if (!(e instanceof Error)) throw new Error(`threw a non-Error: ${e}`);
          assert(e.message.includes(target), `error does not name the file: ${e.message}`);
        } finally {
          clearTimeout(timer);
        }
      },
    ),
    { numRuns: 300, interruptAfterTimeLimit: 20_000, seed: 42 },
  );
  assert(performance.now() - started < 30_000);
});
