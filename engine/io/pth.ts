/**
 * PyTorch `torch.save` checkpoints (the zip format of torch >= 1.6): `<prefix>/data.pkl` is a
 * pickle whose persistent ids name raw storages at `<prefix>/data/<key>`.
 *
 * Pickle is a program, not data: a general unpickler runs arbitrary code. This one is a
 * restricted interpreter: it builds only Python containers and scalars, and the handful of torch
 * globals that rebuild tensors; any other global is refused when it is referenced. Nothing is
 * ever executed.
 */
import { InputError } from "./errors.ts";
import {
  type DType,
  DTYPE_SIZE,
  type HostData,
  type HostTensor,
  numel,
  viewAs,
} from "./safetensors.ts";
import { type ZipEntry, ZipReader } from "./zip.ts";

/** A global the unpickler accepted (only allow-listed ones ever exist). */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  toString(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage reference from a persistent id: `('storage', type, key, location, numel)`. */
export class StorageRef {
  constructor(
    readonly dtype: DType,
    readonly key: string,
    readonly location: string,
    readonly numel: number,
  ) {}
}

/** A tensor view on a storage, as `_rebuild_tensor_v2` describes it (not yet materialised). */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** Python objects as the unpickler returns them. dicts are Maps, tuples and lists are arrays. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | Map<PyValue, PyValue>
  | Set<PyValue>
  | PyGlobal
  | StorageRef
  | TensorRef
  | HostTensor;

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  DoubleStorage: "F64",
  LongStorage: "I64",
  IntStorage: "I32",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

const ALLOWED_GLOBALS = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

/** Options for {@link unpickle}. */
export interface UnpickleOptions {
  /** Name used in error messages. */
  file?: string;
  /** Resolves a BINPERSID id; without it persistent ids are refused. */
  persistentLoad?: (pid: PyValue) => PyValue;
  /**
   * Most objects and container items the pickle may build (default {@link MAX_PICKLE_OBJECTS}).
   * Each opcode is one byte but can build a container or copy one (`OrderedDict(memo[i])`), so
   * without a total a small pickle could fill the memory.
   */
  maxObjects?: number;
}

/**
 * Default bound on the opcodes run and objects built or copied by one pickle: a torch state dict
 * needs about 40 per tensor (counted on the sam-tiny fixture), so ViT-H about 25 000 and a
 * 10 000-tensor model about 400 000. At the bound the unpickler holds
 * about 300 MiB (a million empty dicts, measured). `EPSAM_MAX_PICKLE_OBJECTS` overrides it for loads.
 */
const MAX_PICKLE_OBJECTS = 1_000_000;

const MARK = Symbol("mark");
/** Longest integer accepted (bytes); decoding is quadratic, and checkpoints hold small ints. */
const MAX_INT_BYTES = 1024;
type StackItem = PyValue | typeof MARK;

/**
 * Restricted unpickler for protocols 2-5: containers, scalars, strings, bytes, allow-listed
 * torch globals. Throws on anything else, on malformed input, and on truncation.
 */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): PyValue {
  const file = opts.file ?? "<pickle>";
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const stack: StackItem[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let opPos = 0;
  const maxObjects = opts.maxObjects ?? MAX_PICKLE_OBJECTS;
  let objects = 0;

  const fail = (msg: string): never => {
    throw new InputError(`${file}: corrupt pickle at byte ${opPos}: ${msg}`, { file });
  };
  /** Counts `n` objects built or items copied against the pickle's budget. */
  const charge = (n: number) => {
    objects += n;
    if (objects > maxObjects) {
      throw new InputError(
        `${file}: refusing to load: the pickle builds more than ${maxObjects} objects ` +
          `(at byte ${opPos}); no checkpoint needs that many`,
        { file },
      );
    }
  };
  const need = (n: number) => {
    if (n < 0 || pos + n > bytes.length) fail(`truncated (needs ${n} more bytes)`);
  };
  const u8 = () => (need(1), bytes[pos++]);
  const u16 = () => (need(2), pos += 2, dv.getUint16(pos - 2, true));
  const u32 = () => (need(4), pos += 4, dv.getUint32(pos - 4, true));
  const i32 = () => (need(4), pos += 4, dv.getInt32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(bytes.length)) fail(`length ${v} exceeds the pickle size`);
    return Number(v);
  };
  const take = (n: number) => (need(n), pos += n, bytes.subarray(pos - n, pos));
  const str = (n: number) => {
    try {
      return utf8.decode(take(n));
    } catch {
      return fail("string is not valid UTF-8");
    }
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail("unterminated text argument");
    const s = new TextDecoder("latin1").decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined) fail("stack underflow");
    if (v === MARK) fail("unexpected MARK on the stack");
    return v as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length === 0) fail("stack underflow");
    const v = stack[stack.length - 1];
    if (v === MARK) fail("unexpected MARK on the stack");
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) fail("no MARK on the stack");
    charge(stack.length - i);
    const items = stack.splice(i) as PyValue[];
    items.shift();
    return items;
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) fail(`memo ${i} is not defined`);
    return memo.get(i)!;
  };
  const findGlobal = (module: string, name: string): PyGlobal => {
    const full = `${module}.${name}`.slice(0, 200);
    if (!ALLOWED_GLOBALS.has(full)) {
      throw new InputError(
        `${file}: refusing to load: pickle references global ${full}, which is not a tensor or ` +
          `container (only state dicts are accepted)`,
      );
    }
    return new PyGlobal(module, name);
  };
  const asDict = (v: PyValue, op: string): Map<PyValue, PyValue> => {
    if (!(v instanceof Map)) fail(`${op} on a ${typeName(v)}, expected a dict`);
    return v as Map<PyValue, PyValue>;
  };
  const asList = (v: PyValue, op: string): PyValue[] => {
    if (!Array.isArray(v) || Object.isFrozen(v)) fail(`${op} on a ${typeName(v)}, expected a list`);
    return v as PyValue[];
  };
  const tuple = (items: PyValue[]) => Object.freeze(items) as PyValue[];
  const call = (fn: PyValue, args: PyValue): PyValue => {
    if (!(fn instanceof PyGlobal)) return fail(`call of a ${typeName(fn)}`);
    if (!Array.isArray(args)) return fail(`call of ${fn} with ${typeName(args)} arguments`);
    return construct(file, fn, args, charge);
  };

  for (;;) {
    opPos = pos;
    if (pos >= bytes.length) fail("ends without a STOP opcode (truncated)");
    const op = bytes[pos++];
    charge(1);
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("unsupported pickle protocol");
        break;
      case 0x95: // FRAME: length-prefixed framing, the content follows inline
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} items on the stack`);
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        if (stack.length === 0) fail("stack underflow");
        stack.pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(tuple([]));
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x64: { // DICT
        const items = popMark();
        if (items.length % 2) fail("DICT with an odd number of items");
        const d = new Map<PyValue, PyValue>();
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        stack.push(d);
        break;
      }
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x74: // TUPLE
        stack.push(tuple(popMark()));
        break;
      case 0x85: // TUPLE1
        stack.push(tuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        stack.push(tuple([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        stack.push(tuple([pop(), b, c]));
        break;
      }
      case 0x91: // FROZENSET
        stack.push(new Set(popMark()));
        break;
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`ADDITEMS on a ${typeName(s)}`);
        for (const it of items) (s as Set<PyValue>).add(it);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        asDict(top(), "SETITEM").set(k, v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) fail("SETITEMS with an odd number of items");
        const d = asDict(top(), "SETITEMS");
        for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
        break;
      }
      case 0x61: { // APPEND
        const v = pop();
        asList(top(), "APPEND").push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const l = asList(top(), "APPENDS");
        for (const it of items) l.push(it);
        break;
      }
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: { // LONG1
        const n = u8();
        charge(n >> 3); // decoding costs about as much as building an object per 8 bytes
        stack.push(decodeLong(take(n)));
        break;
      }
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0 || n > MAX_INT_BYTES) fail(`LONG4 length ${n} out of range`);
        charge(n >> 3);
        stack.push(decodeLong(take(n)));
        break;
      }
      case 0x49: { // INT (text; "01"/"00" are booleans)
        const s = line().trim();
        if (s === "01" || s === "00") stack.push(s === "01");
        else if (/^[-+]?\d{1,1000}$/.test(s)) stack.push(intValue(BigInt(s)));
        else fail(`bad INT ${JSON.stringify(s.slice(0, 40))}`);
        break;
      }
      case 0x4c: { // LONG (text)
        const s = line().trim().replace(/L$/, "");
        if (!/^[-+]?\d{1,1000}$/.test(s)) fail(`bad LONG ${JSON.stringify(s.slice(0, 40))}`);
        stack.push(intValue(BigInt(s)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x46: { // FLOAT (text)
        const s = line().trim();
        const v = Number(s);
        if (Number.isNaN(v) && !/^[-+]?nan$/i.test(s)) fail(`bad FLOAT ${JSON.stringify(s)}`);
        stack.push(v);
        break;
      }
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64()));
        break;
      case 0x54: { // BINSTRING (python 2 str)
        const n = i32();
        if (n < 0) fail("negative BINSTRING length");
        stack.push(new TextDecoder("latin1").decode(take(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        stack.push(new TextDecoder("latin1").decode(take(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(take(u64()).slice());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x70: { // PUT (text)
        const s = line();
        if (!/^\d+$/.test(s)) fail(`bad PUT ${JSON.stringify(s)}`);
        memo.set(Number(s), top());
        break;
      }
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x67: { // GET (text)
        const s = line();
        if (!/^\d+$/.test(s)) fail(`bad GET ${JSON.stringify(s)}`);
        stack.push(memoGet(Number(s)));
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          fail("STACK_GLOBAL needs two strings");
        }
        stack.push(findGlobal(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        stack.push(call(pop(), args));
        break;
      }
      case 0x81: { // NEWOBJ: cls.__new__(cls, *args)
        const args = pop();
        stack.push(call(pop(), args));
        break;
      }
      case 0x62: { // BUILD: only dict state on a dict (OrderedDict `_metadata`), kept aside
        const state = pop();
        const obj = top();
        if (obj instanceof Map && (state === null || state instanceof Map)) {
          if (state) buildState.set(obj, state);
        } else if (
          isTensorLike(obj) && (state === null || state instanceof Map || Array.isArray(state))
        ) {
          // Tensor/Parameter python attributes: nothing numeric, ignored.
        } else {
          fail(`BUILD of ${typeName(obj)} with ${typeName(state)} state is not supported`);
        }
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail("persistent id without a loader");
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      default: {
        const name = REFUSED_OPS[op];
        if (name) {
          throw new InputError(
            `${file}: refusing to load: pickle opcode ${name} is not allowed (only state dicts are accepted)`,
          );
        }
        fail(`unknown opcode 0x${op.toString(16).padStart(2, "0")}`);
      }
    }
  }
}

const REFUSED_OPS: Record<number, string> = {
  0x69: "INST",
  0x6f: "OBJ",
  0x92: "NEWOBJ_EX",
  0x50: "PERSID",
  0x82: "EXT1",
  0x83: "EXT2",
  0x84: "EXT4",
  0x97: "NEXT_BUFFER",
  0x98: "READONLY_BUFFER",
};

/** State attached by BUILD to dicts (e.g. OrderedDict `_metadata`); informational only. */
const buildState = new WeakMap<object, Map<PyValue, PyValue>>();

/** The BUILD state attached to an unpickled dict, if any (state dicts carry `_metadata`). */
export function pickledAttributes(d: Map<PyValue, PyValue>): Map<PyValue, PyValue> | undefined {
  return buildState.get(d);
}

function intValue(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(v)
    : v;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Two's-complement little-endian integer (LONG1/LONG4 payload). */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  // Through a hex string: linear, where shifting a growing BigInt byte by byte is quadratic.
  let hex = "";
  for (let i = b.length - 1; i >= 0; i--) hex += HEX[b[i]];
  let v = BigInt(`0x${hex}`);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return intValue(v);
}

function isTensorLike(v: unknown): boolean {
  return v instanceof TensorRef || isHostTensor(v);
}

/** Whether `v` is a materialised tensor (as opposed to a container or scalar). */
export function isHostTensor(v: unknown): v is HostTensor {
  return typeof v === "object" && v !== null && !(v instanceof Map) && !Array.isArray(v) &&
    "dtype" in v && "shape" in v && "data" in v && ArrayBuffer.isView((v as HostTensor).data);
}

function typeName(v: unknown): string {
  if (v === null) return "None";
  if (Array.isArray(v)) return Object.isFrozen(v) ? "tuple" : "list";
  if (v instanceof Map) return "dict";
  if (v instanceof Set) return "set";
  if (v instanceof Uint8Array) return "bytes";
  if (v instanceof PyGlobal) return `global ${v}`;
  if (v instanceof StorageRef) return "storage";
  if (v instanceof TensorRef || isHostTensor(v)) return "tensor";
  return typeof v;
}

function isIntList(v: PyValue): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isSafeInteger(x) && (x as number) >= 0);
}

/** Most dimensions a tensor may have (torch's own limit is 64). */
const MAX_RANK = 64;

/** Calls one of the allow-listed globals (REDUCE / NEWOBJ). */
function construct(
  file: string,
  fn: PyGlobal,
  args: PyValue[],
  charge: (n: number) => void,
): PyValue {
  const full = fn.toString();
  // Copies and checks below are linear in their argument, which the memo lets a pickle reuse.
  charge(args.reduce<number>((n, a) => n + (Array.isArray(a) ? a.length : 0), 0));
  const bad = (why: string): never => {
    throw new InputError(`${file}: corrupt pickle: ${full}${why}`);
  };
  switch (full) {
    case "collections.OrderedDict": {
      const d = new Map<PyValue, PyValue>();
      if (args.length === 0) return d;
      if (args.length === 1 && Array.isArray(args[0])) {
        for (const kv of args[0] as PyValue[]) {
          if (!Array.isArray(kv) || kv.length !== 2) bad("() item is not a (key, value) pair");
          d.set((kv as PyValue[])[0], (kv as PyValue[])[1]);
        }
        return d;
      }
      if (args.length === 1 && args[0] instanceof Map) {
        charge(args[0].size);
        return new Map(args[0]);
      }
      return bad(`() with unsupported arguments`);
    }
    case "torch._utils._rebuild_tensor_v2": {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      const [storage, offset, size, stride] = args;
      if (args.length < 4) bad(`() needs at least 4 arguments, got ${args.length}`);
      if (!(storage instanceof StorageRef)) return bad("(): first argument is not a storage");
      if (!Number.isSafeInteger(offset) || (offset as number) < 0) bad("(): bad storage offset");
      if (!isIntList(size)) return bad(`(): size ${JSON.stringify(size)} is not a tuple of ints`);
      if (size.length > MAX_RANK) bad(`(): ${size.length} dimensions (at most ${MAX_RANK})`);
      if (!isIntList(stride) || stride.length !== size.length) {
        return bad(`(): stride ${JSON.stringify(stride)} does not match size [${size}]`);
      }
      return new TensorRef(storage, offset as number, [...size], [...stride]);
    }
    case "torch._utils._rebuild_parameter": {
      // (data, requires_grad, backward_hooks)
      if (!isTensorLike(args[0])) bad("(): first argument is not a tensor");
      return args[0];
    }
    default:
      return bad(" cannot be called (it is a storage type, only used in persistent ids)");
  }
}

// ---------------------------------------------------------------------------------------------
// torch.save zip archives.

/** Resolves the persistent ids of a torch pickle to {@link StorageRef}s. */
export function torchPersistentLoad(file: string) {
  return (pid: PyValue): PyValue => {
    if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== "storage") {
      throw new InputError(`${file}: corrupt pickle: persistent id is not ('storage', ...) `);
    }
    const [, type, key, location, n] = pid;
    if (!(type instanceof PyGlobal) || type.module !== "torch" || !(type.name in STORAGE_DTYPES)) {
      throw new InputError(
        `${file}: corrupt pickle: persistent id names storage type ${typeName(type)}`,
      );
    }
    if (typeof key !== "string" || !/^[\w.-]+$/.test(key)) {
      throw new InputError(
        `${file}: corrupt pickle: storage key ${JSON.stringify(key)} is invalid`,
      );
    }
    if (!Number.isSafeInteger(n) || (n as number) < 0) {
      throw new InputError(`${file}: corrupt pickle: storage ${key} has element count ${n}`);
    }
    return new StorageRef(STORAGE_DTYPES[type.name], key, String(location), n as number);
  };
}

/** The archive's record prefix: the folder holding `data.pkl` (e.g. `archive/`, `weights/`). */
function findPrefix(file: string, zip: ZipReader): { prefix: string; pkl: ZipEntry } {
  const pkls = zip.entries.filter((e) => e.name === "data.pkl" || e.name.endsWith("/data.pkl"));
  if (pkls.length !== 1) {
    throw new InputError(
      `${file}: not a torch.save archive: expected one entry ending in data.pkl, found ${pkls.length}`,
    );
  }
  const pkl = pkls[0];
  return { prefix: pkl.name.slice(0, pkl.name.length - "data.pkl".length), pkl };
}

/** Floor of {@link defaultMaxBytes}: room for small checkpoints with expanded (stride-0) views. */
const MIN_BUDGET = 256 * 2 ** 20;

/**
 * The most bytes a load may read, inflate or copy (pickle, storages, strided copies) unless told
 * otherwise: twice the file's size plus 256 MiB, or `EPSAM_MAX_CHECKPOINT_BYTES`. A legitimate
 * checkpoint needs about its own size (views share or slice their storages); only stride-0 or
 * overlapping views and inflated entries can ask for more, and a hostile file asks for far more.
 */
function defaultMaxBytes(fileSize: number): number {
  return envLimit("EPSAM_MAX_CHECKPOINT_BYTES") ?? 2 * fileSize + MIN_BUDGET;
}

/** A positive integer from the environment variable `name`, if set. */
function envLimit(name: string): number | undefined {
  let env: string | undefined;
  try {
    env = Deno.env.get(name);
  } catch { /* no env permission: the default */ }
  if (env === undefined || env === "") return undefined;
  const v = Number(env);
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new InputError(`${name}: expected a positive integer, got ${JSON.stringify(env)}`, {
      field: name,
    });
  }
  return v;
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(n < 2 ** 20 ? 3 : 1)} MiB`;
}

