/**
 * Hostile checkpoints (issue 13, items 1, 2, 8): each is built here in code, loaded in a child
 * process bounded in time and memory, and must end with the reader's own error naming the file
 * and the cause (or, where legal, load within a small memory bound).
 */
import assert from "node:assert/strict";
import { runChild } from "../util/child.ts";
import {
  concat,
  emitTensor,
  le,
  makeZip,
  Pickler,
  type TensorSpec,
  torchPickle,
  type Tree,
  zerosCrc,
  zerosDeflated,
} from "../util/torch_archive.ts";

const CHILD = new URL("../util/load_child.ts", import.meta.url).pathname;

interface Loaded {
  ok: boolean;
  name?: string;
  message?: string;
  ms: number;
  peakRssMiB: number;
}

/** Loads `bytes` (written to a temp file) with `reader` in a bounded child. */
async function loadBounded(
  bytes: Uint8Array,
  reader: string,
  bounds: { ms: number; rssMiB: number; env?: Record<string, string> },
  ...opts: string[]
): Promise<Loaded & { path: string }> {
  const path = await Deno.makeTempFile({ suffix: reader === "unpickle" ? ".pkl" : ".pth" });
  try {
    await Deno.writeFile(path, bytes);
    // The child is killed at twice the asserted bounds: a regression fails, never hangs CI.
    const r = await runChild([CHILD, reader, path, ...opts], {
      timeoutS: (2 * bounds.ms + 5000) / 1000,
      memLimitMiB: 2 * bounds.rssMiB,
      env: bounds.env,
    });
    const ms = r.seconds * 1000;
    assert.ok(!r.timedOut, `${reader} child killed after ${ms.toFixed(0)} ms`);
    assert.ok(r.peakMiB <= 2 * bounds.rssMiB, `${reader} child killed at ${r.peakMiB} MiB`);
    assert.equal(r.code, 0, `child failed:\n${r.stderr}`);
    const line = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    const peak = Math.max(r.peakMiB, line.hwmMiB);
    assert.ok(ms < bounds.ms, `took ${ms.toFixed(0)} ms, bound ${bounds.ms}`);
    assert.ok(peak < bounds.rssMiB, `peak RSS ${peak.toFixed(0)} MiB, bound ${bounds.rssMiB}`);
    return { ...line, ms, peakRssMiB: peak, path };
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

function expectRefused(r: Loaded & { path: string }, cause: RegExp): void {
  assert.equal(r.ok, false, "the hostile file loaded");
  assert.equal(r.name, "InputError", `not the reader's own error: ${r.name}: ${r.message}`);
  assert.ok(r.message!.includes(r.path), `message does not name the file: ${r.message}`);
  assert.match(r.message!, cause);
}

const f32 = (key: string, n: number, extra: Partial<TensorSpec> = {}): TensorSpec => ({
  storage: "FloatStorage",
  key,
  numel: n,
  offset: 0,
  shape: [n],
  stride: [1],
  ...extra,
});

/** An archive: `archive/data.pkl` plus storages. */
function archive(pkl: Uint8Array, storages: Record<string, Uint8Array>) {
  return makeZip([
    { name: "archive/data.pkl", data: pkl },
    ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data })),
  ]);
}

// Generous bounds: the fixed readers finish in well under a second and ~100 MiB on an idle
// machine; the unfixed ones hung for ever or allocated gigabytes.
const BOUNDS = { ms: 15_000, rssMiB: 400 };

