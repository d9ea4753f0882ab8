import fc from "fast-check";
import assert from "node:assert";
import { F, requireGrad, tensor } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { softmaxRelBiasRef } from "../reference/softmax.ts";

await setup();

/** [G, Nq, KH, KW]: scalar and vec4 runs, size-1 dims, SAM's window (14) and global (64) widths. */
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [2, 3, 5, 3],
  [1, 7, 1, 4],
  [3, 2, 4, 8],
  [2, 5, 14, 14],
  [1, 3, 7, 64],
  [1, 2, 2, 130], // past the unrolled width: the composed fallback
  // KW not a multiple of 4, rows of whole lcm(KW, 4)-key periods: the vec4 period kernel.
  [1, 3, 6, 6],
  [2, 2, 4, 2],
  [1, 2, 4, 5],
  [1, 2, 3, 7], // 21 keys: not whole periods of 28, scalar
];

async function check(
  G: number,
  nq: number,
  KH: number,
  KW: number,
  seed: number,
  scale = 4,
  factor = 1,
) {
  const s = randArray(G * nq * KH * KW, seed, -scale, scale);
  const h = randArray(G * nq * KH, seed + 1, -scale, scale);
  const w = randArray(G * nq * KW, seed + 2, -scale, scale);
  const y = F.softmaxRelBias(
    tensor(s, [G, nq, KH * KW]),
    tensor(h, [G, nq, KH]),
    tensor(w, [G, nq, KW]),
    factor,
  );
  assert.deepStrictEqual(y.shape, [G, nq, KH * KW]);
  const scaled = Float32Array.from(s, (x) => Math.fround(x * factor));
  assertClose(await y.data(), softmaxRelBiasRef(scaled, h, w, G * nq, KH, KW), {
    atol: 1e-6,
    rtol: 1e-4,
    what: `softmaxRelBias [${G}, ${nq}, ${KH}×${KW}]`,
  });
  y.dispose();
}

Deno.test("softmaxRelBias matches float64 on awkward shapes (scalar and vec4 runs)", async () => {
  for (const periods of [true, false]) {
    const old = F.setSoftmaxRelBiasPeriods(periods);
    try {
      for (const [i, [G, nq, KH, KW]] of SHAPES.entries()) await check(G, nq, KH, KW, 10 * i);
    } finally {
      F.setSoftmaxRelBiasPeriods(old);
    }
  }
});

Deno.test("softmaxRelBias applies the score scale inside the kernel (and in the fallback)", async () => {
  await check(2, 5, 14, 14, 70, 4, 0.125);
  await check(1, 3, 7, 64, 71, 4, -1.5);
  await check(1, 2, 2, 130, 72, 4, 0.3);
});

Deno.test("softmaxRelBias: random shapes and large logits match float64 (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 20 }),
      fc.constantFrom(1, 30, 80),
      async (G, nq, KH, KW, scale) => await check(G, nq, KH, KW, G + nq + KH + KW, scale),
    ),
    { numRuns: 12 },
  );
});

Deno.test("softmaxRelBias gradients pass finite differences (scores and both bias terms)", async () => {
  const f = (s: Parameters<typeof F.softmaxRelBias>[0], h: typeof s, w: typeof s) =>
    F.softmaxRelBias(s, h, w);
  await gradCheck(f, [{ shape: [2, 3, 12] }, { shape: [2, 3, 3] }, { shape: [2, 3, 4] }]);
  await gradCheck(f, [{ shape: [1, 2, 15] }, { shape: [1, 2, 5] }, { shape: [1, 2, 3] }]);
  await gradCheck(
    (s, h, w) => F.softmaxRelBias(s, h, w, 0.6),
    [{ shape: [2, 3, 12] }, { shape: [2, 3, 3] }, { shape: [2, 3, 4] }],
  );
});

Deno.test("softmaxRelBias rejects mismatched bias shapes with a clear error", () => {
  const s = tensor(new Float32Array(24), [1, 2, 12]);
  assert.throws(
    () =>
      F.softmaxRelBias(
        s,
        tensor(new Float32Array(6), [1, 2, 3]),
        tensor(new Float32Array(10), [1, 2, 5]),
      ),
    /KH·KW = 12/,
  );
  s.dispose();
});

Deno.test("softmaxRelBias padRows: rows 256 bytes apart without gradients, same values; dense with", async () => {
  for (const [G, nq, KH, KW] of [[2, 5, 14, 14], [1, 3, 6, 6]]) {
    const nk = KH * KW, pad = Math.ceil(nk / 64) * 64;
    const s = randArray(G * nq * nk, 3, -4, 4),
      h = randArray(G * nq * KH, 4),
      w = randArray(G * nq * KW, 5);
    const want = softmaxRelBiasRef(s, h, w, G * nq, KH, KW);
    const y = F.softmaxRelBias(
      tensor(s, [G, nq, nk]),
      tensor(h, [G, nq, KH]),
      tensor(w, [G, nq, KW]),
      1,
      { padRows: true },
    );
    assert.deepStrictEqual(y.strides, [nq * pad, pad, 1]);
    const d = await F.dense(F.mul(y, 1)).data();
    assertClose(d, want, { atol: 1e-6, rtol: 1e-4, what: `padded [${G}, ${nq}, ${KH}×${KW}]` });
    y.dispose();
  }
  const st = requireGrad(tensor(randArray(2 * 196, 6), [1, 2, 196]));
  const y = F.softmaxRelBias(
    st,
    tensor(randArray(28, 7), [1, 2, 14]),
    tensor(randArray(28, 8), [1, 2, 14]),
    1,
    {
      padRows: true,
    },
  );
  assert.ok(y.isContiguous(), "recorded for backward: dense");
});
