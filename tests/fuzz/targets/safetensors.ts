/**
 * safetensors: the 8-byte header length, the JSON header (dtype, shape, data_offsets per tensor,
 * `__metadata__`) and the data section, parsed by `parseSafetensorsWithMetadata`. Inputs: byte
 * mutations of valid files, and files whose header is generated with hostile values (offsets
 * past the end, overlapping, huge shapes, wrong types, odd header lengths).
 */
import fc from "fast-check";
import { InputError } from "../../../engine/io/errors.ts";
import {
  DTYPE_SIZE,
  parseSafetensorsWithMetadata,
  serializeSafetensors,
} from "../../../engine/io/safetensors.ts";
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";

const seeds = [
  serializeSafetensors({
    w: { dtype: "F32", shape: [2, 3], data: new Float32Array(6).map((_, i) => i) },
    b: { dtype: "F16", shape: [3], data: new Uint16Array([1, 2, 3]) },
  }, { format: "pt" }),
  serializeSafetensors({
    a: { dtype: "I64", shape: [2], data: new BigInt64Array([1n, -1n]) },
    s: { dtype: "F64", shape: [], data: new Float64Array([Math.PI]) },
    e: { dtype: "U8", shape: [0, 4], data: new Uint8Array(0) },
    m: { dtype: "BOOL", shape: [1], data: new Uint8Array([1]) },
  }),
  serializeSafetensors({ "__proto__": { dtype: "BF16", shape: [1], data: new Uint16Array(1) } }),
];

const BIG = [0, 1, 2, 3, 7, 8, 255, 2 ** 31 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, -1, 1e300];
const num = fc.oneof(fc.nat(64), fc.constantFrom(...BIG), fc.double());
const dtype = fc.constantFrom<unknown>(
  "F32",
  "F16",
  "BF16",
  "F64",
  "I64",
  "I32",
  "U8",
  "BOOL",
  "Q4",
  3,
  null,
);
const entry = fc.record({
  dtype,
  shape: fc.oneof(fc.array(num, { maxLength: 5 }), fc.constantFrom<unknown>(null, "x", [-1], {})),
  data_offsets: fc.oneof(
    fc.tuple(num, num),
    fc.array(num, { maxLength: 3 }),
    fc.constant<unknown>(null),
  ),
}, { requiredKeys: [] });

/** A file from a generated header: length field honest or not, data section of any length. */
const generated = fc.tuple(
  fc.dictionary(
    fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom("__metadata__", "__proto__")),
    entry,
    {
      maxKeys: 6,
    },
  ),
  fc.nat(256),
  fc.oneof(fc.constant(-1), fc.constantFrom(...BIG)),
).map(([header, dataLen, lenField]) => {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLen);
  new DataView(out.buffer).setBigUint64(
    0,
    BigInt.asUintN(
      64,
      BigInt(lenField === -1 || !Number.isSafeInteger(lenField) ? json.length : lenField),
    ),
    true,
  );
  out.set(json, 8);
  return out;
});

/**
 * A well-formed file from generated tensors (names, dtypes, small shapes, offsets laid end to
 * end), then at most one header field replaced by a hostile value: most of these pass the
 * structural checks and reach the per-tensor ones.
 */
const consistent = fc.tuple(
  fc.array(
    fc.tuple(
      fc.string({ minLength: 1, maxLength: 6 }),
      fc.constantFrom(...Object.keys(DTYPE_SIZE) as (keyof typeof DTYPE_SIZE)[]),
      fc.array(fc.nat(4), { maxLength: 3 }),
    ),
    { minLength: 1, maxLength: 5 },
  ),
  fc.option(fc.tuple(fc.nat(4), fc.constantFrom("dtype", "shape", "data_offsets"), entry), {
    freq: 2,
  }),
).map(([tensors, change]) => {
  const header: Record<string, Record<string, unknown>> = Object.create(null);
  let pos = 0;
  for (const [name, dtype, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[dtype];
    header[name] = { dtype, shape, data_offsets: [pos, pos + n] };
    pos += n;
  }
  if (change) {
    const names = Object.keys(header);
    const [which, field, e] = change;
    header[names[which % names.length]][field] = (e as Record<string, unknown>)[field];
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + pos);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
});

const target: FuzzTarget = {
  name: "safetensors",
  description: "safetensors header + data section → parseSafetensorsWithMetadata",
  input: () =>
    fc.oneof(
      { weight: 2, arbitrary: fuzzBytes(seeds) },
      { weight: 1, arbitrary: generated },
      { weight: 2, arbitrary: consistent },
    ),
  parse(input) {
    parseSafetensorsWithMetadata(input, "<fuzz>.safetensors");
  },
  isParserError: (e) => e instanceof InputError,
};
export default target;
