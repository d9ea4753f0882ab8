/**
 * Byte-level mutations of valid seed inputs, as fast-check arbitraries: a parser fed only random
 * bytes never gets past its magic number, so most fuzz inputs start from a valid file and change
 * a few things the way a damaged or hostile file would (flipped bits, boundary integers written
 * over length and offset fields, truncation, inserted or repeated runs).
 */
import fc from "fast-check";

/** 32-bit values that break size, count and offset arithmetic. */
const INTERESTING_U32 = [
  0,
  1,
  2,
  0x7f,
  0x80,
  0xff,
  0x100,
  0x7fff,
  0x8000,
  0xffff,
  0x10000,
  0x7fffffff,
  0x80000000,
  0xfffffffe,
  0xffffffff,
];

type Mutation = (b: Uint8Array, at: number, v: number) => Uint8Array;

const MUTATIONS: Mutation[] = [
  // flip one bit
  (b, at, v) => {
    const o = b.slice();
    if (o.length) o[at % o.length] ^= 1 << (v & 7);
    return o;
  },
  // set one byte to a boundary value
  (b, at, v) => {
    const o = b.slice();
    if (o.length) o[at % o.length] = [0, 0xff, 0x7f, 0x80, 1][v % 5];
    return o;
  },
  // overwrite four bytes with a boundary u32, little- or big-endian
  (b, at, v) => {
    const o = b.slice();
    if (o.length < 4) return o;
    const p = at % (o.length - 3);
    new DataView(o.buffer).setUint32(p, INTERESTING_U32[v % INTERESTING_U32.length], v % 2 === 0);
    return o;
  },
  // truncate
  (b, at) => b.slice(0, b.length ? at % b.length : 0),
  // delete a run
  (b, at, v) => {
    if (!b.length) return b;
    const p = at % b.length;
    return concat(b.subarray(0, p), b.subarray(Math.min(b.length, p + 1 + (v % 64))));
  },
  // repeat a run in place
  (b, at, v) => {
    if (!b.length) return b;
    const p = at % b.length;
    const run = b.subarray(p, Math.min(b.length, p + 1 + (v % 64)));
    return concat(b.subarray(0, p), run, run, b.subarray(p + run.length));
  },
  // insert random-looking bytes
  (b, at, v) => {
    const p = b.length ? at % (b.length + 1) : 0;
    const ins = new Uint8Array(1 + (v % 16)).map((_, i) => (v * 31 + i * 97) & 0xff);
    return concat(b.subarray(0, p), ins, b.subarray(p));
  },
];

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
}

/** Applies `mutations` (kind, position, value) to `seed` in order. */
export function applyMutations(
  seed: Uint8Array,
  mutations: [number, number, number][],
): Uint8Array {
  let b = seed;
  for (const [kind, at, v] of mutations) b = MUTATIONS[kind % MUTATIONS.length](b, at, v);
  return b;
}

/** One of `seeds` with 1 to `maxMutations` mutations applied. */
export function mutatedBytes(seeds: Uint8Array[], maxMutations = 4): fc.Arbitrary<Uint8Array> {
  if (!seeds.length) throw new Error("mutatedBytes: at least one seed is needed");
  const mutation = fc.tuple(
    fc.nat(MUTATIONS.length - 1),
    fc.nat(0x7fffffff),
    fc.nat(0x7fffffff),
  );
  return fc
    .tuple(fc.nat(seeds.length - 1), fc.array(mutation, { minLength: 1, maxLength: maxMutations }))
    .map(([i, ms]) => applyMutations(seeds[i], ms));
}

/** Mutated seeds most of the time, plain random bytes (up to `maxLength`) sometimes. */
export function fuzzBytes(seeds: Uint8Array[], maxLength = 4096): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 9, arbitrary: mutatedBytes(seeds) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength }) },
  );
}
