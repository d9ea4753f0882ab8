import fc from "fast-check";
import assert from "node:assert";
import { dispatchStats, F, noGrad, type Tensor, tensor, tidy, view } from "../../engine/mod.ts";
import { planMatmulChunks } from "../../engine/ops/matmul_plan.ts";
import { setMatmulPackForm } from "../../engine/ops/matmul_texture.ts";
import { setMatmulVariant } from "../../engine/routing.ts";
import {
  matmulTileName,
  type MatmulVariant,
  REGISTER_TILE,
  REGISTER_TILE_SMALL,
  type RegisterTile,
  TILED_TILE,
} from "../../kernels/matmul.ts";
import {
  TEXTURE_TILE,
  TEXTURE_TILE_SMALL,
  type TextureTile,
} from "../../kernels/matmul_texture.ts";
import { tileCandidates } from "../../engine/autotune.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { linearRef, matmulRef, transposeRef } from "../reference/matmul.ts";

await setup();

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);
const TOL = { atol: 1e-4, rtol: 1e-4 };

/**
 * An operand of logical shape `shape`, optionally stored transposed (a transposed view over
 * [.., cols, rows] storage), so the kernel reads it through strides.
 */
function operand(shape: number[], seed: number, trans: boolean): { t: Tensor; data: Float32Array } {
  const data = randArray(prod(shape), seed);
  if (!trans || shape.length < 2) return { t: tensor(data, shape), data };
  const st = transposeRef(data, shape);
  return { t: F.transpose(tensor(Float32Array.from(st.data), st.shape)), data };
}

interface Case {
  a: number[];
  b: number[];
  ta?: boolean;
  tb?: boolean;
}

const CASES: Case[] = [
  { a: [1, 1], b: [1, 1] },
  { a: [1, 7], b: [7, 1] },
  { a: [5, 3], b: [3, 7] },
  { a: [13, 17], b: [17, 11] },
  { a: [8, 16], b: [16, 12] }, // vec4 on both
  { a: [33, 65], b: [65, 31] },
  { a: [64, 64], b: [64, 64], ta: true },
  { a: [29, 12], b: [12, 40], ta: true, tb: true },
  { a: [7, 9], b: [9, 5], tb: true },
  { a: [12, 8], b: [8, 20], ta: true, tb: true }, // vec4 transposed
  { a: [3, 5, 7], b: [3, 7, 4] }, // batch
  { a: [2, 1, 4, 6], b: [3, 6, 5] }, // broadcast batch
  { a: [2, 3, 4, 6], b: [6, 5] }, // B shared: folded into M
  { a: [4, 6], b: [2, 3, 6, 5], tb: true },
  { a: [2, 3, 2, 5, 3], b: [1, 3, 1, 3, 4], ta: true }, // three batch dims, some broadcast
  { a: [7], b: [7] }, // 1-D · 1-D
  { a: [7], b: [7, 3] },
  { a: [4, 7], b: [7] },
  { a: [2, 4, 7], b: [7] },
  { a: [7], b: [2, 7, 3], tb: true },
];

/** Runs the cases, checks each against float64 and returns the outputs (for bitwise checks). */
async function runCases(label: string, cases: Case[]): Promise<Float32Array[]> {
  const outs: { y: Tensor; ref: ReturnType<typeof matmulRef>; what: string }[] = [];
  cases.forEach((c, i) => {
    const A = operand(c.a, 10 + i, !!c.ta), B = operand(c.b, 50 + i, !!c.tb);
    const y = noGrad(() => F.matmul(A.t, B.t));
    outs.push({
      y,
      ref: matmulRef(A.data, c.a, B.data, c.b),
      what: `${label} [${c.a}]${c.ta ? "ᵀ" : ""}·[${c.b}]${c.tb ? "ᵀ" : ""}`,
    });
    A.t.dispose();
    B.t.dispose();
  });
  const got: Float32Array[] = [];
  for (const o of outs) {
    assert.deepStrictEqual(o.y.shape, o.ref.shape, o.what);
    const d = await o.y.data() as Float32Array;
    assertClose(d, o.ref.data, { ...TOL, what: o.what });
    got.push(d);
    o.y.dispose();
  }
  return got;
}

