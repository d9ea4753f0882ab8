/**
 * The matmul autotuner's cache and choice (engine/autotune.ts, engine/autotune_search.ts): the
 * cache file round-trips, corrupt and foreign files are ignored with a warning, a candidate whose
 * output differs is rejected however fast, choices are keyed per adapter, a cached choice is used
 * by matmul (and not with ENGINE_AUTOTUNE=off). That every candidate tile gives bitwise the default
 * tile's result is checked with the other matmul tests (tests/ops/matmul_test.ts). No search is
 * timed here: the search runs on fake hooks.
 */
import assert from "node:assert/strict";
import { dispatchStats, F, noGrad } from "../../engine/mod.ts";
import {
  adapterIdentity,
  cachePath,
  defaultTile,
  emptyCache,
  forgetAdapterCache,
  generatorHash,
  readCache,
  shapeClass,
  tunedTile,
  type TuneEntry,
  writeCache,
} from "../../engine/autotune.ts";
import { cpuObjectiveMs, searchTiles } from "../../engine/autotune_search.ts";
import {
  TEXTURE_TILE,
  TEXTURE_TILE_NARROW,
  TEXTURE_TILE_SMALL,
  type TextureTile,
} from "../../kernels/matmul_texture.ts";
import { matmulTileName, TILED_TILE } from "../../kernels/matmul.ts";
import { randTensor, setup } from "../util/gpu.ts";

await setup();

const ID = {
  vendor: "65541",
  architecture: "",
  device: "0",
  description: "llvmpipe (LLVM 15.0.6, 256 bits)",
  runtime: "deno 2.9.6",
};

