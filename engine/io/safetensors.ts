/**
 * safetensors read/write: 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`, then the
 * raw little-endian tensor data. Every field is validated, because a checkpoint is untrusted input
 * and a silent mis-read would only show up later as wrong numbers.
 */
import { InputError } from "./errors.ts";
import { writeFileAtomic } from "./atomic.ts";
import { f16BitsToNumber } from "../half.ts";

/** Element types we read and write (a subset of the format's, enough for checkpoints). */
export type DType = "F32" | "F16" | "BF16" | "F64" | "I64" | "I32" | "U8" | "BOOL";

/** Typed-array storage per dtype; F16/BF16 keep their raw bits (decode with {@link toFloat32}). */
export interface DTypeArrays {
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  F64: Float64Array;
  I64: BigInt64Array;
  I32: Int32Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}

/** Any of the typed arrays a {@link HostTensor} may hold. */
export type HostData = DTypeArrays[DType];

/** A tensor in host memory, row-major and contiguous. */
export interface HostTensor {
  dtype: DType;
  shape: number[];
  data: HostData;
}

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  U8: 1,
  BOOL: 1,
};

const ARRAY_CTOR: Readonly<
  Record<
    DType,
    new (buf: ArrayBuffer, off?: number, len?: number) => HostData
  >
> = {
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  F64: Float64Array,
  I64: BigInt64Array,
  I32: Int32Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
};

// Typed arrays use host byte order; the formats are little-endian.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("engine/io: big-endian hosts are not supported");
}

/** Whether `s` names a supported dtype. */
function isDType(s: unknown): s is DType {
  return typeof s === "string" && Object.hasOwn(DTYPE_SIZE, s);
}

/** Number of elements of a shape (1 for a scalar `[]`). */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Wraps (without copying) a fresh, aligned byte buffer as the typed array of `dtype`. */
export function viewAs(dtype: DType, bytes: Uint8Array): HostData {
  const size = DTYPE_SIZE[dtype];
  if (bytes.byteOffset % size !== 0 || bytes.byteLength % size !== 0) {
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    bytes = copy;
  }
  return new ARRAY_CTOR[dtype](
    bytes.buffer as ArrayBuffer,
    bytes.byteOffset,
    bytes.byteLength / size,
  );
}

/** Checks that `data` is the typed array `dtype` expects and its length matches `shape`. */
function checkHostTensor(where: string, t: HostTensor): void {
  if (!isDType(t.dtype)) {
    throw new InputError(`${where}: field dtype: unknown dtype ${JSON.stringify(t.dtype)}`);
  }
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new InputError(
      `${where}: field shape: expected an array of non-negative integers, got ${
        JSON.stringify(t.shape)
      }`,
    );
  }
  const ctor = ARRAY_CTOR[t.dtype];
  if (!(t.data instanceof ctor)) {
    throw new InputError(
      `${where}: field data: dtype ${t.dtype} needs a ${ctor.name}, got ${
        (t.data as object)?.constructor?.name ?? typeof t.data
      }`,
    );
  }
  const n = numel(t.shape);
  if (t.data.length !== n) {
    throw new InputError(
      `${where}: field data: shape [${t.shape}] needs ${n} elements, got ${t.data.length}`,
    );
  }
}

// Half-precision conversions live in engine/half.ts (tensor uploads use them too).
export { bf16BitsToNumber, f16BitsToNumber, numberToBf16Bits, numberToF16Bits } from "../half.ts";