const VARIANTS: [string, MatmulVariant, RegisterTile | null][] = [
  ["register 4x4", "register", REGISTER_TILE_SMALL],
  ["register 12x12", "register", REGISTER_TILE],
  ["tiled", "tiled", TILED_TILE],
  ["texture 4x4", "texture", TEXTURE_TILE_SMALL],
  ["texture default tile", "texture", TEXTURE_TILE],
];

for (const [label, v, tile] of VARIANTS) {
  Deno.test(`matmul (${label}) matches float64 on awkward shapes, batches and transposed views`, async () => {
    setMatmulVariant(v, tile);
    try {
      await runCases(label, CASES);
    } finally {
      setMatmulVariant(null);
    }
  });
}

/** Runs the cases with one variant and tile forced. */
async function withTile(
  v: MatmulVariant,
  tile: TextureTile,
  label: string,
): Promise<Float32Array[]> {
  setMatmulVariant(v, tile);
  try {
    return await runCases(label, CASES);
  } finally {
    setMatmulVariant(null);
  }
}

// Every tile the autotuner may choose (engine/autotune.ts) against float64 on the awkward shapes,
// and bit for bit against the default tile: a tuned tile never changes a result.
for (const family of ["texture", "tiled"] as const) {
  const def = family === "texture" ? TEXTURE_TILE : TILED_TILE;
  const covered = VARIANTS.filter(([, v]) => v === family).map(([, , t]) => matmulTileName(t!));
  let ref: Promise<Float32Array[]> | null = null;
  for (const tile of tileCandidates(family)) {
    const name = matmulTileName(tile);
    if (covered.includes(name)) continue;
    Deno.test(`matmul (${family} ${name}, an autotune candidate) matches float64 and the default tile bitwise`, async () => {
      ref ??= withTile(family, def, `${family} default`);
      const want = await ref;
      const got = await withTile(family, tile, `${family} ${name}`);
      got.forEach((g, i) => assert.deepStrictEqual(g, want[i], `${family} ${name} case ${i}`));
    });
  }
}

// The texture variant's pack kernels pick their lane direction by the operand's strides and skip
// the batch arithmetic of unbatched operands; every form must pack the same texels, so forcing one
// gives bitwise the default's output.
Deno.test("texture matmul packs operands the same whatever the pack form", async () => {
  const want = await withTile("texture", TEXTURE_TILE, "texture, pack form auto");
  for (const mode of ["k", "rows", "before"] as const) {
    const old = setMatmulPackForm(mode);
    try {
      const got = await withTile("texture", TEXTURE_TILE, `texture, pack form ${mode}`);
      got.forEach((g, i) => assert.deepStrictEqual(g, want[i], `pack form ${mode} case ${i}`));
    } finally {
      setMatmulPackForm(old);
    }
  }
});

