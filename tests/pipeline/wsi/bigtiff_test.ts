/**
 * Large slides: a BigTIFF whose tiles and directories lie past 4 GiB (written as a sparse file,
 * so it takes a few KiB of disk), read back exactly; and the writer's uniform tiles, which
 * must read back as the equivalent filled buffers do.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert";
import { deflateSync } from "node:zlib";
import { openSlide } from "../../../pipeline/wsi/slide.ts";
import { type TileSource, writePyramidTiff } from "../../../pipeline/wsi/tiff_writer.ts";

/** Deterministic RGB of level-0 pixel (x, y). */
const px = (x: number, y: number, c: number) => (x * 7 + y * 13 + c * 85 + ((x * y) >> 3)) & 255;

/** Whether the temp file system keeps holes (else the test would write 4 GiB of zeros). */
async function sparseOk(dir: string): Promise<boolean> {
  const p = `${dir}/probe`;
  const f = await Deno.open(p, { write: true, create: true });
  try {
    await f.seek(64 << 20, Deno.SeekMode.Start);
    await f.write(new Uint8Array([1]));
  } finally {
    f.close();
  }
  const st = await Deno.stat(p);
  await Deno.remove(p);
  return st.blocks !== null && st.blocks * 512 < 1 << 20;
}

interface Field {
  tag: number;
  type: number; // 3 SHORT, 4 LONG, 16 LONG8
  values: number[];
}

/** A little-endian BigTIFF IFD at `at` (values that do not fit in 8 bytes follow the entries). */
function bigIfd(fields: Field[], at: number, next: number): Uint8Array {
  fields.sort((a, b) => a.tag - b.tag);
  const size = (t: number) => (t === 3 ? 2 : t === 4 ? 4 : 8);
  const dir = 8 + fields.length * 20 + 8;
  const extra = fields.reduce((s, f) => {
    const n = f.values.length * size(f.type);
    return s + (n > 8 ? n : 0);
  }, 0);
  const out = new Uint8Array(dir + extra);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, BigInt(fields.length), true);
  let ext = dir;
  fields.forEach((f, i) => {
    const e = 8 + i * 20, n = f.values.length * size(f.type);
    v.setUint16(e, f.tag, true);
    v.setUint16(e + 2, f.type, true);
    v.setBigUint64(e + 4, BigInt(f.values.length), true);
    let o = e + 12;
    if (n > 8) {
      v.setBigUint64(o, BigInt(at + ext), true);
      o = ext;
      ext += n;
    }
    f.values.forEach((x, k) => {
      if (f.type === 3) v.setUint16(o + 2 * k, x, true);
      else if (f.type === 4) v.setUint32(o + 4 * k, x, true);
      else v.setBigUint64(o + 8 * k, BigInt(x), true);
    });
  });
  v.setBigUint64(8 + fields.length * 20, BigInt(next), true);
  return out;
}

