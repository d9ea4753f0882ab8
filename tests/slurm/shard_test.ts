/**
 * Shard primitives (K/N parsing, Slurm array environment, stable balanced assignment), shard
 * manifests and their merge (incomplete sets and damaged files refused, naming what is wrong),
 * and `prepare --shard`: two phases over three shards give byte-identical files to one run.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  assignBalanced,
  ownsBatch,
  parseShard,
  shardFromEnv,
  stableHash,
} from "../../pipeline/shard/shard.ts";
import { mergeShards, ShardRecorder } from "../../pipeline/shard/manifest.ts";
import { type ExtractSlide, prepareDataset } from "../../pipeline/wsi/extract.ts";
import type { DatasetRules } from "../../pipeline/wsi/sampling.ts";
import { tissueDiscSlide, tumourQuadXml } from "../util/fake_slide.ts";
import { fileDigests } from "../util/files.ts";

Deno.test("shard: K/N parsing and the Slurm array environment", () => {
  assert.deepEqual(parseShard("2/5"), { index: 2, count: 5 });
  for (const bad of ["5/5", "1/0", "-1/3", "a/b", "1", "1/2/3", ""]) {
    assert.throws(() => parseShard(bad), /K\/N|N must be|K counts from 0/, bad);
  }
  const env = (o: Record<string, string>) => (k: string) => o[k];
  assert.equal(shardFromEnv(env({})), null);
  // --array=1-3: ids 1..3 are shards 0..2.
  assert.deepEqual(
    shardFromEnv(
      env({ SLURM_ARRAY_TASK_ID: "3", SLURM_ARRAY_TASK_COUNT: "3", SLURM_ARRAY_TASK_MIN: "1" }),
    ),
    { index: 2, count: 3 },
  );
  // --array=10-14:2 → ids 10, 12, 14.
  assert.deepEqual(
    shardFromEnv(env({
      SLURM_ARRAY_TASK_ID: "12",
      SLURM_ARRAY_TASK_COUNT: "3",
      SLURM_ARRAY_TASK_MIN: "10",
      SLURM_ARRAY_TASK_STEP: "2",
    })),
    { index: 1, count: 3 },
  );
  // --array=0,5 (not contiguous): task 5 is outside a 2-task count.
  assert.throws(
    () =>
      shardFromEnv(
        env({ SLURM_ARRAY_TASK_ID: "5", SLURM_ARRAY_TASK_COUNT: "2", SLURM_ARRAY_TASK_MIN: "0" }),
      ),
    /outside SLURM_ARRAY_TASK_COUNT/,
  );
});

Deno.test("shard: stable hash and balanced assignment cover every item once, order-free", () => {
  assert.equal(stableHash("tumor_001"), stableHash("tumor_001"));
  assert.equal(stableHash(""), 0x811c9dc5); // FNV-1a offset basis: the function is the standard one
  fc.assert(fc.property(
    fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 40 }),
    fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 40, maxLength: 40 }),
    fc.integer({ min: 1, max: 7 }),
    (ids, ws, n) => {
      const items = ids.map((id, i) => ({ id, weight: ws[i] }));
      const a = assignBalanced(items, n);
      assert.ok(a.every((s) => s >= 0 && s < n));
      // Same assignment whatever the order the items are listed in.
      const rev = [...items].reverse();
      const b = assignBalanced(rev, n).reverse();
      assert.deepEqual(a, b);
      // Greedy bound: the heaviest shard exceeds the mean by at most the largest item.
      const load = new Array(n).fill(0);
      a.forEach((s, i) => (load[s] += items[i].weight));
      const total = load.reduce((x, y) => x + y, 0), max = Math.max(...ws.slice(0, ids.length));
      assert.ok(Math.max(...load) <= total / n + max + 1e-9);
    },
  ));
  const owners = Array.from(
    { length: 10 },
    (_, b) => [0, 1, 2].filter((k) => ownsBatch({ index: k, count: 3 }, b)),
  );
  assert.ok(owners.every((o) => o.length === 1));
});

Deno.test("shard manifests: merge refuses missing shards, duplicates and damaged files", async () => {
  const root = await Deno.makeTempDir({ prefix: "shard_merge_" });
  try {
    const ids = ["a", "b", "c", "d", "e"];
    const write = async (k: number, n: number, items: string[], finish = true) => {
      const rec = await ShardRecorder.start(root, "p", { index: k, count: n }, "key1");
      for (const id of items) {
        await Deno.writeTextFile(`${root}/${id}.txt`, `item ${id}`);
        await rec.add(id, [`${id}.txt`], { v: id.charCodeAt(0) });
      }
      if (finish) await rec.finish();
    };
    await write(0, 3, ["a", "d"]);
    await write(2, 3, ["c"]);
    // Shard 1 "crashes": its files are on disk but it never wrote its manifest.
    await write(1, 3, ["b", "e"], false);
    await assert.rejects(
      mergeShards(root, "p", ids, "key1"),
      (e: Error) => /2 of 5 items missing \(b, e\)/.test(e.message) && /1\/3/.test(e.message),
    );
    await write(1, 3, ["b", "e"]);
    const m = await mergeShards(root, "p", ids, "key1");
    assert.deepEqual([...m.keys()].sort(), ids);
    assert.deepEqual(m.get("e")!.record, { v: 101 });
    await assert.rejects(mergeShards(root, "p", ids, "other"), /another run setup/);
    await assert.rejects(mergeShards(root, "p", ids.slice(0, 4), "key1"), /item e .* not one/);
    await Deno.writeTextFile(`${root}/c.txt`, "item C");
    await assert.rejects(mergeShards(root, "p", ids, "key1"), /c\.txt \(does not match/);
    await Deno.writeTextFile(`${root}/c.txt`, "item c");
    await write(2, 3, ["c", "a"]); // a now in two shards
    await assert.rejects(mergeShards(root, "p", ids, "key1"), /item a is in more than one shard/);
    await assert.rejects(mergeShards(root, "q", ids, "key1"), /no shard has finished/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

// ------------------------------------------------------------------------- prepare --shard

const SIZE = 1024;
/** Slides told apart by their path's length. */
function fakeOpen(path: string): Promise<ExtractSlide> {
  return Promise.resolve(tissueDiscSlide(SIZE, path.length));
}