// Operands whose bytes already are a texture layout are copied, not packed: k contiguous with
// K % 64 = 0 (a linear layer's input and transposed weight) into a texture row per row, a
// row-major B with N % 64 = 0 as it is (bRowMajor kernels). Fewer dispatches, the same products.
Deno.test("texture matmul copies operands already in the texture layout, bitwise as packed", async () => {
  const cases: { a: number[]; b: number[]; tb: boolean; offA?: number; dispatches: number }[] = [
    { a: [37, 64], b: [64, 29], tb: true, dispatches: 1 }, // x·Wᵀ: both copied
    { a: [3, 9, 128], b: [3, 128, 5], tb: true, dispatches: 1 }, // batched: a copy per batch
    { a: [1, 192], b: [192, 1], tb: true, dispatches: 1 }, // single rows
    { a: [2, 7, 64], b: [64, 6], tb: false, dispatches: 2 }, // row-major B, N = 6: packed
    { a: [37, 64], b: [64, 64], tb: false, dispatches: 1 }, // row-major B copied as it is
    { a: [3, 5, 64], b: [3, 64, 128], tb: false, dispatches: 1 }, // ... a copy per batch
    { a: [2, 3, 64], b: [64, 64], tb: false, dispatches: 1 }, // ... shared by every batch
    { a: [9, 20], b: [20, 64], tb: false, dispatches: 2 }, // B copied, A (K = 20) packed
    { a: [5, 64], b: [64, 3], tb: true, offA: 64, dispatches: 1 }, // A a view 256 bytes in
    { a: [5, 64], b: [64, 3], tb: true, offA: 2, dispatches: 2 }, // 8 bytes in: A packed
  ];
  // The small tile: the same generator path, far quicker to compile on lavapipe.
  setMatmulVariant("texture", TEXTURE_TILE_SMALL);
  try {
    for (const [i, c] of cases.entries()) {
      const what = `copy case ${i}: [${c.a}]·[${c.b}]${c.tb ? "ᵀ" : ""}`;
      const ad = randArray(prod(c.a), 70 + i);
      const off = c.offA ?? 0;
      const store = tensor(Float32Array.from([...new Float32Array(off), ...ad]), [off + ad.length]);
      const rowStrides = c.a.map((_, d) => prod(c.a.slice(d + 1)));
      const A = view(store, c.a, rowStrides, off);
      const B = operand(c.b, 90 + i, c.tb);
      const before = dispatchStats().dispatches;
      const y = F.matmulRaw(A, B.t, { variant: "texture" });
      assert.strictEqual(dispatchStats().dispatches - before, c.dispatches, what);
      const old = setMatmulPackForm("before");
      let packed: Tensor;
      try {
        packed = F.matmulRaw(A, B.t, { variant: "texture" });
      } finally {
        setMatmulPackForm(old);
      }
      const got = await y.data() as Float32Array;
      assert.deepStrictEqual(got, await packed.data(), what);
      assertClose(got, matmulRef(ad, c.a, B.data, c.b).data, { ...TOL, what });
      for (const t of [store, A, B.t, y, packed]) t.dispose();
    }
  } finally {
    setMatmulVariant(null);
  }
});

Deno.test("matmul reads transposed, sliced and expanded views in place (one dispatch, no copy)", async () => {
  const a = tensor(randArray(6 * 4, 1), [6, 4]), b = tensor(randArray(6 * 5, 2), [6, 5]);
  const before = dispatchStats().dispatches;
  const y = F.matmul(F.transpose(a), b); // [4, 6]·[6, 5]
  assert.strictEqual(dispatchStats().dispatches - before, 1);
  const ad = await a.data(), bd = await b.data();
  assertClose(
    await y.data(),
    matmulRef(transposeRef(ad, [6, 4]).data, [4, 6], bd, [6, 5]).data,
    TOL,
  );
  // A column slice (row stride 4, offset 1: scalar path) and a row expanded to 3 rows (stride 0).
  const s = F.slice(a, 1, 1, 3); // [6, 2]
  const bs = tensor(randArray(2 * 3, 3), [2, 3]);
  const y2 = F.matmul(s, bs);
  const sd = Array.from({ length: 12 }, (_, i) => ad[Math.floor(i / 2) * 4 + 1 + (i % 2)]);
  assertClose(await y2.data(), matmulRef(sd, [6, 2], await bs.data(), [2, 3]).data, TOL);
  const r = F.expand(F.slice(b, 0, 2, 3), [3, 5]); // row 2 of b, 3 times
  const before2 = dispatchStats().dispatches;
  const y3 = F.matmul(tensor(randArray(4 * 3, 4), [4, 3]), r);
  assert.strictEqual(dispatchStats().dispatches - before2, 1);
  const rd = Array.from({ length: 15 }, (_, i) => bd[10 + (i % 5)]);
  assertClose(await y3.data(), matmulRef(randArray(12, 4), [4, 3], rd, [3, 5]).data, TOL);
  for (const t of [a, b, y, s, bs, y2, r, y3]) t.dispose();
});

Deno.test("matmul: random shapes, layouts and broadcast batches match float64 (fast-check)", async () => {
  const dim = fc.integer({ min: 1, max: 19 });
  await fc.assert(
    fc.asyncProperty(
      dim,
      dim,
      dim,
      fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
      fc.nat(15),
      fc.boolean(),
      fc.boolean(),
      fc.constantFrom<MatmulVariant>("register", "tiled", "texture"),
      async (M, K, N, batch, mask, ta, tb, v) => {
        const ab = batch.map((s, i) => (mask >> i) & 1 ? 1 : s);
        const bb = batch.map((s, i) => (mask >> (i + 2)) & 1 ? 1 : s);
        const c: Case = { a: [...ab, M, K], b: [...bb, K, N], ta, tb };
        setMatmulVariant(v);
        try {
          await runCases(v, [c]);
        } finally {
          setMatmulVariant(null);
        }
      },
    ),
    { numRuns: 16 },
  );
});