Deno.test("BigTIFF with tiles and IFDs past 4 GiB reads back exactly (sparse file)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "bigtiff_" });
  try {
    if (!(await sparseOk(dir))) {
      console.warn("skipped: the temp file system does not keep holes (sparse files)");
      return;
    }
    const T = 64, W = 3 * T - 21, H = 2 * T + 5; // partial edge tiles on both axes
    const across = Math.ceil(W / T), down = Math.ceil(H / T);
    const tile0 = (tx: number, ty: number) => {
      const b = new Uint8Array(T * T * 3);
      for (let y = 0; y < T; y++) {
        for (let x = 0; x < T; x++) {
          for (let c = 0; c < 3; c++) b[(y * T + x) * 3 + c] = px(tx * T + x, ty * T + y, c);
        }
      }
      return b;
    };
    // Level 1, one 128² tile: every other pixel of level 0 (any content will do).
    const W1 = Math.floor(W / 2), H1 = Math.floor(H / 2), T1 = 128;
    const tile1 = () => {
      const b = new Uint8Array(T1 * T1 * 3);
      for (let y = 0; y < H1; y++) {
        for (let x = 0; x < W1; x++) {
          for (let c = 0; c < 3; c++) b[(y * T1 + x) * 3 + c] = px(2 * x, 2 * y, c);
        }
      }
      return b;
    };
    const path = `${dir}/big.tif`;
    const f = await Deno.open(path, { write: true, create: true, truncate: true });
    const offsets: number[] = [], counts: number[] = [];
    let pos = 16;
    const put = async (b: Uint8Array) => {
      await f.seek(pos, Deno.SeekMode.Start);
      let done = 0;
      while (done < b.length) done += await f.write(b.subarray(done));
      const at = pos;
      pos += b.length;
      return at;
    };
    // Tile 0 below 4 GiB, then a hole, then the other tiles, the level-1 tile and the IFDs.
    for (let i = 0; i < across * down; i++) {
      if (i === 1) pos = 2 ** 32 + 4097; // odd, and past 2^32
      const z = new Uint8Array(deflateSync(tile0(i % across, Math.floor(i / across))));
      offsets.push(await put(z));
      counts.push(z.length);
    }
    const raw1 = tile1();
    const off1 = await put(raw1);
    if (pos & 1) pos++;
    const common = (w: number, h: number, comp: number, sub: number, ts: number): Field[] => [
      { tag: 254, type: 4, values: [sub] },
      { tag: 256, type: 4, values: [w] },
      { tag: 257, type: 4, values: [h] },
      { tag: 258, type: 3, values: [8, 8, 8] },
      { tag: 259, type: 3, values: [comp] },
      { tag: 262, type: 3, values: [2] },
      { tag: 277, type: 3, values: [3] },
      { tag: 284, type: 3, values: [1] },
      { tag: 322, type: 4, values: [ts] },
      { tag: 323, type: 4, values: [ts] },
    ];
    const f0 = [
      ...common(W, H, 8, 0, T),
      { tag: 324, type: 16, values: offsets },
      { tag: 325, type: 16, values: counts },
    ];
    const f1 = [
      ...common(W1, H1, 1, 1, T1),
      { tag: 324, type: 16, values: [off1] },
      { tag: 325, type: 16, values: [raw1.length] },
    ];
    const ifd0At = pos;
    const size0 = bigIfd(f0.slice(), 0, 0).length;
    await put(bigIfd(f0, ifd0At, ifd0At + size0));
    await put(bigIfd(f1, ifd0At + size0, 0));
    const header = new Uint8Array(16);
    const hv = new DataView(header.buffer);
    header[0] = header[1] = 0x49;
    hv.setUint16(2, 43, true);
    hv.setUint16(4, 8, true);
    hv.setBigUint64(8, BigInt(ifd0At), true);
    pos = 0;
    await put(header);
    f.close();

    const st = await Deno.stat(path);
    assert(st.size > 2 ** 32, `file size ${st.size}`);
    assert(offsets.slice(1).every((o) => o > 2 ** 32) && ifd0At > 2 ** 32);
    assert(st.blocks! * 512 < 4 << 20, `sparse file uses ${st.blocks! * 512} bytes of disk`);

    const s = await openSlide(path, { cacheBytes: 0 });
    try {
      assertEquals(s.levels.map((l) => [l.width, l.height]), [[W, H], [W1, H1]]);
      await t.step("level 0 regions across the hole", async () => {
        for (
          const [x0, y0, w, h] of [
            [0, 0, W, H], // every tile, both sides of 4 GiB
            [T - 5, T - 7, 20, 30], // four tiles meeting
            [2 * T + 3, 10, W - 2 * T + 10, H], // past the right/bottom edges
            [-8, -4, 16, 8], // before the origin
          ]
        ) {
          const got = await s.readRegion(0, x0, y0, w, h);
          for (let y = 0; y < h; y++) {
            for (let x = 0; x < w; x++) {
              const X = x0 + x, Y = y0 + y, o = (y * w + x) * 4;
              const inside = X >= 0 && Y >= 0 && X < W && Y < H;
              const want = inside ? [px(X, Y, 0), px(X, Y, 1), px(X, Y, 2), 255] : [0, 0, 0, 0];
              const have = Array.from(got.subarray(o, o + 4));
              if (have.some((v, c) => v !== want[c])) {
                assertEquals({ x: X, y: Y, have }, { x: X, y: Y, have: want });
              }
            }
          }
        }
      });
      await t.step("level 1 (uncompressed tile past 4 GiB)", async () => {
        const got = await s.readRegion(1, 0, 0, W1, H1);
        for (let y = 0; y < H1; y++) {
          for (let x = 0; x < W1; x++) {
            const o = (y * W1 + x) * 4;
            assertEquals(Array.from(got.subarray(o, o + 4)), [
              px(2 * x, 2 * y, 0),
              px(2 * x, 2 * y, 1),
              px(2 * x, 2 * y, 2),
              255,
            ]);
          }
        }
      });
    } finally {
      await s.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer: uniform tiles read back as filled buffers do", async () => {
  const dir = await Deno.makeTempDir({ prefix: "uniform_" });
  try {
    const T = 32, W = 5 * T + 7, H = 3 * T + 9;
    const glass = [243, 241, 246], other = [20, 200, 90];
    const full = (c: number[]) => {
      const b = new Uint8Array(T * T * 3);
      for (let i = 0; i < b.length; i++) b[i] = c[i % 3];
      return b;
    };
    const kind = (tx: number, ty: number) =>
      tx === 1 && ty === 1
        ? "pixels"
        : tx === 3 && ty === 0
        ? "other"
        : tx === 4 && ty === 2
        ? "missing"
        : "glass";
    const pixels = (tx: number, ty: number) => {
      const b = new Uint8Array(T * T * 3);
      for (let i = 0; i < b.length; i++) b[i] = px(tx * T + i, ty, i % 3);
      return b;
    };
    const filled: TileSource = (tx, ty) => {
      const k = kind(tx, ty);
      return k === "pixels"
        ? pixels(tx, ty)
        : k === "missing"
        ? null
        : full(k === "other" ? other : glass);
    };
    const uniform: TileSource = (tx, ty) => {
      const k = kind(tx, ty);
      return k === "pixels"
        ? pixels(tx, ty)
        : k === "missing"
        ? null
        : { uniform: k === "other" ? other : glass };
    };
    for (const compression of ["jpeg", "deflate", "none"] as const) {
      const opts = { width: W, height: H, channels: 3 as const, tileSize: T, compression };
      await writePyramidTiff(`${dir}/a.tif`, opts, filled);
      await writePyramidTiff(`${dir}/b.tif`, opts, uniform);
      // Pixels past the right/bottom edges may differ (uniform tiles stay uniform there), so
      // compare what is read back: exact when lossless, and JPEG within its rounding near them.
      const a = await openSlide(`${dir}/a.tif`), b = await openSlide(`${dir}/b.tif`);
      try {
        assertEquals(b.levels, a.levels);
        for (let l = 0; l < a.levels.length; l++) {
          const { width: w, height: h } = a.levels[l];
          const pa = await a.readRegion(l, 0, 0, w, h), pb = await b.readRegion(l, 0, 0, w, h);
          let worst = 0;
          for (let i = 0; i < pa.length; i++) worst = Math.max(worst, Math.abs(pa[i] - pb[i]));
          assert(
            worst <= (compression === "jpeg" ? 12 : 0),
            `${compression} level ${l}: pixels differ by up to ${worst}`,
          );
        }
      } finally {
        await a.close();
        await b.close();
      }
    }
    let threw = false;
    try {
      await writePyramidTiff(
        `${dir}/c.tif`,
        { width: W, height: H, channels: 3, tileSize: T },
        () => ({ uniform: [1, 2] }),
      );
    } catch (e) {
      threw = /uniform colour \[1, 2\]/.test((e as Error).message);
    }
    assert(threw, "a uniform colour of the wrong length is rejected");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