Deno.test("hostile .pth: dicts sharing their children 60 deep (a DAG) are refused, not walked 2^60 times", async () => {
  const p = new Pickler().raw(0x80, 2);
  emitTensor(p, f32("0", 3));
  p.raw(0x72, ...le(0, 4), 0x30); // LONG_BINPUT 0, POP
  const levels = 60;
  for (let i = 1; i <= levels; i++) {
    p.raw(0x7d, 0x28).str("a").raw(0x6a, ...le(i - 1, 4)).str("b").raw(0x6a, ...le(i - 1, 4));
    p.raw(0x75, 0x72, ...le(i, 4)); // SETITEMS, LONG_BINPUT i
    if (i < levels) p.raw(0x30); // POP: only the memo keeps it
  }
  const pkl = concat([p.bytes(), new Uint8Array([0x2e])]);
  assert.ok(pkl.length < 2048, `pickle is ${pkl.length} bytes`);
  const r = await loadBounded(await archive(pkl, { "0": new Uint8Array(12) }), "pth", BOUNDS);
  expectRefused(
    r,
    /not a state dict: (flattening it visits|its \d+ flattened keys add up to) more than/,
  );
});

Deno.test("hostile .pth: 40 stride-0 views of 2^23 float64 are refused by the total, not per view", async () => {
  const views = new Map<string, Tree>();
  for (let i = 0; i < 40; i++) {
    views.set(`v${i}`, {
      storage: "DoubleStorage",
      key: "0",
      numel: 1,
      offset: 0,
      shape: [2 ** 23],
      stride: [0],
    });
  }
  const bytes = await archive(torchPickle(views), { "0": new Uint8Array(8) });
  assert.ok(bytes.length < 16384);
  const r = await loadBounded(bytes, "pth", BOUNDS);
  expectRefused(r, /refusing to load: tensor "v\d+" .*over its limit of/);
  // Each view alone (64 MiB) is under the limit: the total refused it.
  assert.doesNotMatch(r.message!, /"v[0-2]"/);
});

/** A 12 KB tensor whose storage entry is deflated zeros of `size` bytes. */
async function bombArchive(size: number, crc: number): Promise<Uint8Array> {
  const n = 3072;
  return await makeZip([
    { name: "archive/data.pkl", data: torchPickle(new Map([["w", f32("0", n)]])) },
    {
      name: "archive/data/0",
      data: new Uint8Array(0),
      raw: { body: zerosDeflated(size), method: 8, size, crc },
    },
  ]);
}

Deno.test("hostile .pth: a 1 GiB deflated entry behind a 12 KB tensor is refused before inflating", async () => {
  const bytes = await bombArchive(2 ** 30, 0);
  assert.ok(bytes.length < 8 * 2 ** 20, `archive is ${bytes.length} bytes`);
  const r = await loadBounded(bytes, "pth", BOUNDS);
  expectRefused(r, /storage 0 \(entry archive\/data\/0\) needs 1024\.0 MiB.*over its limit/);
  // Without the CRC only the 12 KB the storage needs are inflated: it loads, in little memory.
  const quick = await loadBounded(bytes, "pth", { ms: 15_000, rssMiB: 200 }, "verifyCrc=false");
  assert.equal(quick.ok, true, quick.message);
});

Deno.test("hostile .pth: a 128 MiB deflated entry behind a 12 KB tensor streams through the CRC", async () => {
  const size = 128 * 2 ** 20;
  const r = await loadBounded(await bombArchive(size, zerosCrc(size)), "pth", {
    ms: 20_000,
    rssMiB: 120, // the entry is never held: the loader's baseline (~40 MiB) plus chunks
  });
  assert.equal(r.ok, true, r.message);
  // A wrong CRC is still caught, although the entry is read only through it.
  const bad = await loadBounded(await bombArchive(size, 1234), "pth", { ms: 20_000, rssMiB: 120 });
  expectRefused(bad, /CRC-32 mismatch/);
});