function entry(tile: TextureTile): TuneEntry {
  return {
    tile,
    name: matmulTileName(tile),
    shape: [1, 1024, 1024, 1024],
    ms: 50,
    defaultMs: 60,
    method: "timestamp, best of 3",
    candidates: [{ name: matmulTileName(tile), ms: 50 }],
    at: "2026-12-03T10:00:00.000Z",
  };
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "autotune-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const WIDE: TextureTile = { wx: 8, wy: 8, tm: 16, tn: 8 };

Deno.test("autotune cache: written then read back unchanged, no warning", async () => {
  await withTempDir(async (dir) => {
    const path = cachePath(ID, dir);
    const c = emptyCache(ID, "g1");
    c.entries[shapeClass("texture", 1024, 1024, 1024)] = entry(WIDE);
    await writeCache(path, c);
    const warnings: string[] = [];
    const back = readCache(path, ID, "g1", (m) => warnings.push(m));
    assert.deepEqual(back, c);
    assert.equal(warnings.length, 0, warnings.join("; "));
    // Absent file: empty, silently.
    assert.deepEqual(readCache(`${dir}/none.json`, ID, "g1", (m) => warnings.push(m)).entries, {});
    assert.equal(warnings.length, 0, warnings.join("; "));
  });
});

Deno.test("autotune cache: corrupt, foreign and stale files are ignored with a warning", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/c.json`;
    const good = emptyCache(ID, "g1");
    good.entries["texture m10 n10 k10 b0"] = entry(WIDE);
    const cases: [string, string, RegExp][] = [
      ["not JSON", '{"format": "epsam', /not JSON/],
      ["another format", JSON.stringify({ ...good, format: "x" }), /field "format"/],
      [
        "another adapter",
        JSON.stringify({
          ...good,
          adapter: { ...ID, description: "llvmpipe (LLVM 15.0.6, 512 bits)" },
        }),
        /written for adapter .*512 bits/,
      ],
      ["another generator", JSON.stringify({ ...good, generator: "g0" }), /kernel generator g0/],
      ["entries not an object", JSON.stringify({ ...good, entries: 3 }), /"entries"/],
    ];
    for (const [what, text, re] of cases) {
      await Deno.writeTextFile(path, text);
      const warnings: string[] = [];
      const c = readCache(path, ID, "g1", (m) => warnings.push(m));
      assert.deepEqual(c.entries, {}, what);
      assert.equal(warnings.length, 1, what);
      assert.match(warnings[0], re, what);
      assert.ok(warnings[0].includes(path), `${what}: the warning names the file`);
    }
    // One bad entry (a tile outside the search space) is dropped, the others kept.
    const mixed = structuredClone(good);
    mixed.entries["texture m11 n11 k11 b0"] = entry({ wx: 8, wy: 8, tm: 5, tn: 4 });
    await Deno.writeTextFile(path, JSON.stringify(mixed));
    const warnings: string[] = [];
    const c = readCache(path, ID, "g1", (m) => warnings.push(m));
    assert.deepEqual(Object.keys(c.entries), ["texture m10 n10 k10 b0"]);
    assert.match(warnings.join("\n"), /"texture m11 n11 k11 b0" has no candidate tile/);
  });
});

Deno.test("autotune cache: keyed per adapter, vector width included", () => {
  const p256 = cachePath(ID, "/d");
  const p512 = cachePath({ ...ID, description: "llvmpipe (LLVM 15.0.6, 512 bits)" }, "/d");
  const other = cachePath({ ...ID, vendor: "4318", description: "NVIDIA H200" }, "/d");
  assert.equal(new Set([p256, p512, other]).size, 3);
  assert.equal(cachePath({ ...ID }, "/d"), p256);
  assert.match(generatorHash(), /^[0-9a-f]{16}$/);
});

Deno.test("autotune search: the fastest matching candidate wins; a differing one is rejected", async () => {
  const def = TEXTURE_TILE;
  const fast: TextureTile = { wx: 8, wy: 8, tm: 8, tn: 8 };
  const wrong: TextureTile = { wx: 8, wy: 8, tm: 4, tn: 4 }; // fastest, but its output differs
  const slow: TextureTile = { wx: 8, wy: 8, tm: 4, tn: 8 };
  const ms: Record<string, number> = {
    [matmulTileName(def)]: 10,
    [matmulTileName(fast)]: 6,
    [matmulTileName(wrong)]: 1,
    [matmulTileName(slow)]: 30,
  };
  const timed: string[] = [];
  const r = await searchTiles(def, [fast, wrong, slow, def], {
    output: (t) =>
      Promise.resolve(
        Float32Array.of(1, 2, matmulTileName(t) === matmulTileName(wrong) ? 3.0000002 : 3),
      ),
    time: (t) => {
      timed.push(matmulTileName(t));
      return Promise.resolve({ ms: ms[matmulTileName(t)], method: "timestamp" });
    },
  }, { rounds: 3 });
  assert.equal(r.name, matmulTileName(fast));
  assert.equal(r.ms, 6);
  assert.equal(r.defaultMs, 10);
  const w = r.candidates.find((c) => c.name === matmulTileName(wrong))!;
  assert.match(w.rejected ?? "", /output differs .*element 2/);
  assert.ok(!timed.includes(matmulTileName(wrong)), "a rejected candidate is never timed");
  // The slow one (3× the best) is dropped after the first round: timed once; the others 3 times
  // (the default twice more, untimed, to size the batches).
  assert.equal(timed.filter((n) => n === matmulTileName(slow)).length, 1);
  assert.equal(timed.filter((n) => n === matmulTileName(fast)).length, 3);
  assert.equal(timed.filter((n) => n === matmulTileName(def)).length, 5);
  assert.equal(r.candidates.length, 4, "the default listed once");
});

Deno.test("autotune search: the default stays unless another tile is clearly faster", async () => {
  const def = TEXTURE_TILE, near: TextureTile = { wx: 8, wy: 8, tm: 8, tn: 8 };
  const r = await searchTiles(def, [near], {
    output: () => Promise.resolve(Float32Array.of(1)),
    time: (t) => Promise.resolve({ ms: t === def ? 10 : 9.9, method: "wall" }),
  });
  assert.equal(r.name, matmulTileName(def));
});

Deno.test("autotune: matmul uses this adapter's cached tile, and not with ENGINE_AUTOTUNE=off", async () => {
  await withTempDir(async (dir) => {
    const prevDir = Deno.env.get("ENGINE_AUTOTUNE_DIR"), prevMode = Deno.env.get("ENGINE_AUTOTUNE");
    Deno.env.set("ENGINE_AUTOTUNE_DIR", dir);
    Deno.env.set("ENGINE_AUTOTUNE", "on");
    forgetAdapterCache();
    try {
      const [M, N, K] = [200, 160, 96];
      const c = emptyCache(adapterIdentity(), generatorHash());
      c.entries[shapeClass("texture", M, N, K)] = entry(WIDE);
      await writeCache(cachePath(adapterIdentity()), c);
      forgetAdapterCache();
      assert.deepEqual(tunedTile("texture", M, N, K), WIDE);
      assert.equal(tunedTile("texture", 2 * M, N, K), null, "another class: untuned");
      const a = randTensor([M, K], 1), b = randTensor([K, N], 2);
      const run = () => {
        const before = dispatchStats().dispatches;
        const y = noGrad(() => F.matmulRaw(a, b, { variant: "texture" }));
        return { y, n: dispatchStats().dispatches - before };
      };
      const tuned = run();
      Deno.env.set("ENGINE_AUTOTUNE", "off");
      assert.equal(tunedTile("texture", M, N, K), null);
      const plain = run();
      // Same result bit for bit whatever the tile (pack A, pack B, product: 3 dispatches each).
      assert.deepEqual(await tuned.y.data(), await plain.y.data());
      assert.equal(tuned.n, 3);
      for (const t of [a, b, tuned.y, plain.y]) t.dispose();
    } finally {
      if (prevDir === undefined) Deno.env.delete("ENGINE_AUTOTUNE_DIR");
      else Deno.env.set("ENGINE_AUTOTUNE_DIR", prevDir);
      Deno.env.set("ENGINE_AUTOTUNE", prevMode ?? "off");
      forgetAdapterCache();
    }
  });
});

Deno.test("autotune cpu objective: CPU time over the threads, times the last wave's imbalance", () => {
  const prev = Deno.env.get("LP_NUM_THREADS");
  Deno.env.set("LP_NUM_THREADS", "2");
  try {
    assert.equal(cpuObjectiveMs(200, 4), 100); // two full waves
    assert.equal(cpuObjectiveMs(200, 3), 200 / 2 * (2 / 1.5)); // one thread idles half the time
    assert.equal(cpuObjectiveMs(200, 1), 200); // one workgroup: one thread does it all
  } finally {
    if (prev === undefined) Deno.env.delete("LP_NUM_THREADS");
    else Deno.env.set("LP_NUM_THREADS", prev);
  }
});

Deno.test("autotune: the untuned rule picks the big, narrow (N = 64) or small texture tile", () => {
  assert.deepEqual(defaultTile("texture", 4096, 4096), TEXTURE_TILE);
  assert.deepEqual(defaultTile("texture", 4096, 64), TEXTURE_TILE_NARROW);
  assert.deepEqual(defaultTile("texture", 4096, 63), TEXTURE_TILE_SMALL);
  assert.deepEqual(defaultTile("texture", 63, 4096), TEXTURE_TILE_SMALL);
  assert.deepEqual(defaultTile("tiled", 5, 5), TILED_TILE);
});
