import assert from "node:assert/strict";
import { writePng } from "../../engine/io/png.ts";
import {
  listSplit,
  loadHostBatch,
  PatchLoader,
  resizeBilinear,
} from "../../pipeline/data/patches.ts";
import { assertClose, setup } from "../util/gpu.ts";

await setup();

/** A split folder with `neg` negatives and `pos` positives (masks for positives), w×h patches. */
async function makeSplit(neg: number, pos: number, w = 5, h = 4): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "patches_test_" });
  await Deno.mkdir(`${dir}/image`);
  await Deno.mkdir(`${dir}/mask`);
  let k = 0;
  for (const [count, label] of [[neg, 0], [pos, 1]]) {
    for (let i = 0; i < count; i++, k++) {
      const name = `s${String(k).padStart(3, "0")}_${label}.png`;
      const data = Uint8Array.from({ length: w * h * 3 }, (_, j) => (k * 37 + j * 11) % 256);
      await writePng(`${dir}/image/${name}`, { data, width: w, height: h, channels: 3 });
      if (label === 1) {
        const m = Uint8Array.from({ length: w * h }, (_, j) => (j % 3 === 0 ? 255 : 0));
        await writePng(`${dir}/mask/${name}`, { data: m, width: w, height: h, channels: 1 });
      }
    }
  }
  return dir;
}

Deno.test("listSplit reads labels from names and pairs masks", async () => {
  const dir = await makeSplit(3, 2);
  const items = await listSplit(dir);
  assert.deepEqual(items.map((i) => [i.id, i.label, i.mask !== null]), [
    ["s000", 0, false],
    ["s001", 0, false],
    ["s002", 0, false],
    ["s003", 1, true],
    ["s004", 1, true],
  ]);
  await Deno.writeFile(`${dir}/image/oops.png`, new Uint8Array(3));
  await assert.rejects(listSplit(dir), /oops\.png: name must end in _0\.png or _1\.png/);
  await assert.rejects(listSplit(`${dir}/nope`), /no image\/ folder/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("host batches are NCHW /255 with 0/1 masks; errors name the file", async () => {
  const dir = await makeSplit(1, 1);
  const items = await listSplit(dir);
  const b = await loadHostBatch(items, { masks: true });
  assert.equal(b.images.length, 2 * 3 * 20);
  // Sample 1 (k = 1), channel 2, pixel 7: interleaved byte index 7*3+2.
  assert.equal(
    b.images[1 * 60 + 2 * 20 + 7],
    Math.fround(((1 * 37 + (7 * 3 + 2) * 11) % 256) / 255),
  );
  assert.deepEqual(Array.from(b.masks!.subarray(0, 20)), new Array(20).fill(0));
  assert.deepEqual(Array.from(b.masks!.subarray(20, 26)), [1, 0, 0, 1, 0, 0]);
  assert.deepEqual(Array.from(b.labels), [0, 1]);

  await writePng(`${dir}/image/s009_0.png`, {
    data: new Uint8Array(6 * 4 * 3),
    width: 6,
    height: 4,
    channels: 3,
  });
  const all = await listSplit(dir);
  await assert.rejects(loadHostBatch(all), /s009_0\.png: image is 6×4, the batch's first is 5×4/);
  const resized = await loadHostBatch(all, { size: 8 });
  assert.equal(resized.images.length, 3 * 3 * 64);
  await Deno.writeFile(`${dir}/image/s005_0.png`, new Uint8Array([1, 2, 3]));
  await assert.rejects(
    loadHostBatch((await listSplit(dir)).filter((i) => i.id === "s005")),
    /s005_0\.png: not a PNG file \(no PNG signature\)/,
  );
  await Deno.remove(`${dir}/mask/s001_1.png`);
  await assert.rejects(
    loadHostBatch(await listSplit(dir), { masks: true, size: 4 }),
    /s001_1\.png: positive patch has no mask/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("bilinear resize: identity, PIL-style antialias taps, constants kept", () => {
  const x = Float32Array.from({ length: 12 }, (_, i) => i);
  assert.deepEqual(Array.from(resizeBilinear(x, 1, 3, 4, 3, 4)), Array.from(x));
  // 1×8 → 1×4 (shrink by 2): taps 1/8, 3/8, 3/8, 1/8 around each output, renormalised at edges.
  const row = Float32Array.from([0, 8, 16, 24, 32, 40, 48, 56]);
  const got = resizeBilinear(row, 1, 1, 8, 1, 4);
  const w = [0.125, 0.375, 0.375, 0.125];
  const ref = [0, 1, 2, 3].map((o) => {
    let a = 0, s = 0;
    for (let t = 0; t < 4; t++) {
      const i = 2 * o - 1 + t;
      if (i < 0 || i > 7) continue;
      a += w[t] * row[i];
      s += w[t];
    }
    return a / s;
  });
  assertClose(got, ref, { atol: 1e-5 });
  // Upscaling 1×2 → 1×4: half-pixel centres, clamped edges.
  assertClose(resizeBilinear(Float32Array.from([0, 1]), 1, 1, 2, 1, 4), [0, 0.25, 0.75, 1], {
    atol: 1e-6,
  });
  const c = resizeBilinear(new Float32Array(3 * 7 * 9).fill(0.4), 3, 7, 9, 4, 5);
  assertClose(c, new Array(60).fill(0.4), { atol: 1e-6 });
});

Deno.test("loader: seeded per-epoch order, balancing, resumable batches on the GPU", async () => {
  const dir = await makeSplit(5, 2);
  const items = await listSplit(dir);
  const L = new PatchLoader(items, { batchSize: 3, seed: 4, masks: true });
  const ids = (e: number) => L.order(e).map((i) => i.id);
  assert.deepEqual(
    ids(0),
    new PatchLoader(items, { batchSize: 3, seed: 4 }).order(0).map((i) => i.id),
  );
  assert.notDeepEqual(ids(0), ids(1));
  assert.deepEqual([...ids(1)].sort(), items.map((i) => i.id));
  assert.equal(L.batchCount(), 3);
  assert.equal(new PatchLoader(items, { batchSize: 3, dropLast: true }).batchCount(), 2);

  const bal = new PatchLoader(items, { batchSize: 4, balance: true, seed: 1 });
  const o = bal.order(2);
  assert.equal(o.length, 10);
  assert.equal(o.filter((i) => i.label === 1).length, 5);

  const seen: string[] = [];
  for await (const b of L.batches(1)) {
    assert.deepEqual(b.images.shape, [b.ids.length, 3, 4, 5]);
    assert.deepEqual(b.masks!.shape, [b.ids.length, 1, 4, 5]);
    seen.push(...b.ids);
    if (b.index === 2) {
      const host = await loadHostBatch(L.order(1).slice(6), { masks: true });
      assert.deepEqual(Array.from(await b.images.data()), Array.from(host.images));
    }
    b.images.dispose();
    b.masks?.dispose();
  }
  assert.deepEqual(seen, ids(1));
  const resumed: string[] = [];
  for await (const b of L.batches(1, 1)) {
    resumed.push(...b.ids);
    b.images.dispose();
    b.masks?.dispose();
  }
  assert.deepEqual(resumed, ids(1).slice(3));
  await Deno.remove(dir, { recursive: true });
});