Deno.test("hostile pickle: OrderedDict copies of one memoised dict are refused by the object budget", async () => {
  const p = new Pickler().raw(0x80, 2).raw(0x7d, 0x28);
  for (let i = 0; i < 50_000; i++) p.int(i).raw(0x4e); // {i: None}
  p.raw(0x75, 0x72, ...le(0, 4), 0x30); // SETITEMS, LONG_BINPUT 0, POP
  p.raw(0x28); // MARK: the copies go in a list
  for (let i = 0; i < 100; i++) {
    p.global("collections", "OrderedDict").raw(0x6a, ...le(0, 4), 0x85, 0x52); // OrderedDict(m)
  }
  p.raw(0x6c, 0x2e); // LIST, STOP
  const r = await loadBounded(p.bytes(), "unpickle", BOUNDS);
  expectRefused(r, /builds more than \d+ objects/);
});

/** A safetensors file from a header object, with the length field honest unless given. */
function safetensorsFile(header: unknown, dataLen: number, lengthField?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

Deno.test("hostile safetensors: lying header length, overlapping and out-of-file offsets, huge shapes", async () => {
  const t = (begin: number, end: number, shape = [(end - begin) / 4]) => ({
    dtype: "F32",
    shape,
    data_offsets: [begin, end],
  });
  const cases: [Uint8Array, RegExp][] = [
    [safetensorsFile({ a: t(0, 4) }, 4, 2n ** 63n), /header length \d+ runs past the end/],
    [safetensorsFile({ a: t(0, 8), b: t(4, 12) }, 12), /overlaps tensor "a"/],
    [safetensorsFile({ a: t(0, 2 ** 40) }, 16), /outside the data section of 16 bytes/],
    [
      safetensorsFile({ a: t(0, 16, [2 ** 40, 2 ** 40, 0, 2 ** 40]) }, 16),
      /spans 16 bytes, expected 0/,
    ],
    [safetensorsFile({ a: t(0, 4, Array(100).fill(1)) }, 4), /at most 64/],
  ];
  for (const [bytes, want] of cases) {
    const r = await loadBounded(bytes, "safetensors", BOUNDS);
    expectRefused(r, want);
  }
});

Deno.test("hostile pickle: 20 MB of 1 KB integers is refused by the object budget, not decoded for a minute", async () => {
  const n = 20_000, len = 1024;
  const b = new Uint8Array(3 + n * (5 + len) + 2);
  b.set([0x80, 2, 0x28]);
  for (let i = 0, o = 3; i < n; i++, o += 5 + len) {
    b.set([0x8b, ...le(len, 4)], o); // LONG4 of `len` bytes
    b.fill(0x5a, o + 5, o + 5 + len);
  }
  b.set([0x6c, 0x2e], b.length - 2); // LIST, STOP
  const r = await loadBounded(b, "unpickle", BOUNDS);
  expectRefused(r, /builds more than \d+ objects/);
});

Deno.test("EPSAM_MAX_CHECKPOINT_BYTES moves the .pth limit both ways", async () => {
  const views = new Map<string, Tree>();
  for (let i = 0; i < 4; i++) {
    views.set(`v${i}`, {
      storage: "DoubleStorage",
      key: "0",
      numel: 1,
      offset: 0,
      shape: [2 ** 20],
      stride: [0],
    });
  }
  const bytes = await archive(torchPickle(views), { "0": new Uint8Array(8) });
  // 32 MiB of expanded views: under the default limit, over a 16 MiB one.
  assert.equal((await loadBounded(bytes, "pth", BOUNDS)).ok, true);
  const low = await loadBounded(bytes, "pth", {
    ...BOUNDS,
    env: { EPSAM_MAX_CHECKPOINT_BYTES: String(16 * 2 ** 20) },
  });
  expectRefused(low, /over its limit of 16\.0 MiB \(EPSAM_MAX_CHECKPOINT_BYTES\)/);
  const bad = await loadBounded(bytes, "pth", {
    ...BOUNDS,
    env: { EPSAM_MAX_CHECKPOINT_BYTES: "lots" },
  });
  assert.equal(bad.name, "InputError");
  assert.match(bad.message!, /EPSAM_MAX_CHECKPOINT_BYTES: expected a positive integer, got "lots"/);
});
