/** Prompt sampling: points inside the mask, distinct, seeded, CAM-weighted. */
import assert from "node:assert/strict";
import fc from "fast-check";
import { batchPrompts, camPointsInMask, randomPointsInMask } from "../../pipeline/prompts.ts";
import { Rng } from "../../engine/rng.ts";

const W = 12, H = 9;

function keyset(c: Float32Array): Set<string> {
  const s = new Set<string>();
  for (let i = 0; i < c.length; i += 2) s.add(`${c[i]},${c[i + 1]}`);
  return s;
}

Deno.test("prompts: random points are distinct pixels inside the mask, seeded", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: W * H, maxLength: W * H }),
      fc.integer({ min: 1, max: 60 }),
      fc.nat(1000),
      (m, n, seed) => {
        const mask = m.map((v) => (v > 128 ? 1 : 0));
        const on = mask.reduce((a, b) => a + b, 0);
        const p = randomPointsInMask(mask, W, H, n, new Rng(seed));
        if (on === 0) {
          assert.deepEqual([...p.coords], [0, 0]); // the reference's fallback
          return;
        }
        assert.equal(p.n, Math.min(n, on));
        assert.equal(keyset(p.coords).size, p.n);
        for (let i = 0; i < p.n; i++) {
          const x = p.coords[2 * i], y = p.coords[2 * i + 1];
          assert.equal(mask[y * W + x], 1);
          assert.equal(p.labels[i], 1);
        }
        const q = randomPointsInMask(mask, W, H, n, new Rng(seed));
        assert.deepEqual(q.coords, p.coords);
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("prompts: CAM points stay inside the CAM mask, where the CAM is positive", () => {
  fc.assert(
    fc.property(
      fc.float32Array({ minLength: W * H, maxLength: W * H, noNaN: true, min: 0, max: 1 }),
      fc.uint8Array({ minLength: W * H, maxLength: W * H }),
      fc.nat(1000),
      (cam, m, seed) => {
        const mask = m.map((v) => (v > 100 ? 1 : 0));
        const p = camPointsInMask(cam, mask, W, H, 50, new Rng(seed));
        const cand = [...cam].filter((v, i) => v > 0 && mask[i]).length;
        if (!cand) return assert.deepEqual([...p.coords], [0, 0]);
        assert.equal(p.n, Math.min(50, cand));
        assert.equal(keyset(p.coords).size, p.n);
        for (let i = 0; i < p.n; i++) {
          const k = p.coords[2 * i + 1] * W + p.coords[2 * i];
          assert.ok(mask[k] === 1 && cam[k] > 0);
        }
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("prompts: CAM points are drawn in proportion to the CAM", () => {
  // Two pixels with weights 0.9 and 0.1: one draw picks the first ~90 % of the time.
  const cam = new Float32Array(W * H), mask = new Uint8Array(W * H);
  cam[0] = 0.9;
  cam[5] = 0.1;
  mask[0] = mask[5] = 1;
  let first = 0;
  const N = 4000;
  for (let s = 0; s < N; s++) {
    const p = camPointsInMask(cam, mask, W, H, 1, new Rng(s));
    if (p.coords[0] === 0) first++;
  }
  assert.ok(Math.abs(first / N - 0.9) < 0.02, `picked the heavy pixel ${first / N}`);
});

Deno.test("prompts: batches pad shorter lists with label -1", () => {
  const a = { coords: new Float32Array([1, 2, 3, 4]), labels: new Float32Array([1, 1]), n: 2 };
  const b = { coords: new Float32Array([5, 6]), labels: new Float32Array([1]), n: 1 };
  const p = batchPrompts([a, b]);
  assert.equal(p.n, 2);
  assert.deepEqual([...p.labels], [1, 1, 1, -1]);
  assert.deepEqual([...p.coords.slice(4, 6)], [5, 6]);
});