/** A running total of what one load reads, inflates and copies, checked before each allocation. */
class LoadBudget {
  used = 0;
  constructor(readonly file: string, readonly limit: number, readonly why: string) {}
  take(n: number, what: string): void {
    if (!Number.isSafeInteger(n) || n < 0 || this.used + n > this.limit) {
      throw new InputError(
        `${this.file}: refusing to load: ${what} needs ${Number.isFinite(n) ? mib(n) : n}, ` +
          `bringing the load to ${mib(this.used + n)}, over its limit of ${mib(this.limit)} ` +
          `(${this.why})`,
        { file: this.file },
      );
    }
    this.used += n;
  }
}

/** Copies a possibly strided view of `src` into a new contiguous array. */
function gather(src: HostData, t: TensorRef): HostData {
  const n = numel(t.shape);
  const Ctor = src.constructor as new (n: number) => HostData;
  const out = new Ctor(n);
  if (n === 0) return out;
  const rank = t.shape.length;
  // Contiguous fast path.
  let contiguous = true;
  for (let i = rank - 1, s = 1; i >= 0; i--) {
    if (t.shape[i] !== 1 && t.stride[i] !== s) contiguous = false;
    s *= t.shape[i];
  }
  if (contiguous) {
    (out as Uint8Array).set((src as Uint8Array).subarray(t.offset, t.offset + n));
    return out;
  }
  const idx = new Array(rank).fill(0);
  let p = t.offset;
  const s = src as unknown as ArrayLike<number> & { [i: number]: number };
  const o = out as unknown as { [i: number]: number };
  for (let i = 0; i < n; i++) {
    o[i] = s[p];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < t.shape[d]) {
        p += t.stride[d];
        break;
      }
      p -= (t.shape[d] - 1) * t.stride[d];
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Loads each storage and materialises each tensor view on it as a contiguous HostTensor. Every
 * claim (entry sizes, shapes, strides, offsets) is checked and the total that will be read,
 * inflated and copied is charged to `budget` before anything is read.
 */
async function materialise(
  file: string,
  zip: ZipReader,
  prefix: string,
  refs: Map<TensorRef, string>,
  verifyCrc: boolean,
  budget: LoadBudget,
): Promise<Map<TensorRef, HostTensor>> {
  const byKey = new Map<string, TensorRef[]>();
  for (const r of refs.keys()) {
    const l = byKey.get(r.storage.key) ?? [];
    l.push(r);
    byKey.set(r.storage.key, l);
  }
  const where = (v: TensorRef) => `${file}: tensor ${JSON.stringify(refs.get(v))}`;
  // A tensor covering its whole storage contiguously shares the buffer instead of copying.
  const sharesStorage = (v: TensorRef, views: TensorRef[]) =>
    v.offset === 0 && numel(v.shape) === v.storage.numel && views.length === 1 &&
    v.stride.every((s, d) => v.shape[d] === 1 || s === numel(v.shape.slice(d + 1)));
  const plan: { key: string; views: TensorRef[]; entry: ZipEntry; want: number }[] = [];
  for (const [key, views] of byKey) {
    const st = views[0].storage;
    for (const v of views) {
      if (v.storage.dtype !== st.dtype || v.storage.numel !== st.numel) {
        throw new InputError(
          `${where(v)}: storage ${key} is ${v.storage.numel} x ${v.storage.dtype} here but ` +
            `${st.numel} x ${st.dtype} for tensor ${JSON.stringify(refs.get(views[0]))}`,
          { file },
        );
      }
    }
    const name = `${prefix}data/${key}`;
    const entry = zip.entry(name);
    if (!entry) {
      throw new InputError(`${where(views[0])}: storage ${key}: archive has no entry ${name}`, {
        file,
      });
    }
    const want = st.numel * DTYPE_SIZE[st.dtype];
    if (!Number.isSafeInteger(want) || entry.size < want) {
      throw new InputError(
        `${where(views[0])}: storage ${key}: entry ${name} has ${entry.size} bytes, expected ` +
          `${want} (${st.numel} x ${st.dtype})`,
        { file },
      );
    }
    // With the CRC checked the whole entry streams through it (time, not memory).
    budget.take(verifyCrc ? entry.size : want, `storage ${key} (entry ${name})`);
    for (const v of views) {
      const n = numel(v.shape);
      let last = v.offset;
      for (let d = 0; d < v.shape.length; d++) last += (v.shape[d] - 1) * v.stride[d];
      if (n > 0 && last >= st.numel) {
        throw new InputError(
          `${where(v)}: view [${v.shape}] stride [${v.stride}] offset ${v.offset} reaches ` +
            `element ${last} of storage ${key}, which has ${st.numel}`,
          { file },
        );
      }
      if (!sharesStorage(v, views)) {
        budget.take(
          n * DTYPE_SIZE[st.dtype],
          `tensor ${JSON.stringify(refs.get(v))} (shape [${v.shape}] stride [${v.stride}] on ` +
            `storage ${key} of ${st.numel} elements)`,
        );
      }
    }
    plan.push({ key, views, entry, want });
  }
  const out = new Map<TensorRef, HostTensor>();
  for (const { views, entry, want } of plan) {
    const st = views[0].storage;
    const data = viewAs(st.dtype, await zip.read(entry, { verifyCrc, limit: want }));
    for (const v of views) {
      out.set(v, {
        dtype: st.dtype,
        shape: v.shape,
        data: sharesStorage(v, views) ? data : gather(data, v),
      });
    }
  }
  return out;
}

/** Deeper nesting than any checkpoint has; bounds the recursive walks below. */
const MAX_DEPTH = 256;

/** Finds every tensor, with the dotted path of its first occurrence (for error messages). */
function collectRefs(
  file: string,
  v: PyValue,
  acc: Map<TensorRef, string>,
  seen: Set<object>,
  path = "",
  depth = 0,
): void {
  if (v instanceof TensorRef) {
    if (!acc.has(v)) acc.set(v, path);
  } else if (v instanceof Map || Array.isArray(v) || v instanceof Set) {
    if (seen.has(v)) return;
    if (depth > MAX_DEPTH) {
      throw new InputError(`${file}: pickle nests containers over ${MAX_DEPTH} deep`);
    }
    seen.add(v);
    const sub = (k: PyValue) =>
      (path ? `${path}.` : "") + (k !== null && typeof k === "object" ? "?" : String(k));
    if (v instanceof Map) {
      for (const [k, x] of v) {
        collectRefs(file, k, acc, seen, sub("?"), depth + 1);
        collectRefs(file, x, acc, seen, sub(k), depth + 1);
      }
    } else {
      let i = 0;
      for (const x of v) collectRefs(file, x, acc, seen, sub(i++), depth + 1);
    }
  }
}

function replaceRefs(
  v: PyValue,
  done: Map<TensorRef, HostTensor>,
  seen: Map<object, PyValue>,
): PyValue {
  if (v instanceof TensorRef) return done.get(v)!;
  if (v instanceof Map) {
    if (seen.has(v)) return seen.get(v)!;
    const m = new Map<PyValue, PyValue>();
    seen.set(v, m);
    for (const [k, x] of v) m.set(replaceRefs(k, done, seen), replaceRefs(x, done, seen));
    const attrs = buildState.get(v);
    if (attrs) buildState.set(m, attrs);
    return m;
  }
  if (Array.isArray(v)) {
    if (seen.has(v)) return seen.get(v)!;
    const a: PyValue[] = [];
    seen.set(v, a);
    for (const x of v) a.push(replaceRefs(x, done, seen));
    return Object.isFrozen(v) ? Object.freeze(a) as PyValue[] : a;
  }
  if (v instanceof Set) {
    if (seen.has(v)) return seen.get(v)!;
    const t = new Set<PyValue>();
    seen.set(v, t);
    for (const x of v) t.add(replaceRefs(x, done, seen));
    return t;
  }
  return v;
}

/** Options for {@link readPthObject} and {@link loadPth}. */
export interface PthOptions {
  /** Check each entry's CRC-32 (default true). */
  verifyCrc?: boolean;
  /**
   * Most bytes the load may read, inflate and copy (default {@link defaultMaxBytes} of the
   * file's size).
   */
  maxBytes?: number;
  /** Most objects the pickle may build (default {@link MAX_PICKLE_OBJECTS}). */
  maxObjects?: number;
}

/**
 * Loads a torch.save archive as the raw unpickled object, with tensors materialised as
 * contiguous {@link HostTensor}s. Dicts are Maps, lists/tuples arrays (tuples frozen).
 */
export async function readPthObject(path: string, opts: PthOptions = {}): Promise<PyValue> {
  const zip = await ZipReader.open(path);
  try {
    const budget = opts.maxBytes !== undefined
      ? new LoadBudget(path, opts.maxBytes, "the maxBytes option")
      : new LoadBudget(
        path,
        defaultMaxBytes(zip.size),
        envLimit("EPSAM_MAX_CHECKPOINT_BYTES") !== undefined
          ? "EPSAM_MAX_CHECKPOINT_BYTES"
          : "2 x the file's size + 256 MiB; set EPSAM_MAX_CHECKPOINT_BYTES to allow more",
      );
    const verifyCrc = opts.verifyCrc !== false;
    const { prefix, pkl } = findPrefix(path, zip);
    const order = zip.entry(`${prefix}byteorder`);
    if (order) {
      if (order.size > 64) {
        throw new InputError(
          `${path}: entry ${order.name} holds ${order.size} bytes, expected "little" or "big"`,
          { file: path, field: "byteorder" },
        );
      }
      const s = new TextDecoder().decode(await zip.read(order, { verifyCrc })).trim();
      if (s !== "little") {
        throw new InputError(
          `${path}: storages are ${
            JSON.stringify(s.slice(0, 20))
          }-endian; only little is supported`,
          { file: path, field: "byteorder" },
        );
      }
    }
    budget.take(pkl.size, `the pickle (entry ${pkl.name})`);
    const obj = unpickle(await zip.read(pkl, { verifyCrc }), {
      file: path,
      persistentLoad: torchPersistentLoad(path),
      maxObjects: opts.maxObjects ?? envLimit("EPSAM_MAX_PICKLE_OBJECTS"),
    });
    const refs = new Map<TensorRef, string>();
    collectRefs(path, obj, refs, new Set());
    const done = await materialise(path, zip, prefix, refs, verifyCrc, budget);
    return replaceRefs(obj, done, new Map());
  } finally {
    zip.close();
  }
}

/** Most entries flattening a state dict may visit; checkpoints have thousands. */
const MAX_STATE_DICT_ENTRIES = 1_000_000;
/** Longest flattened key; real ones are under a hundred characters. */
const MAX_KEY_LENGTH = 4096;
/** Most characters all flattened keys together may hold (a ViT-H state dict has 30 000). */
const MAX_KEY_CHARS = 8 * 2 ** 20;

/** Options for {@link loadPth}. */
export interface LoadPthOptions extends PthOptions {
  /** Most entries flattening may visit (default {@link MAX_STATE_DICT_ENTRIES}). */
  maxEntries?: number;
  /** Dotted path of the state dict inside a larger checkpoint, e.g. `"model"`. */
  select?: string;
}

/**
 * Loads a torch.save'd state dict as `name -> tensor`. Nested dicts flatten to dotted keys;
 * any non-tensor leaf (epoch counters, optimizer settings) is an error that lists the top-level
 * keys, so a full training checkpoint needs `select`.
 */
export async function loadPth(
  path: string,
  opts: LoadPthOptions = {},
): Promise<Map<string, HostTensor>> {
  let obj = await readPthObject(path, opts);
  if (opts.select) {
    for (const part of opts.select.split(".")) {
      if (!(obj instanceof Map) || !obj.has(part)) {
        const keys = obj instanceof Map ? [...obj.keys()].map(String).join(", ") : typeName(obj);
        throw new InputError(
          `${path}: select ${JSON.stringify(opts.select)}: no key ${
            JSON.stringify(part)
          } (have: ${keys})`,
        );
      }
      obj = obj.get(part)!;
    }
  }
  if (!(obj instanceof Map)) {
    throw new InputError(`${path}: not a state dict: the top-level object is a ${typeName(obj)}`);
  }
  const out = new Map<string, HostTensor>();
  // Dicts may be shared (the memo makes a DAG): a walk without a bound would follow every path,
  // 2^60 of them for 60 levels of dicts that share their children in a kilobyte of pickle.
  let visits = 0;
  let nameChars = 0;
  const maxVisits = opts.maxEntries ?? MAX_STATE_DICT_ENTRIES;
  const walk = (d: Map<PyValue, PyValue>, prefix: string) => {
    for (const [k, v] of d) {
      if (++visits > maxVisits) {
        throw new InputError(
          `${path}: not a state dict: flattening it visits more than ${maxVisits} entries ` +
            `(dicts shared between keys repeat their contents under each name)`,
          { file: path },
        );
      }
      if (typeof k !== "string") {
        throw new InputError(
          `${path}: not a state dict: key ${String(k)} under "${prefix}" is not a string`,
        );
      }
      const name = prefix + k;
      if (name.length > MAX_KEY_LENGTH) {
        throw new InputError(
          `${path}: not a state dict: key ${JSON.stringify(name.slice(0, 60))}... is longer ` +
            `than ${MAX_KEY_LENGTH} characters`,
          { file: path },
        );
      }
      if (isHostTensor(v)) {
        nameChars += name.length;
        if (nameChars > MAX_KEY_CHARS) {
          throw new InputError(
            `${path}: not a state dict: its ${out.size + 1} flattened keys add up to more than ` +
              `${MAX_KEY_CHARS} characters (dicts shared between keys repeat their contents)`,
            { file: path },
          );
        }
        if (out.has(name)) throw new InputError(`${path}: duplicate key ${name} after flattening`);
        out.set(name, v);
      } else if (v instanceof Map) walk(v, name + ".");
      else {
        const top = [...(obj as Map<PyValue, PyValue>).keys()].map(String).join(", ");
        throw new InputError(
          `${path}: not a state dict: ${name} holds a ${typeName(v)}, not a tensor ` +
            `(top-level keys: ${top}; pass select to pick the state dict)`,
        );
      }
    }
  };
  walk(obj, "");
  return out;
}