Deno.test("linear (fused bias) and alpha/beta accumulation match float64", async () => {
  const x = randArray(2 * 5 * 9, 1), w = randArray(6 * 9, 2), bias = randArray(6, 3);
  const xt = tensor(x, [2, 5, 9]), wt = tensor(w, [6, 9]), bt = tensor(bias, [6]);
  const y = F.linear(xt, wt, bt);
  assert.deepStrictEqual(y.shape, [2, 5, 6]);
  assertClose(await y.data(), linearRef(x, [2, 5, 9], w, [6, 9], bias).data, {
    ...TOL,
    what: "linear 3-D",
  });
  const y1 = F.linear(tensor(x.slice(0, 9), [9]), wt);
  assertClose(await y1.data(), linearRef(x.slice(0, 9), [9], w, [6, 9]).data, {
    ...TOL,
    what: "linear 1-D",
  });
  // out = 0.5·A·B + 2·out + bias
  const A = tensor(randArray(7 * 3, 4), [7, 3]), B = tensor(randArray(3 * 5, 5), [3, 5]);
  const out = tensor(randArray(35, 6), [7, 5]), bb = tensor(randArray(5, 7), [5]);
  const prev = await out.data();
  F.matmulRaw(A, B, { alpha: 0.5, beta: 2, out, bias: bb });
  const ref = matmulRef(await A.data(), [7, 3], await B.data(), [3, 5]).data;
  const bd = await bb.data();
  assertClose(await out.data(), ref.map((v, i) => 0.5 * v + 2 * prev[i] + bd[i % 5]), {
    ...TOL,
    what: "alpha/beta/bias",
  });
  // K = 0: the empty sum plus bias.
  const e = F.matmulRaw(tensor([], [3, 0]), tensor([], [0, 5]), { bias: bb });
  assertClose(await e.data(), Array.from({ length: 15 }, (_, i) => bd[i % 5]), { what: "K = 0" });
  for (const t of [xt, wt, bt, y, y1, A, B, out, bb, e]) t.dispose();
});

Deno.test("bindings over the limit are split into several dispatches (forced small limit)", async () => {
  for (const v of ["register", "tiled", "texture"] as const) {
    const cases: [number[], number[], boolean][] = [
      [[3, 40, 24], [3, 24, 36], false], // split over batch, then rows
      [[130, 24], [24, 200], true], // rows and columns, transposed B
      [[2, 70, 16], [16, 90], false], // B shared (folded rows); B itself split along K
      [[40, 300], [300, 8], false], // split-K with accumulation
    ];
    for (const [as, bs, tb] of cases) {
      const A = operand(as, 1, false), B = operand(bs, 2, tb);
      const before = dispatchStats().dispatches;
      const y = F.matmulRaw(A.t, B.t, { maxBindingBytes: 4096, variant: v });
      const n = dispatchStats().dispatches - before;
      assert.ok(n > 1, `${v} [${as}]·[${bs}] should need several dispatches, got ${n}`);
      assertClose(await y.data(), matmulRef(A.data, as, B.data, bs).data, {
        ...TOL,
        what: `${v} split [${as}]·[${bs}]`,
      });
      for (const t of [A.t, B.t, y]) t.dispose();
    }
  }
});

Deno.test("texture matmul splits batches, rows and columns over small staging textures", async () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[3, 40, 24], [3, 24, 36], false, false], // both batched: split over batch, then rows
    [[130, 21], [21, 50], false, true], // rows (A) and columns (B), transposed B, K % 4 = 1
    [[2, 5, 30, 16], [16, 45], true, false], // B shared by every batch, A transposed
  ];
  for (const [as, bs, ta, tb] of cases) {
    const A = operand(as, 3, ta), B = operand(bs, 4, tb);
    const before = dispatchStats().dispatches;
    const y = F.matmulRaw(A.t, B.t, { maxTextureRows: 32, variant: "texture" });
    // Each chunk packs A and B and runs one product: more than one chunk means more than 3.
    const n = dispatchStats().dispatches - before;
    assert.ok(n > 3, `[${as}]·[${bs}] should need several chunks, got ${n} dispatches`);
    assertClose(await y.data(), matmulRef(A.data, as, B.data, bs).data, {
      ...TOL,
      what: `texture split [${as}]${ta ? "ᵀ" : ""}·[${bs}]${tb ? "ᵀ" : ""}`,
    });
    for (const t of [A.t, B.t, y]) t.dispose();
  }
});

