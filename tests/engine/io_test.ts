import assert from "node:assert/strict";
import fc from "fast-check";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import {
  bf16BitsToNumber,
  type DType,
  DTYPE_SIZE,
  f16BitsToNumber,
  type HostTensor,
  numberToBf16Bits,
  numberToF16Bits,
  parseSafetensors,
  parseSafetensorsWithMetadata,
  readSafetensorsWithMetadata,
  serializeSafetensors,
  toFloat32,
  toInt32,
  viewAs,
  writeSafetensors,
} from "../../engine/io/safetensors.ts";
import { crc32, ZipReader } from "../../engine/io/zip.ts";
import {
  isHostTensor,
  loadPth,
  pickledAttributes,
  type PyValue,
  readPthObject,
  unpickle,
} from "../../engine/io/pth.ts";
import {
  checkStateDict,
  detectCheckpointFormat,
  loadCheckpoint,
} from "../../engine/io/state_dict.ts";
import {
  concat,
  enc,
  le,
  makeZip,
  Pickler,
  type TensorSpec,
  torchPickle,
  type Tree,
  type ZipIn,
} from "../util/torch_archive.ts";
import {
  PICKLE_OD_METADATA,
  PICKLE_P2,
  PICKLE_P2_BYTES,
  PICKLE_P4,
} from "../util/torch_archive.ts";

async function tempFile(bytes: Uint8Array, suffix = ".pth"): Promise<string> {
  const path = await Deno.makeTempFile({ suffix });
  await Deno.writeFile(path, bytes);
  return path;
}

/** Runs `f`, expecting an Error whose message mentions `needle` (the file name, usually). */
async function expectError(f: () => unknown, needle: string | RegExp): Promise<Error> {
  try {
    await f();
  } catch (e) {
    assert.ok(e instanceof Error, `threw a non-Error: ${String(e)}`);
    if (typeof needle === "string") {
      assert.ok(e.message.includes(needle), `message ${JSON.stringify(e.message)} lacks ${needle}`);
    } else assert.match(e.message, needle);
    return e;
  }
  assert.fail(`expected an error mentioning ${needle}`);
}

function sameTensor(a: HostTensor, b: HostTensor, key: string): void {
  assert.equal(a.dtype, b.dtype, `${key}: dtype`);
  assert.deepEqual(a.shape, b.shape, `${key}: shape`);
  assert.equal(a.data.constructor, b.data.constructor, `${key}: array type`);
  assert.deepEqual(
    new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength),
    new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength),
    `${key}: data`,
  );
}

// ---------------------------------------------------------------------------------------------
// safetensors

const DTYPES = Object.keys(DTYPE_SIZE) as DType[];

const tensorArb: fc.Arbitrary<HostTensor> = fc.record({
  dtype: fc.constantFrom(...DTYPES),
  shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }),
}).chain(({ dtype, shape }) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return fc.uint8Array({ minLength: n * DTYPE_SIZE[dtype], maxLength: n * DTYPE_SIZE[dtype] })
    .map((raw): HostTensor => {
      if (dtype === "BOOL") raw = raw.map((b) => b & 1);
      return { dtype, shape, data: viewAs(dtype, raw) };
    });
});

const dictArb = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 12 }).filter((k) => k !== "__metadata__"),
  tensorArb,
  { maxKeys: 6 },
);

