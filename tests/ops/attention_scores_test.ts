/**
 * The attention scores kernel as the composed SAM attention takes it (engine/ops/
 * attention_texture.ts `attentionScoresRaw`: q·kᵀ from textures staged by copies or packs,
 * stored as vec4s) against float64: dense and odd head dims (packed), heads of one projection
 * whose rows are copied, several passes with score ranges not aligned to a binding, random shapes
 * (fast-check), refusals.
 */
import assert from "node:assert";
import fc from "fast-check";
import { F, requireGrad, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

await setup();

/** Float64 q·kᵀ per slice of host [G, n, d] arrays. */
function scoresRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  g: number,
  nq: number,
  nk: number,
  d: number,
) {
  const out = new Float64Array(g * nq * nk);
  for (let z = 0; z < g; z++) {
    for (let i = 0; i < nq; i++) {
      for (let j = 0; j < nk; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += q[(z * nq + i) * d + c] * k[(z * nk + j) * d + c];
        out[(z * nq + i) * nk + j] = s;
      }
    }
  }
  return out;
}

async function checkDense(b: number, h: number, nq: number, nk: number, d: number, seed: number) {
  const q = randArray(b * h * nq * d, seed, -2, 2), k = randArray(b * h * nk * d, seed + 1, -2, 2);
  const s = tidy(() => F.attentionScoresRaw(tensor(q, [b, h, nq, d]), tensor(k, [b, h, nk, d])));
  assert.deepStrictEqual(s.shape, [b, h, nq, nk]);
  assertClose(await s.data(), scoresRef(q, k, b * h, nq, nk, d), {
    atol: 1e-5,
    rtol: 1e-5,
    what: `scores ${[b, h, nq, nk, d]}`,
  });
  s.dispose();
}

Deno.test("attentionScores: dense operands, odd head dims and query counts", async () => {
  await checkDense(1, 1, 1, 4, 1, 1);
  await checkDense(2, 3, 5, 8, 6, 2);
  await checkDense(1, 2, 37, 196, 64, 3); // one 14×14 window, d = 64: rows copied
  // Keys past a texture's height per slice: one slice a pass, score ranges off any alignment.
  await checkDense(1, 3, 3, 8196, 4, 4);
});

/**
 * Scores of q and k taken as strided views of one qkv projection [B, N, 3, H, d] (3·H·d = 192
 * floats a token: whole copy pitches), batch-major [B, H, N, d] or head-major [H, B, N, d] (where
 * a head's batches lie end to end, so a pass's consecutive slices are staged by one copy per
 * head), against float64.
 */
async function checkProjectionHeads(b: number, headMajor: boolean, seed: number) {
  const [n, h, d] = [20, 2, 32];
  const p = randArray(b * n * 3 * h * d, seed, -1, 1);
  // Slice z of the views: (batch, head) in the order the views take them.
  const slice = (
    z: number,
  ) => (headMajor ? [z % b, Math.floor(z / b)] : [Math.floor(z / h), z % h]);
  const host = (pick: number) => {
    const o = new Float64Array(b * h * n * d);
    for (let z = 0; z < b * h; z++) {
      const [bi, hh] = slice(z);
      for (let t = 0; t < n; t++) {
        for (let c = 0; c < d; c++) {
          o[(z * n + t) * d + c] = p[(((bi * n + t) * 3 + pick) * h + hh) * d + c];
        }
      }
    }
    return o;
  };
  const s = tidy(() => {
    const qkv = F.permute(
      F.reshape(tensor(p, [b, n, 3 * h * d]), [b, n, 3, h, d]),
      headMajor ? [2, 3, 0, 1, 4] : [2, 0, 3, 1, 4],
    );
    const q = F.select(qkv, 0, 0), k = F.select(qkv, 0, 1);
    assert.ok(!q.isContiguous());
    return F.attentionScoresRaw(q, k);
  });
  assertClose(await s.data(), scoresRef(host(0), host(1), b * h, n, n, d), {
    atol: 1e-5,
    rtol: 1e-5,
    what: headMajor ? "head-major" : "batch-major",
  });
  s.dispose();
}

Deno.test("attentionScores: heads of one qkv projection read in place (rows copied)", async () => {
  await checkProjectionHeads(2, false, 9);
});

Deno.test("attentionScores: head-major heads of a qkv projection (one copy per head's run of batches)", async () => {
  await checkProjectionHeads(3, true, 10);
});

Deno.test("attentionScores refuses what it cannot run, naming why", () => {
  const q = tensor(new Float32Array(2 * 5 * 4), [1, 2, 5, 4]);
  const k = tensor(new Float32Array(2 * 6 * 4), [1, 2, 6, 4]);
  assert.match(F.attentionScoresRefusal(q, k) ?? "", /multiple of 4/);
  assert.throws(() => F.attentionScoresRaw(q, k), /attentionScores: cannot run.*\[1,2,6,4\]/);
  const g = requireGrad(tensor(new Float32Array(2 * 8 * 4), [1, 2, 8, 4]));
  assert.match(F.attentionScoresRefusal(g, g) ?? "", /gradients/);
  for (const t of [q, k, g] as Tensor[]) t.dispose();
});

Deno.test("attentionScores: random batches, heads, query and key counts, head dims match float64 (fast-check)", async () => {
  // Key counts of whole vec4s (the refusal above); head dims of every residue mod 4 (packed or
  // copied rows). Tolerance as the fixed cases, atol 1e-5 rtol 1e-5: a dot of d ≤ 40 products of
  // entries in [−2, 2] rounds by ~√d · 6e-8 · 4 ≈ 2e-6 (random signs), under atol + rtol·|s|;
  // a wrong row, head or key is off by O(1).
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        b: fc.integer({ min: 1, max: 2 }),
        h: fc.integer({ min: 1, max: 3 }),
        nq: fc.integer({ min: 1, max: 40 }),
        nk4: fc.integer({ min: 1, max: 12 }),
        d: fc.integer({ min: 1, max: 40 }),
        seed: fc.nat(1000),
      }),
      ({ b, h, nq, nk4, d, seed }) => checkDense(b, h, nq, 4 * nk4, d, seed),
    ),
    { numRuns: 20 },
  );
});