Deno.test("planMatmulChunks covers the output exactly and respects the limits", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 2048, max: 1 << 16 }),
      (nb0, nb1, M, N, K, maxBytes) => {
        const p = {
          nb0,
          nb1,
          M,
          N,
          K,
          a: { off: 0, s0: nb1 * M * K, s1: M * K, si: K, sj: 1 },
          b: { off: 0, s0: 0, s1: K * N, si: N, sj: 1 },
          c: { off: 0, s0: nb1 * M * N, s1: M * N, si: N, sj: 1 },
          maxBytes,
          align: 256,
          maxGroups: 65535,
          tileM: 32,
          tileN: 32,
        };
        let chunks;
        try {
          chunks = planMatmulChunks(p);
        } catch (e) {
          // Only when four rows of some operand (plus alignment slack) exceed the limit.
          assert.ok(16 * Math.max(M, N, K) + 512 > maxBytes, String(e));
          return;
        }
        let covered = 0;
        for (const c of chunks) {
          covered += (c.z1 - c.z0) * (c.m1 - c.m0) * (c.n1 - c.n0) * (c.k1 - c.k0);
          assert.ok(
            c.m0 % 4 === 0 && c.n0 % 4 === 0 && c.k0 % 4 === 0,
            "splits keep vec4 alignment",
          );
        }
        assert.strictEqual(covered, nb0 * nb1 * M * N * K);
        // For sample output elements, the K pieces come in order: 0 → K without gaps.
        for (const [z, m, n] of [[0, 0, 0], [nb0 * nb1 - 1, M - 1, N - 1], [0, M >> 1, N >> 1]]) {
          let k = 0;
          for (const c of chunks) {
            if (z < c.z0 || z >= c.z1 || m < c.m0 || m >= c.m1 || n < c.n0 || n >= c.n1) continue;
            assert.strictEqual(c.k0, k);
            k = c.k1;
          }
          assert.strictEqual(k, K);
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("gradients of matmul and linear pass finite differences", async () => {
  await gradCheck((a, b) => F.matmul(a, b), [{ shape: [3, 5] }, { shape: [5, 4] }]);
  await gradCheck((a, b) => F.matmul(a, F.transpose(b)), [{ shape: [2, 1, 3, 5] }, {
    shape: [3, 4, 5],
  }]);
  await gradCheck((a, b) => F.matmul(a, b), [{ shape: [2, 3, 4] }, { shape: [4, 2] }]);
  await gradCheck((a, b) => F.matmul(a, b), [{ shape: [5] }, { shape: [2, 5, 3] }]);
  await gradCheck((a, b) => F.matmul(a, b), [{ shape: [4] }, { shape: [4] }]);
  await gradCheck((x, w, b) => F.linear(x, w, b), [{ shape: [2, 3, 5] }, { shape: [4, 5] }, {
    shape: [4],
  }]);
});

Deno.test("matmul rejects bad shapes with a clear error", () => {
  const a = tensor(randArray(6, 1), [2, 3]), b = tensor(randArray(8, 2), [4, 2]);
  assert.throws(() => F.matmul(a, b), /matmul: shapes \[2,3\] and \[4,2\] do not multiply/);
  assert.throws(() => F.matmul(tensor([1], []), b), /matmul: both operands need at least one dim/);
  const c = tensor(randArray(2 * 3 * 3, 3), [2, 3, 3]),
    d = tensor(randArray(3 * 3 * 3, 4), [3, 3, 3]);
  assert.throws(() => F.matmul(c, d), /batch dims of \[2,3,3\] and \[3,3,3\]/);
  const w = tensor(randArray(12, 5), [4, 3]);
  assert.throws(() => F.linear(a, w, tensor([1, 2], [2])), /linear: bias must be \[4\]/);
  assert.throws(() => F.linear(b, w), /linear: input \[4,2\] must end in in_features = 3/);
  tidy(() => [a, b, c, d, w].forEach((t) => t.dispose()));
});
