/**
 * The restricted unpickler (`unpickle` with torch's persistent-id loader), alone: the `data.pkl`
 * of a torch.save archive. Inputs: byte mutations of CPython and torch-style pickles, and
 * generated opcode programs (containers, memo PUT/GET sharing, marks, globals allowed and
 * refused, tensor rebuilds, persistent ids, frames, huge lengths) between PROTO and STOP.
 */
import fc from "fast-check";
import { InputError } from "../../../engine/io/errors.ts";
import { torchPersistentLoad, unpickle } from "../../../engine/io/pth.ts";
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";
import {
  emitTensor,
  le,
  PICKLE_OD_METADATA,
  PICKLE_P2,
  PICKLE_P2_BYTES,
  PICKLE_P4,
  Pickler,
  torchPickle,
} from "../../util/torch_archive.ts";

const spec = (key: string, n: number, shape: number[], stride: number[], offset = 0) => ({
  storage: "FloatStorage",
  key,
  numel: n,
  offset,
  shape,
  stride,
});

/** Dicts sharing their children `depth` levels deep (the shape of issue 13's hang). */
function dagPickle(depth: number): Uint8Array {
  const p = new Pickler().raw(0x80, 2);
  emitTensor(p, spec("0", 3, [3], [1])).raw(0x72, ...le(0, 4), 0x30);
  for (let i = 1; i <= depth; i++) {
    p.raw(0x7d, 0x28).str("a").raw(0x6a, ...le(i - 1, 4)).str("b").raw(0x6a, ...le(i - 1, 4));
    p.raw(0x75, 0x72, ...le(i, 4));
    if (i < depth) p.raw(0x30);
  }
  return new Uint8Array([...p.bytes(), 0x2e]);
}

export const PICKLE_SEEDS = [
  PICKLE_P2,
  PICKLE_P4,
  PICKLE_OD_METADATA,
  PICKLE_P2_BYTES,
  torchPickle(
    new Map<string, never>([
      ["w", spec("0", 6, [2, 3], [3, 1]) as never],
      ["b", spec("0", 6, [3], [1], 3) as never],
      ["t", spec("1", 4, [2, 2], [1, 2]) as never],
      ["z", spec("2", 1, [4], [0]) as never],
    ]),
  ),
  dagPickle(6),
];

/** One generated opcode (with its argument bytes). */
const op: fc.Arbitrary<number[]> = fc.oneof(
  fc.constantFrom<number[]>(
    [0x7d], // EMPTY_DICT
    [0x5d], // EMPTY_LIST
    [0x29], // EMPTY_TUPLE
    [0x8f], // EMPTY_SET
    [0x28], // MARK
    [0x74], // TUPLE
    [0x85], // TUPLE1
    [0x86], // TUPLE2
    [0x87], // TUPLE3
    [0x6c], // LIST
    [0x64], // DICT
    [0x73], // SETITEM
    [0x75], // SETITEMS
    [0x61], // APPEND
    [0x65], // APPENDS
    [0x90], // ADDITEMS
    [0x91], // FROZENSET
    [0x30], // POP
    [0x31], // POP_MARK
    [0x32], // DUP
    [0x4e], // NONE
    [0x88], // NEWTRUE
    [0x52], // REDUCE
    [0x81], // NEWOBJ
    [0x62], // BUILD
    [0x51], // BINPERSID
    [0x94], // MEMOIZE
    [0x93], // STACK_GLOBAL
    [0x2e], // STOP (early)
    [0x69], // INST (refused)
    [0x92], // NEWOBJ_EX (refused)
    [0xff], // unknown
    [...new TextEncoder().encode("ccollections\nOrderedDict\n")],
    [...new TextEncoder().encode("ctorch._utils\n_rebuild_tensor_v2\n")],
    [...new TextEncoder().encode("ctorch._utils\n_rebuild_parameter\n")],
    [...new TextEncoder().encode("ctorch\nFloatStorage\n")],
    [...new TextEncoder().encode("cos\nsystem\n")],
    [0x8c, 7, ...new TextEncoder().encode("storage")],
    [0x8c, 1, 0x30], // "0"
    [0x8c, 3, ...new TextEncoder().encode("cpu")],
  ),
  fc.nat(255).map((n) => [0x4b, n]), // BININT1
  fc.integer().map((n) => [0x4a, ...le(n >>> 0, 4)]), // BININT
  fc.nat(255).map((n) => [0x71, n]), // BINPUT
  fc.nat(255).map((n) => [0x68, n]), // BINGET
  fc.nat(300).map((n) => [0x6a, ...le(n, 4)]), // LONG_BINGET
  fc.nat(300).map((n) => [0x72, ...le(n, 4)]), // LONG_BINPUT
  fc.constantFrom(0, 1, 8, 0xffffffff).map((n) => [0x58, ...le(n, 4)]), // BINUNICODE length
  fc.constantFrom(0, 1, 2 ** 40).map((n) => [0x95, ...le(n, 8)]), // FRAME
  fc.uint8Array({ maxLength: 9 }).map((b) => [0x8a, b.length, ...b]), // LONG1
  fc.double().map((d) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, d);
    return [0x47, ...b]; // BINFLOAT
  }),
);

const program = fc.tuple(fc.constantFrom(2, 3, 4, 5, 6), fc.array(op, { maxLength: 60 })).map((
  [proto, ops],
) => new Uint8Array([0x80, proto, ...ops.flat(), 0x2e]));

const FILE = "<fuzz>.pkl";

const target: FuzzTarget = {
  name: "pickle",
  description: "data.pkl pickle → unpickle (restricted, torch persistent ids)",
  input: () =>
    fc.oneof({ weight: 1, arbitrary: fuzzBytes(PICKLE_SEEDS) }, {
      weight: 1,
      arbitrary: program,
    }),
  parse(input) {
    unpickle(input, { file: FILE, persistentLoad: torchPersistentLoad(FILE) });
  },
  isParserError: (e) => e instanceof InputError,
};
export default target;