Deno.test("safetensors: serialize -> parse round-trips random tensors bit-exactly", () => {
  fc.assert(
    fc.property(
      dictArb,
      fc.option(fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }), { nil: undefined }),
      (dict, meta) => {
        const bytes = serializeSafetensors(dict, meta);
        const hdrLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
        assert.equal((8 + hdrLen) % 8, 0, "data section is 8-byte aligned");
        const { tensors, metadata } = parseSafetensorsWithMetadata(bytes, "rt");
        assert.deepEqual(
          metadata && Object.entries(metadata),
          meta && Object.entries(meta),
        );
        assert.deepEqual([...tensors.keys()].sort(), Object.keys(dict).sort());
        for (const [k, t] of Object.entries(dict)) sameTensor(tensors.get(k)!, t, k);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("safetensors: write/read through a file (tensor-by-tensor reader)", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  try {
    const t = new Map<string, HostTensor>([
      ["a.weight", { dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) }],
      ["a.idx", { dtype: "I64", shape: [2], data: new BigInt64Array([-1n, 2n ** 40n]) }],
      ["h", { dtype: "F16", shape: [1], data: new Uint16Array([0x3c00]) }],
      ["s", { dtype: "F64", shape: [], data: new Float64Array([Math.PI]) }],
      ["empty", { dtype: "U8", shape: [0, 3], data: new Uint8Array(0) }],
    ]);
    await writeSafetensors(path, t, { format: "pt" });
    const { tensors, metadata } = await readSafetensorsWithMetadata(path);
    assert.deepEqual(metadata, { format: "pt" });
    for (const [k, v] of t) sameTensor(tensors.get(k)!, v, k);
    assert.equal(await detectCheckpointFormat(path), "safetensors");
    assert.equal((await loadCheckpoint(path)).size, 5);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("safetensors: f16/bf16 conversions are exact inverses and round to nearest even", () => {
  for (let h = 0; h < 65536; h++) {
    const x = f16BitsToNumber(h);
    if (Number.isNaN(x)) assert.ok(Number.isNaN(f16BitsToNumber(numberToF16Bits(x))));
    else assert.equal(numberToF16Bits(x), h, `f16 ${h.toString(16)}`);
    const y = bf16BitsToNumber(h);
    if (Number.isNaN(y)) assert.ok(Number.isNaN(bf16BitsToNumber(numberToBf16Bits(y))));
    else assert.equal(numberToBf16Bits(y), h, `bf16 ${h.toString(16)}`);
  }
  assert.equal(numberToF16Bits(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(numberToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.equal(numberToF16Bits(65520), 0x7c00); // overflow
  assert.equal(numberToF16Bits(2 ** -25), 0); // tie at the smallest subnormal -> 0
  assert.equal(numberToF16Bits(2 ** -25 * 1.5), 1);
  const t: HostTensor = { dtype: "F16", shape: [3], data: new Uint16Array([0x3c00, 0xc000, 1]) };
  assert.deepEqual([...toFloat32(t)], [1, -2, 2 ** -24]);
  const b: HostTensor = { dtype: "BF16", shape: [2], data: new Uint16Array([0x3f80, 0x4049]) };
  assert.deepEqual([...toFloat32(b)], [1, 3.140625]);
  const l: HostTensor = { dtype: "I64", shape: [2], data: new BigInt64Array([3n, -4n]) };
  assert.deepEqual([...toFloat32(l)], [3, -4]);
  assert.deepEqual([...toInt32(l)], [3, -4]);
  assert.throws(
    () => toInt32({ dtype: "I64", shape: [1], data: new BigInt64Array([2n ** 40n]) }, "k"),
    /k: I64 value 1099511627776 at index 0 does not fit/,
  );
});

function rawSafetensors(header: unknown, dataLen: number, hdrLenOverride?: number): Uint8Array {
  const json = enc.encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(hdrLenOverride ?? json.length), true);
  out.set(json, 8);
  return out;
}

Deno.test("safetensors: invalid headers give errors naming file, tensor and field", () => {
  const f = "bad.safetensors";
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(5), /bad.safetensors: too short/],
    [rawSafetensors({}, 0, 1000), /header length 1000 runs past the end of the file/],
    [
      rawSafetensors({ w: { dtype: "Q8", shape: [1], data_offsets: [0, 1] } }, 1),
      /tensor "w": field dtype: expected one of F32.*got "Q8"/,
    ],
    [
      rawSafetensors({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4),
      /tensor "w": field shape/,
    ],
    [
      rawSafetensors({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, 4),
      /tensor "w": field data_offsets: \[0, 8\] is outside the data section of 4 bytes/,
    ],
    [
      rawSafetensors({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8),
      /tensor "w": field data_offsets: \[0, 8\] spans 8 bytes, expected 12 for F32 shape \[3\]/,
    ],
    [
      rawSafetensors({
        a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
      }, 12),
      /tensor "b": field data_offsets: \[4, 12\] overlaps tensor "a"/,
    ],
    [
      rawSafetensors({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8),
      /tensor "a": field data_offsets: begins at 4, expected 0/,
    ],
    [
      rawSafetensors({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, 8),
      /data section has 8 bytes but the tensors cover 4/,
    ],
    [rawSafetensors({ __metadata__: { a: 1 } }, 0), /field __metadata__.a: expected a string/],
    [rawSafetensors([1], 0), /header must be a JSON object/],
    [new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7b]), /not valid UTF-8 JSON/],
  ];
  for (const [bytes, re] of cases) {
    const e = assert.throws(() => parseSafetensors(bytes, f), re);
    void e;
    assert.throws(() => parseSafetensors(bytes, f), (err: Error) => err.message.startsWith(f));
  }
  assert.throws(
    () => serializeSafetensors({ w: { dtype: "F32", shape: [2], data: new Float32Array(3) } }),
    /tensor "w": field data: shape \[2\] needs 2 elements, got 3/,
  );
  assert.throws(
    () => serializeSafetensors({ w: { dtype: "F16", shape: [1], data: new Float32Array(1) } }),
    /dtype F16 needs a Uint16Array, got Float32Array/,
  );
});

Deno.test("safetensors: mutated or truncated files throw Errors naming the file, never crash", () => {
  const base = serializeSafetensors({
    "a.w": { dtype: "F32", shape: [3, 2], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    "b": { dtype: "I64", shape: [1], data: new BigInt64Array([7n]) },
    "c": { dtype: "F16", shape: [3], data: new Uint16Array([1, 2, 3]) },
  }, { k: "v" });
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), {
        maxLength: 4,
      }),
      fc.nat(base.length),
      (muts, cut) => {
        const b = base.slice(0, cut);
        for (const [i, v] of muts) if (i < b.length) b[i] = v;
        try {
          parseSafetensors(b, "fuzz.safetensors");
        } catch (e) {
          assert.ok(e instanceof Error);
          assert.ok(e.message.startsWith("fuzz.safetensors: "), e.message);
        }
      },
    ),
    { numRuns: 2000 },
  );
});

// ---------------------------------------------------------------------------------------------
// pickle

Deno.test("pickle: restricted unpickler decodes CPython protocol 2 and 4 streams", () => {
  for (const [name, bytes] of [["p2", PICKLE_P2], ["p4", PICKLE_P4]] as const) {
    const v = unpickle(bytes, { file: name }) as Map<PyValue, PyValue>;
    assert.ok(v instanceof Map, name);
    assert.deepEqual(v.get("a"), [1, 2.5, "x", null, true, false]);
    assert.deepEqual(v.get("b"), [1, 2, 3]);
    assert.ok(Object.isFrozen(v.get("b")), "tuples are frozen arrays");
    assert.deepEqual(v.get("t1"), [7]);
    assert.deepEqual(v.get("e"), []);
    assert.equal(v.get("big"), 2n ** 70n);
    assert.equal(v.get("neg"), -5);
    assert.equal(v.get("n300"), 300);
    assert.equal(v.get("n70000"), 70000);
    assert.equal(v.get("negbig"), -(2 ** 40));
    assert.deepEqual(v.get("od"), new Map<PyValue, PyValue>([["k", 1], ["j", []]]));
    assert.equal(v.get("uni"), "h\u00e9llo");
    assert.deepEqual(v.get("nested"), new Map([["x", new Map([["y", 1]])]]));
    if (name === "p4") {
      assert.deepEqual(v.get("bytes"), new Uint8Array([0, 1]));
      assert.deepEqual(v.get("s"), new Set([1, 2]));
      assert.deepEqual(v.get("fs"), new Set([3]));
    }
  }
  // A state dict's `_metadata` attribute arrives through BUILD and is kept aside.
  const od = unpickle(PICKLE_OD_METADATA, { file: "od" }) as Map<PyValue, PyValue>;
  assert.deepEqual(od, new Map([["w", 1]]));
  assert.deepEqual(
    pickledAttributes(od),
    new Map([["_metadata", new Map([["", new Map([["version", 1]])]])]]),
  );
  assert.throws(
    () => unpickle(PICKLE_P2_BYTES, { file: "x.pkl" }),
    /^InputError: x.pkl: refusing to load: pickle references global _codecs.encode/,
  );
});

Deno.test("pickle: hostile globals and opcodes are refused before anything is built", () => {
  const msg = (g: string) =>
    `evil.pkl: refusing to load: pickle references global ${g}, which is not a tensor or ` +
    `container (only state dicts are accepted)`;
  // Refused on reference, before any call.
  const osSystem = new Pickler().raw(0x80, 2).global("os", "system").bytes();
  const cases: [Uint8Array, string][] = [
    [
      concat([
        new Pickler().raw(0x80, 2).global("os", "system").raw(0x28).str("echo pwned").raw(
          0x74,
          0x52,
        )
          .bytes(),
        new Uint8Array([0x2e]),
      ]),
      msg("os.system"),
    ],
    [osSystem, msg("os.system")],
    [
      // protocol 4 STACK_GLOBAL builtins.eval
      new Pickler().raw(0x80, 4, 0x8c, 8).text("builtins").raw(0x8c, 4).text("eval").raw(0x93)
        .bytes(),
      msg("builtins.eval"),
    ],
    [
      new Pickler().raw(0x80, 2).global("__builtin__", "getattr").bytes(),
      msg("__builtin__.getattr"),
    ],
    [
      new Pickler().raw(0x80, 2).global("torch.storage", "_load_from_bytes").bytes(),
      msg("torch.storage._load_from_bytes"),
    ],
    [new Pickler().raw(0x80, 2).global("torch", "Tensor").bytes(), msg("torch.Tensor")],
  ];
  for (const [bytes, m] of cases) {
    assert.throws(() => unpickle(bytes, { file: "evil.pkl" }), (e: Error) => e.message === m);
  }
  // INST / OBJ build instances of arbitrary classes: refused as opcodes.
  assert.throws(
    () => unpickle(enc.encode("(cos\nsystem\n"), { file: "evil.pkl" }),
    (e: Error) => e.message === msg("os.system"),
  );
  assert.throws(
    () => unpickle(enc.encode("(ios\nsystem\n."), { file: "evil.pkl" }),
    /evil.pkl: refusing to load: pickle opcode INST is not allowed/,
  );
  // Allowed globals still cannot be called in unintended ways.
  assert.throws(
    () =>
      unpickle(
        concat([
          new Pickler().raw(0x80, 2).global("torch", "FloatStorage").raw(0x29, 0x52).bytes(),
          enc.encode("."),
        ]),
        { file: "s.pkl" },
      ),
    /s.pkl: corrupt pickle: torch.FloatStorage cannot be called/,
  );
});

Deno.test("pickle: random and mutated streams throw Errors naming the file, never hang", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      try {
        unpickle(b, { file: "rnd.pkl" });
      } catch (e) {
        assert.ok(e instanceof Error && e.message.startsWith("rnd.pkl: "), String(e));
      }
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(
      fc.constantFrom(PICKLE_P2, PICKLE_P4),
      fc.array(fc.tuple(fc.nat(400), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
      fc.nat(400),
      (base, muts, cut) => {
        const b = base.slice(0, cut);
        for (const [i, v] of muts) if (i < b.length) b[i] = v;
        try {
          unpickle(b, { file: "mut.pkl" });
        } catch (e) {
          assert.ok(e instanceof Error && e.message.startsWith("mut.pkl: "), String(e));
        }
      },
    ),
    { numRuns: 3000 },
  );
});

// ---------------------------------------------------------------------------------------------
// torch.save archives

Deno.test("pth: hostile data.pkl inside a torch-style zip is refused with a clear message", async () => {
  const pkl = concat([
    new Pickler().raw(0x80, 2).global("os", "system").tuple([() => {}]).raw(0x52).bytes(),
    enc.encode("."),
  ]);
  // Build it fully: GLOBAL 'os' 'system', ( 'touch /tmp/pwned' t, REDUCE, STOP.
  const p = new Pickler().raw(0x80, 2).global("os", "system").raw(0x28).str("touch /tmp/pwned")
    .raw(0x74, 0x52, 0x2e);
  for (const bytes of [pkl, p.bytes()]) {
    const path = await tempFile(
      await makeZip([{ name: "archive/data.pkl", data: bytes }, {
        name: "archive/version",
        data: enc.encode("3\n"),
      }]),
    );
    try {
      const e = await expectError(() => loadPth(path), path);
      assert.equal(
        e.message,
        `${path}: refusing to load: pickle references global os.system, which is not a tensor ` +
          `or container (only state dicts are accepted)`,
      );
      await expectError(() => loadCheckpoint(path), "refusing to load");
    } finally {
      await Deno.remove(path);
    }
  }
});

/** Storage data for a crafted archive: F32 0..n-1 etc. */
function storageBytes(dtype: DType, n: number): Uint8Array {
  const a = viewAs(dtype, new Uint8Array(n * DTYPE_SIZE[dtype]));
  for (let i = 0; i < n; i++) {
    (a as unknown as (number | bigint)[])[i] = dtype === "I64"
      ? BigInt(i * 1000)
      : dtype === "BOOL"
      ? i % 2
      : dtype === "F16"
      ? numberToF16Bits(i)
      : dtype === "BF16"
      ? numberToBf16Bits(i)
      : i;
  }
  return new Uint8Array(a.buffer);
}

Deno.test("pth: strided views, storage offsets, shared storages, every dtype, ZIP64, deflate", async () => {
  const T = (
    storage: string,
    key: string,
    numel: number,
    offset: number,
    shape: number[],
    stride: number[],
  ): TensorSpec => ({ storage, key, numel, offset, shape, stride });
  const sd = new Map<string, Tree>([
    ["lin.weight", T("FloatStorage", "0", 12, 0, [3, 4], [4, 1])],
    ["lin.weight_t", T("FloatStorage", "0", 12, 0, [4, 3], [1, 4])], // transposed view
    ["lin.slice", T("FloatStorage", "0", 12, 5, [2, 2], [4, 2])], // offset + step
    ["lin.expand", T("FloatStorage", "0", 12, 7, [2, 3], [0, 1])], // stride 0
    ["h", T("HalfStorage", "1", 4, 1, [3], [1])],
    ["bf", T("BFloat16Storage", "2", 4, 0, [2, 2], [2, 1])],
    ["d", T("DoubleStorage", "3", 3, 0, [3], [1])],
    ["l", T("LongStorage", "4", 1, 0, [], [])],
    ["i", T("IntStorage", "5", 6, 0, [2, 3], [1, 2])],
    ["u", T("ByteStorage", "6", 5, 0, [5], [1])],
    ["b", T("BoolStorage", "7", 4, 0, [4], [1])],
    ["e", T("FloatStorage", "8", 0, 0, [0, 3], [3, 1])],
  ]);
  const storages: [string, DType, number][] = [
    ["0", "F32", 12],
    ["1", "F16", 4],
    ["2", "BF16", 4],
    ["3", "F64", 3],
    ["4", "I64", 1],
    ["5", "I32", 6],
    ["6", "U8", 5],
    ["7", "BOOL", 4],
    ["8", "F32", 0],
  ];
  const files: ZipIn[] = [
    { name: "my_model/data.pkl", data: torchPickle(sd), deflate: true },
    { name: "my_model/byteorder", data: enc.encode("little") },
    ...storages.map(([k, dt, n], i) => ({
      name: `my_model/data/${k}`,
      data: storageBytes(dt, n),
      deflate: i % 2 === 1,
    })),
  ];
  for (const zip64 of [false, true]) {
    const path = await tempFile(await makeZip(files, zip64));
    try {
      assert.equal(await detectCheckpointFormat(path), "pth");
      const m = await loadPth(path);
      const vals = (k: string) => {
        const t = m.get(k)!;
        return [...(t.dtype === "I64" ? t.data as BigInt64Array : toFloat32(t))];
      };
      assert.deepEqual(m.get("lin.weight")!.shape, [3, 4]);
      assert.deepEqual(vals("lin.weight"), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      assert.deepEqual(vals("lin.weight_t"), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
      assert.deepEqual(vals("lin.slice"), [5, 7, 9, 11]);
      assert.deepEqual(vals("lin.expand"), [7, 8, 9, 7, 8, 9]);
      assert.deepEqual(vals("h"), [1, 2, 3]);
      assert.equal(m.get("h")!.dtype, "F16");
      assert.deepEqual(vals("bf"), [0, 1, 2, 3]);
      assert.deepEqual(vals("d"), [0, 1, 2]);
      assert.ok(m.get("d")!.data instanceof Float64Array);
      assert.deepEqual(m.get("l")!.shape, []);
      assert.deepEqual(vals("l"), [0n]);
      assert.deepEqual(vals("i"), [0, 2, 4, 1, 3, 5]);
      assert.deepEqual(vals("u"), [0, 1, 2, 3, 4]);
      assert.deepEqual(vals("b"), [0, 1, 0, 1]);
      assert.equal(m.get("b")!.dtype, "BOOL");
      assert.deepEqual(m.get("e")!.shape, [0, 3]);
      // Views of one storage never alias each other.
      (m.get("lin.weight")!.data as Float32Array)[0] = 99;
      assert.equal((m.get("lin.weight_t")!.data as Float32Array)[0], 0);
    } finally {
      await Deno.remove(path);
    }
  }
});

Deno.test("pth: nested checkpoints flatten, non-tensor leaves need select", async () => {
  const w = (key: string): TensorSpec => ({
    storage: "FloatStorage",
    key,
    numel: 2,
    offset: 0,
    shape: [2],
    stride: [1],
  });
  const ckpt = new Map<string, Tree>([
    [
      "model",
      new Map<string, Tree>([["enc", new Map<string, Tree>([["w", w("0")]])], ["b", w("1")]]),
    ],
    ["epoch", 3],
  ]);
  const path = await tempFile(
    await makeZip([
      { name: "ckpt/data.pkl", data: torchPickle(ckpt) },
      { name: "ckpt/data/0", data: storageBytes("F32", 2) },
      { name: "ckpt/data/1", data: storageBytes("F32", 2) },
    ]),
  );
  try {
    await expectError(
      () => loadPth(path),
      /not a state dict: epoch holds a number, not a tensor \(top-level keys: model, epoch; pass select/,
    );
    const m = await loadPth(path, { select: "model" });
    assert.deepEqual([...m.keys()], ["enc.w", "b"]);
    const raw = await readPthObject(path) as Map<PyValue, PyValue>;
    assert.equal(raw.get("epoch"), 3);
    assert.ok(isHostTensor((raw.get("model") as Map<PyValue, PyValue>).get("b")));
    await expectError(
      () => loadPth(path, { select: "nope" }),
      /no key "nope" \(have: model, epoch\)/,
    );
  } finally {
    await Deno.remove(path);
  }
  // A view reaching past its storage, or a missing storage, names the tensor and the storage.
  const bad = new Map<string, Tree>([
    ["m", new Map<string, Tree>([["w", { ...w("0"), offset: 1 }]])],
  ]);
  const path2 = await tempFile(
    await makeZip([
      { name: "x/data.pkl", data: torchPickle(bad) },
      { name: "x/data/0", data: storageBytes("F32", 2) },
    ]),
  );
  try {
    await expectError(
      () => loadPth(path2),
      `${path2}: tensor "m.w": view [2] stride [1] offset 1 reaches element 2 of storage 0, ` +
        `which has 2`,
    );
    await Deno.writeFile(path2, await makeZip([{ name: "x/data.pkl", data: torchPickle(bad) }]));
    await expectError(
      () => loadPth(path2),
      `${path2}: tensor "m.w": storage 0: archive has no entry x/data/0`,
    );
  } finally {
    await Deno.remove(path2);
  }
});

Deno.test("pth: absurd nesting and huge integers are rejected, not recursed into", async () => {
  const depth = 100_000;
  const deep = concat([
    new Uint8Array([0x80, 2]),
    new Uint8Array(depth).fill(0x5d), // EMPTY_LIST x depth
    new Uint8Array(depth - 1).fill(0x61), // APPEND x (depth - 1)
    enc.encode("."),
  ]);
  const path = await tempFile(await makeZip([{ name: "d/data.pkl", data: deep }]));
  try {
    await expectError(() => loadPth(path), `${path}: pickle nests containers over 256 deep`);
  } finally {
    await Deno.remove(path);
  }
  const long4 = new Pickler().raw(0x80, 2, 0x8b, ...le(1 << 20, 4)).bytes();
  assert.throws(
    () => unpickle(long4, { file: "l.pkl" }),
    /l.pkl: .*LONG4 length 1048576 out of range/,
  );
});

Deno.test("pth: truncated, corrupt and non-zip files give errors naming the file", async () => {
  const good = await Deno.readFile(fixturePath("sam-tiny", "weights.pth")).catch(() => null);
  const sd = new Map<string, Tree>([["w", {
    storage: "FloatStorage",
    key: "0",
    numel: 4,
    offset: 0,
    shape: [4],
    stride: [1],
  }]]);
  const small = await makeZip([
    { name: "a/data.pkl", data: torchPickle(sd), deflate: true },
    { name: "a/data/0", data: storageBytes("F32", 4) },
  ]);
  const bases = good ? [small, good] : [small];
  const path = await Deno.makeTempFile({ suffix: ".pth" });
  try {
    for (const base of bases) {
      for (const cut of [0, 3, 21, 100, base.length >> 1, base.length - 30, base.length - 1]) {
        await Deno.writeFile(path, base.subarray(0, cut));
        await expectError(() => loadPth(path), `${path}: `);
      }
    }
    // Random byte mutations of the small archive: either loads or throws an Error naming the file.
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(small.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 3,
        }),
        async (muts) => {
          const b = small.slice();
          for (const [i, v] of muts) b[i] = v;
          await Deno.writeFile(path, b);
          try {
            await loadPth(path);
          } catch (e) {
            assert.ok(e instanceof Error && e.message.startsWith(`${path}: `), String(e));
          }
        },
      ),
      { numRuns: 300 },
    );
    // A flipped byte in tensor data is caught by the CRC.
    const flipped = small.slice();
    const dataAt = flipped.length - 22 - 2 * 46 - "a/data.pkl".length - "a/data/0".length - 16;
    flipped[dataAt] ^= 0xff;
    await Deno.writeFile(path, flipped);
    await expectError(() => loadPth(path), /CRC-32 mismatch/);
    // Not a checkpoint at all.
    await Deno.writeFile(path, enc.encode("hello, not a checkpoint"));
    await expectError(() => loadCheckpoint(path), `${path}: not a checkpoint`);
    await Deno.writeFile(path, new Uint8Array([0x80, 2, 0x8a, 0x0a]));
    await expectError(() => loadCheckpoint(path), "legacy (pre-1.6, non-zip) PyTorch file");
    await Deno.writeFile(path, await makeZip([{ name: "x.txt", data: enc.encode("x") }]));
    await expectError(() => loadPth(path), "expected one entry ending in data.pkl, found 0");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("zip: reader lists entries and reads stored/deflated entries lazily", async () => {
  const big = new Uint8Array(200_000).map((_, i) => (i * 7) % 251);
  const path = await tempFile(
    await makeZip([
      { name: "s", data: enc.encode("stored") },
      { name: "d/big", data: big, deflate: true },
    ], true),
    ".zip",
  );
  const z = await ZipReader.open(path);
  try {
    assert.deepEqual(z.entries.map((e) => [e.name, e.method, e.size]), [["s", 0, 6], [
      "d/big",
      8,
      200_000,
    ]]);
    assert.equal(new TextDecoder().decode(await z.read("s")), "stored");
    assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
    assert.deepEqual(await z.read("d/big"), big);
    await expectError(() => z.read("missing"), `${path}: zip has no entry "missing"`);
  } finally {
    z.close();
    await Deno.remove(path);
  }
});

// ---------------------------------------------------------------------------------------------
// Fixtures: the .pth and .safetensors of each model hold the same state dict.

for (const model of ["resnet-adl-tiny", "sam-tiny"]) {
  Deno.test({
    name: `fixtures: ${model} weights.pth and weights.safetensors agree exactly`,
    ignore: !haveFixtures(),
    fn: async () => {
      const pth = await loadCheckpoint(fixturePath(model, "weights.pth"));
      const st = await loadCheckpoint(fixturePath(model, "weights.safetensors"));
      assert.deepEqual([...pth.keys()].sort(), [...st.keys()].sort());
      assert.ok(pth.size > 100);
      const scalarAs1d: string[] = [];
      for (const [k, a] of pth) {
        const b = st.get(k)!;
        // The safetensors fixture stores 0-d tensors (BatchNorm num_batches_tracked) as [1].
        if (a.shape.length === 0 && b.shape.length === 1 && b.shape[0] === 1) {
          scalarAs1d.push(k);
          sameTensor(a, { ...b, shape: [] }, k);
        } else sameTensor(a, b, k);
      }
      assert.ok(scalarAs1d.every((k) => k.endsWith("num_batches_tracked")), String(scalarAs1d));
      // And the model-shape check accepts them both ([] vs [1] is torch's legacy allowance).
      const expected = new Map([...pth].map(([k, t]) => [k, t.shape]));
      checkStateDict("st", st, expected);
      checkStateDict("pth", pth, expected);
    },
  });
}

Deno.test("checkStateDict: one error listing missing, unexpected and mis-shaped keys", () => {
  const t = (shape: number[]): HostTensor => ({
    dtype: "F32",
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
  });
  const loaded = new Map([
    ["a", t([2, 3])],
    ["b", t([4])],
    ["extra", t([1])],
    ["bn.num_batches_tracked", t([])],
  ]);
  const expected = new Map<string, number[]>([["a", [3, 2]], ["b", [4]], ["c", [1]], ["d", [2]]]);
  const e = assert.throws(
    () => checkStateDict("ck.pth", loaded, expected, { allowMissing: (k) => k === "d" }),
    (err: Error) => {
      assert.equal(
        err.message,
        [
          "ck.pth: checkpoint does not match the model",
          "missing keys (1):\n  c",
          "unexpected keys (2):\n  extra\n  bn.num_batches_tracked",
          "mis-shaped keys (1):\n  a: got [2, 3], expected [3, 2]",
        ].join("\n"),
      );
      return true;
    },
  );
  void e;
  checkStateDict("ck.pth", loaded, new Map([["a", [2, 3]], ["b", [4]], ["extra", [1]]]), {
    allowUnexpected: (k) => k.endsWith("num_batches_tracked"),
  });
});