/** Any numeric tensor as f32 (F32 data is returned as is, not copied). */
export function toFloat32(t: HostTensor): Float32Array {
  const d = t.data;
  switch (t.dtype) {
    case "F32":
      return d as Float32Array;
    case "F16": {
      const src = d as Uint16Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = f16BitsToNumber(src[i]);
      return out;
    }
    case "BF16": {
      const src = d as Uint16Array;
      const out = new Float32Array(src.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
      return out;
    }
    case "I64": {
      const src = d as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return out;
    }
    default:
      return Float32Array.from(d as Float64Array | Int32Array | Uint8Array);
  }
}

/** Integer tensor (I64, I32, U8, BOOL) as i32, throwing if an I64 value does not fit. */
export function toInt32(t: HostTensor, name = "tensor"): Int32Array {
  switch (t.dtype) {
    case "I32":
      return t.data as Int32Array;
    case "U8":
    case "BOOL":
      return Int32Array.from(t.data as Uint8Array);
    case "I64": {
      const src = t.data as BigInt64Array;
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i];
        if (v > 2147483647n || v < -2147483648n) {
          throw new InputError(`${name}: I64 value ${v} at index ${i} does not fit in i32`);
        }
        out[i] = Number(v);
      }
      return out;
    }
    default:
      throw new InputError(`${name}: expected an integer tensor, got dtype ${t.dtype}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/** safetensors' own limit on the JSON header; larger means a corrupt length field. */
const MAX_HEADER = 100_000_000;

interface Entry {
  key: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** Validates a parsed header against the size of the data section; returns entries by offset. */
function parseHeader(file: string, headerBytes: Uint8Array, dataLen: number): {
  entries: Entry[];
  metadata?: Record<string, string>;
} {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new InputError(
      `${file}: safetensors header is not valid UTF-8 JSON (${(e as Error).message})`,
    );
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new InputError(`${file}: safetensors header must be a JSON object`);
  }
  let metadata: Record<string, string> | undefined;
  const entries: Entry[] = [];
  for (const [key, v] of Object.entries(header as Record<string, unknown>)) {
    if (key === "__metadata__") {
      if (v === null || typeof v !== "object" || Array.isArray(v)) {
        throw new InputError(`${file}: field __metadata__: expected an object of strings`);
      }
      for (const [mk, mv] of Object.entries(v)) {
        if (typeof mv !== "string") {
          throw new InputError(
            `${file}: field __metadata__.${mk}: expected a string, got ${typeof mv}`,
          );
        }
      }
      metadata = v as Record<string, string>;
      continue;
    }
    const where = `${file}: tensor ${JSON.stringify(key)}`;
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new InputError(`${where}: expected an object {dtype, shape, data_offsets}`);
    }
    const { dtype, shape, data_offsets: offs } = v as Record<string, unknown>;
    if (!isDType(dtype)) {
      throw new InputError(
        `${where}: field dtype: expected one of ${Object.keys(DTYPE_SIZE).join(", ")}, got ${
          JSON.stringify(dtype)
        }`,
      );
    }
    if (
      !Array.isArray(shape) || shape.length > 64 ||
      !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) {
      throw new InputError(
        `${where}: field shape: expected an array of at most 64 non-negative integers, got ${
          String(JSON.stringify(shape)).slice(0, 80)
        }`,
        { file, field: "shape" },
      );
    }
    if (
      !Array.isArray(offs) || offs.length !== 2 ||
      !offs.every((o) => Number.isSafeInteger(o) && o >= 0)
    ) {
      throw new InputError(
        `${where}: field data_offsets: expected [begin, end] non-negative integers, got ${
          JSON.stringify(offs)
        }`,
      );
    }
    const [begin, end] = offs as number[];
    if (begin > end || end > dataLen) {
      throw new InputError(
        `${where}: field data_offsets: [${begin}, ${end}] is outside the data section of ${dataLen} bytes`,
      );
    }
    const want = numel(shape) * DTYPE_SIZE[dtype];
    if (end - begin !== want) {
      throw new InputError(
        `${where}: field data_offsets: [${begin}, ${end}] spans ${
          end - begin
        } bytes, expected ${want} for ${dtype} shape [${shape}]`,
      );
    }
    entries.push({ key, dtype, shape: shape as number[], begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev = "";
  for (const e of entries) {
    if (e.begin < pos) {
      throw new InputError(
        `${file}: tensor ${JSON.stringify(e.key)}: field data_offsets: [${e.begin}, ${e.end}] ` +
          `overlaps tensor ${JSON.stringify(prev)} (which ends at ${pos})`,
      );
    }
    if (e.begin > pos) {
      throw new InputError(
        `${file}: tensor ${JSON.stringify(e.key)}: field data_offsets: begins at ${e.begin}, ` +
          `expected ${pos} (no gaps allowed in the data section)`,
      );
    }
    pos = e.end;
    prev = e.key;
  }
  if (pos !== dataLen) {
    throw new InputError(
      `${file}: data section has ${dataLen} bytes but the tensors cover ${pos} (trailing or missing bytes)`,
    );
  }
  return { entries, metadata };
}

function headerLength(file: string, first8: Uint8Array, fileLen: number): number {
  if (fileLen < 8) {
    throw new InputError(`${file}: too short for safetensors (${fileLen} bytes, need at least 8)`);
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileLen - 8)) {
    throw new InputError(
      `${file}: safetensors header length ${n} runs past the end of the file (${fileLen} bytes)`,
    );
  }
  if (n > BigInt(MAX_HEADER)) {
    throw new InputError(`${file}: safetensors header length ${n} exceeds ${MAX_HEADER} bytes`);
  }
  return Number(n);
}

/** Parses a whole safetensors file held in memory; also returns the `__metadata__` map. */
export function parseSafetensorsWithMetadata(
  bytes: Uint8Array,
  name = "<safetensors>",
): { tensors: Map<string, HostTensor>; metadata?: Record<string, string> } {
  const n = headerLength(name, bytes.subarray(0, 8), bytes.length);
  const dataStart = 8 + n;
  const { entries, metadata } = parseHeader(
    name,
    bytes.subarray(8, dataStart),
    bytes.length - dataStart,
  );
  const tensors = new Map<string, HostTensor>();
  for (const e of entries) {
    const copy = bytes.slice(dataStart + e.begin, dataStart + e.end);
    tensors.set(e.key, { dtype: e.dtype, shape: e.shape, data: viewAs(e.dtype, copy) });
  }
  return { tensors, metadata };
}

/** Parses a whole safetensors file held in memory (tensor data is copied out of `bytes`). */
export function parseSafetensors(bytes: Uint8Array, name?: string): Map<string, HostTensor> {
  return parseSafetensorsWithMetadata(bytes, name).tensors;
}

async function readFully(f: Deno.FsFile, pos: number, buf: Uint8Array, file: string) {
  await f.seek(pos, Deno.SeekMode.Start);
  let off = 0;
  while (off < buf.length) {
    const got = await f.read(buf.subarray(off));
    if (got === null) {
      throw new InputError(`${file}: unexpected end of file at byte ${pos + off}`);
    }
    off += got;
  }
}

/**
 * Reads a safetensors file tensor by tensor (never one buffer for the whole file, so multi-GiB
 * checkpoints load).
 */
export async function readSafetensorsWithMetadata(
  path: string,
): Promise<{ tensors: Map<string, HostTensor>; metadata?: Record<string, string> }> {
  const f = await Deno.open(path, { read: true });
  try {
    const fileLen = (await f.stat()).size;
    const first8 = new Uint8Array(Math.min(8, fileLen));
    await readFully(f, 0, first8, path);
    const n = headerLength(path, first8, fileLen);
    const hdr = new Uint8Array(n);
    await readFully(f, 8, hdr, path);
    const dataStart = 8 + n;
    const { entries, metadata } = parseHeader(path, hdr, fileLen - dataStart);
    const tensors = new Map<string, HostTensor>();
    for (const e of entries) {
      const buf = new Uint8Array(e.end - e.begin);
      await readFully(f, dataStart + e.begin, buf, path);
      tensors.set(e.key, { dtype: e.dtype, shape: e.shape, data: viewAs(e.dtype, buf) });
    }
    return { tensors, metadata };
  } finally {
    f.close();
  }
}

/** Reads a safetensors file (see {@link readSafetensorsWithMetadata}). */
export async function readSafetensors(path: string): Promise<Map<string, HostTensor>> {
  return (await readSafetensorsWithMetadata(path)).tensors;
}

// ---------------------------------------------------------------------------------------------
// Writing.

/** Tensors to write: a record or a map of name to tensor. */
export type TensorDict = Record<string, HostTensor> | Map<string, HostTensor>;

/**
 * Serialises tensors to safetensors bytes. Tensors are laid out by decreasing element size then
 * name (as the reference writer does), so every tensor stays aligned to its element size.
 */
export function serializeSafetensors(
  tensors: TensorDict,
  metadata?: Record<string, string>,
): Uint8Array {
  const list = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))];
  for (const [k, t] of list) {
    if (k === "__metadata__") {
      throw new InputError(`serializeSafetensors: "__metadata__" is reserved`);
    }
    checkHostTensor(`serializeSafetensors: tensor ${JSON.stringify(k)}`, t);
  }
  if (metadata) {
    for (const [mk, mv] of Object.entries(metadata)) {
      if (typeof mv !== "string") {
        throw new InputError(
          `serializeSafetensors: metadata ${mk}: expected a string, got ${typeof mv}`,
        );
      }
    }
  }
  list.sort(([ka, a], [kb, b]) =>
    DTYPE_SIZE[b.dtype] - DTYPE_SIZE[a.dtype] || (ka < kb ? -1 : ka > kb ? 1 : 0)
  );
  // Null prototype: a tensor named "__proto__" must stay an ordinary key.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata) header.__metadata__ = metadata;
  let pos = 0;
  for (const [k, t] of list) {
    const nb = t.data.byteLength;
    header[k] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + nb] };
    pos += nb;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + pos);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let off = 8 + json.length;
  for (const [, t] of list) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), off);
    off += t.data.byteLength;
  }
  return out;
}

/** Writes tensors to `path` atomically (temp file + rename). */
export async function writeSafetensors(
  path: string,
  tensors: TensorDict,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}
