/**
 * PyTorch `.pth` checkpoints end to end: the zip container (central directory, ZIP64, local
 * headers, stored and deflated entries, CRCs), the `data.pkl` pickle, and the storages its tensor
 * views read, through `loadPth` (flattening included). Inputs: byte mutations of whole archives;
 * mutated pickles re-wrapped in a valid zip (so they get past the CRC); and generated state dicts
 * whose views claim hostile shapes, strides, offsets and storage sizes.
 */
import fc from "fast-check";
import { InputError } from "../../../engine/io/errors.ts";
import { loadPth } from "../../../engine/io/pth.ts";
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";
import {
  makeZip,
  makeZipSync,
  type TensorSpec,
  torchPickle,
  type Tree,
  type ZipIn,
} from "../../util/torch_archive.ts";
import { PICKLE_SEEDS } from "./pickle.ts";

const storage = (n: number) => new Uint8Array(n).map((_, i) => (i * 37) & 0xff);
const STORAGES: Record<string, Uint8Array> = {
  "0": storage(24),
  "1": storage(16),
  "2": storage(4),
};

const files = (pkl: Uint8Array, storages = STORAGES, deflate = false): ZipIn[] => [
  { name: "archive/data.pkl", data: pkl, deflate },
  { name: "archive/byteorder", data: new TextEncoder().encode("little") },
  ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data, deflate })),
];

const torchSeeds = PICKLE_SEEDS.slice(4); // the torch-style ones (CPython ones hold no tensors)
const ARCHIVES = [
  ...torchSeeds.map((p) => makeZipSync(files(p))),
  makeZipSync(files(torchSeeds[0]), true),
  await makeZip(files(torchSeeds[0], STORAGES, true)),
];

const DTYPES = ["FloatStorage", "DoubleStorage", "HalfStorage", "LongStorage", "ByteStorage"];
const dim = fc.oneof(
  { weight: 8, arbitrary: fc.nat(6) },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 20, 2 ** 31, 2 ** 53 - 1) },
);
const tensor: fc.Arbitrary<TensorSpec> = fc.record({
  storage: fc.constantFrom(...DTYPES),
  key: fc.constantFrom("0", "1", "2", "9"),
  numel: fc.oneof(fc.nat(8), fc.constantFrom(2 ** 30, 2 ** 53 - 1)),
  offset: fc.oneof(fc.nat(8), fc.constant(2 ** 40)),
  shape: fc.array(dim, { maxLength: 4 }),
  stride: fc.array(dim, { maxLength: 4 }),
});
/** Views agree on each storage's type and size (else the first check refuses them all). */
const stateDict = fc.tuple(
  fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 4 }), tensor), {
    minLength: 1,
    maxLength: 6,
  }),
  fc.boolean(),
).map(([entries, nested]) => {
  const first = new Map<string, TensorSpec>();
  const root = new Map<string, Tree>();
  for (const [name, t] of entries) {
    const f = first.get(t.key) ?? t;
    first.set(t.key, f);
    const v = {
      ...t,
      storage: f.storage,
      numel: f.numel,
      stride: t.stride.slice(0, t.shape.length),
    };
    while (v.stride.length < v.shape.length) v.stride.push(1);
    root.set(name, v);
  }
  return makeZipSync(files(torchPickle(nested ? new Map([["model", root]]) : root)));
});

/**
 * Mostly legal state dicts: views that fit their storages (contiguous, transposed, offset,
 * stride 0), storages of matching size, stored or deflated, nested or not; then sometimes one
 * storage entry cut short or one view's offset pushed past its end.
 */
const SMALL_DTYPES: [string, number][] = [
  ["FloatStorage", 4],
  ["DoubleStorage", 8],
  [
    "HalfStorage",
    2,
  ],
  ["ByteStorage", 1],
  ["LongStorage", 8],
];
const legal = fc.tuple(
  fc.array(
    fc.tuple(
      fc.constantFrom(...SMALL_DTYPES),
      fc.array(fc.nat(4), { minLength: 0, maxLength: 3 }),
      fc.constantFrom("contiguous", "transposed", "expanded", "offset"),
    ),
    { minLength: 1, maxLength: 5 },
  ),
  fc.boolean(),
  fc.constantFrom("none", "short", "past"),
).map(([tensors, nested, damage]) => {
  const root = new Map<string, Tree>();
  const storages: Record<string, Uint8Array> = {};
  tensors.forEach(([[type, size], shape, layout], k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const contiguous = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
    let stride = contiguous, numel = n, offset = 0;
    if (layout === "transposed" && shape.length >= 2) {
      stride = [...contiguous];
      stride[0] = 1;
      stride[1] = shape[0];
      stride.splice(2, Infinity, ...contiguous.slice(2).map((s) => s * shape[0] * shape[1]));
    } else if (layout === "expanded") {
      stride = shape.map(() => 0);
      numel = 1;
    } else if (layout === "offset") {
      offset = 2;
      numel = n + 2;
    }
    storages[String(k)] = storage(numel * size);
    root.set(`t${k}`, { storage: type, key: String(k), numel, offset, shape, stride });
  });
  if (damage === "short") storages["0"] = storages["0"].subarray(1);
  if (damage === "past") (root.get("t0") as TensorSpec).offset += 1000;
  return makeZipSync(files(torchPickle(nested ? new Map([["model", root]]) : root), storages));
});

const rewrapped = fc.tuple(fuzzBytes(torchSeeds), fc.boolean()).map(([pkl, zip64]) =>
  makeZipSync(files(pkl), zip64)
);

let tmp: string | undefined;

const target: FuzzTarget = {
  name: "pth",
  description: "torch.save zip (directory, entries, data.pkl, storages) → loadPth",
  input: () =>
    fc.oneof(
      { weight: 3, arbitrary: fuzzBytes(ARCHIVES) },
      { weight: 3, arbitrary: rewrapped },
      { weight: 2, arbitrary: stateDict },
      { weight: 2, arbitrary: legal },
    ),
  async parse(input) {
    tmp ??= Deno.makeTempFileSync({ suffix: ".pth" });
    await Deno.writeFile(tmp, input);
    await loadPth(tmp);
  },
  isParserError: (e) => e instanceof InputError,
};
export default target;

globalThis.addEventListener("unload", () => {
  if (tmp) Deno.removeSync(tmp);
});