const RULES: DatasetRules = {
  train: { mode: "binned", binCap: 2, band: { lo: 20, hi: 90, inclusive: false }, negatives: 2 },
  val: { mode: "binned", binCap: 1, band: { lo: 20, hi: 90, inclusive: false }, negatives: 1 },
  test: { mode: "random", count: 2, band: { lo: 20, hi: 90, inclusive: true }, negatives: 1 },
};
const XML = tumourQuadXml(SIZE);

Deno.test("prepare --shard: candidates and patches over 3 shards equal one run, byte for byte", async () => {
  const root = await Deno.makeTempDir({ prefix: "prepare_shard_" });
  try {
    const slides = `${root}/slides`;
    await Deno.mkdir(slides);
    const names = ["s_a", "s_b", "s_c", "s_d", "s_e"];
    // Different file sizes so the size balancing has something to balance.
    for (const [i, n] of names.entries()) {
      await Deno.writeFile(`${slides}/${n}.tif`, new Uint8Array(1000 * (i + 1)));
      await Deno.writeTextFile(`${slides}/${n}.xml`, XML);
    }
    const base = {
      dataset: "synthetic",
      slides,
      annotations: slides,
      patch: 128,
      gridSide: 128,
      rules: RULES,
      open: fakeOpen,
      progress: false,
      log: () => {},
    };
    await prepareDataset({ ...base, out: `${root}/one` });
    const out = `${root}/sharded`;
    for (const phase of ["candidates", "patches"] as const) {
      for (let k = 0; k < 3; k++) {
        await prepareDataset({ ...base, out, shard: { shard: { index: k, count: 3 }, phase } });
      }
    }
    // Before the merge: no manifest.json. A damaged shard file stops the merge by name.
    await assert.rejects(Deno.stat(`${out}/manifest.json`));
    const img = [...(await fileDigests(out)).keys()].find((p) => p.startsWith("train/image/"))!;
    const keep = await Deno.readFile(`${out}/${img}`);
    await Deno.writeFile(`${out}/${img}`, keep.slice(0, 10));
    await assert.rejects(prepareDataset({ ...base, out }), new RegExp(`${img}.*does not match`));
    await Deno.writeFile(`${out}/${img}`, keep);
    const r = await prepareDataset({ ...base, out });
    assert.equal(r.written, 0, "the merge must not redo any shard's work");
    const a = await fileDigests(`${root}/one`), b = await fileDigests(out);
    for (const k of [...b.keys()]) if (k.startsWith("shards/")) b.delete(k);
    assert.deepEqual([...b.keys()], [...a.keys()]);
    for (const [k, v] of a) assert.equal(b.get(k), v, k);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("infer --slides --shard: shards cover every slide once; the merge lists them as one run", async () => {
  const { inferSlides } = await import("../../pipeline/infer/slides.ts");
  const root = await Deno.makeTempDir({ prefix: "infer_shard_" });
  try {
    await Deno.mkdir(`${root}/slides`);
    for (const [i, n] of ["a", "b", "c", "d"].entries()) {
      await Deno.writeFile(`${root}/slides/${n}.tif`, new Uint8Array(100 * (i + 1)));
    }
    const calls: string[] = [];
    const fake = async (path: string, outDir: string) => {
      calls.push(path);
      await Deno.mkdir(outDir, { recursive: true });
      await Deno.writeTextFile(`${outDir}/probability.tif`, `p ${path}`);
      await Deno.writeTextFile(`${outDir}/probability_overlay.png`, `o ${path}`);
      return {
        tiff: `${outDir}/probability.tif`,
        overlay: `${outDir}/probability_overlay.png`,
        tiles: path.length,
        tumourTiles: 1,
      };
    };
    const one = await inferSlides({
      dir: `${root}/slides`,
      out: `${root}/one`,
      shard: null,
      infer: fake,
      log: () => {},
    });
    assert.equal(one.slides, 4);
    const out = `${root}/sharded`;
    await inferSlides({
      dir: `${root}/slides`,
      out,
      shard: { index: 0, count: 3 },
      infer: fake,
      log: () => {},
    });
    await assert.rejects(
      inferSlides({ dir: `${root}/slides`, out, shard: null, infer: fake, log: () => {} }),
      /incomplete set.*shards without a manifest.*1\/3, 2\/3/,
    );
    for (const k of [1, 2]) {
      await inferSlides({
        dir: `${root}/slides`,
        out,
        shard: { index: k, count: 3 },
        infer: fake,
        log: () => {},
      });
    }
    const n = calls.length;
    const merged = await inferSlides({
      dir: `${root}/slides`,
      out,
      shard: null,
      infer: fake,
      log: () => {},
    });
    assert.equal(calls.length, n, "the merge recomputed a slide");
    assert.equal(merged.slides, 4);
    assert.equal(
      await Deno.readTextFile(`${out}/slides.json`),
      await Deno.readTextFile(`${root}/one/slides.json`),
    );
    assert.equal(calls.length, 8); // 4 unsharded + 4 over the shards: each slide once per run
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
