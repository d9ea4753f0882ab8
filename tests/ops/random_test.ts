import assert from "node:assert/strict";
import fc from "fast-check";
import { backward, F, requireGrad, tensor, tidyAsync } from "../../engine/mod.ts";
import { philox4x32, Rng } from "../../engine/rng.ts";
import { assertClose, gradCheck, setup } from "../util/gpu.ts";
import { erf } from "../reference/elementwise.ts";

await setup();

const hex = (a: Uint32Array) => Array.from(a, (v) => v.toString(16).padStart(8, "0")).join(" ");

Deno.test("CPU Philox-4x32-10 matches the Random123 known-answer vectors", () => {
  assert.equal(hex(philox4x32(0, 0, 0, 0, 0, 0)), "6627e8d5 e169c58d bc57ac4c 9b00dbd8");
  const f = 0xffffffff;
  assert.equal(hex(philox4x32(f, f, f, f, f, f)), "408f276d 41c83b0e a20bc7c6 6d5451fd");
  assert.equal(
    hex(philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0)),
    "d16cfe09 94fdcceb 5001e420 24126ea1",
  );
});

Deno.test("GPU draws equal the CPU mirror (bits, uniform [0,1), bernoulli bit-for-bit; normal to 1e-5)", async () => {
  for (const n of [1, 3, 4, 5, 1001]) {
    const seed = 2 ** 40 + 12345 + n; // exercises both key words
    const g = new Rng(seed), h = new Rng(seed);
    await tidyAsync(async () => {
      assert.deepEqual(await g.bits([n]).data(), h.bitsHost(n), `bits n=${n}`);
      assertClose(await g.uniform([n]).data(), h.uniformHost(n), {
        atol: 0,
        rtol: 0,
        what: `uniform n=${n}`,
      });
      // lo + span·u may be fused into an fma on some GPUs: allow an ulp there.
      assertClose(await g.uniform([n], -3, 5.5).data(), h.uniformHost(n, -3, 5.5), {
        atol: 1e-6,
        rtol: 0,
        what: `uniform(-3, 5.5) n=${n}`,
      });
      assertClose(await g.bernoulli([n], 0.3).data(), h.bernoulliHost(n, 0.3), {
        atol: 0,
        rtol: 0,
        what: "bernoulli",
      });
      assertClose(await g.normal([n], 1, 2).data(), h.normalHost(n, 1, 2), {
        atol: 2e-5,
        rtol: 1e-5,
        what: "normal",
      });
    });
    assert.equal(g.counter, 5);
  }
});

/** Kolmogorov–Smirnov statistic of `xs` against the CDF `cdf`. */
function ks(xs: ArrayLike<number>, cdf: (x: number) => number): number {
  const s = Float64Array.from(xs).sort();
  let d = 0;
  for (let i = 0; i < s.length; i++) {
    const c = cdf(s[i]);
    d = Math.max(d, Math.abs(c - i / s.length), Math.abs((i + 1) / s.length - c));
  }
  return d;
}

function moments(xs: ArrayLike<number>): { mean: number; variance: number; lag1: number } {
  const n = xs.length;
  let m = 0;
  for (let i = 0; i < n; i++) m += xs[i];
  m /= n;
  let v = 0, c = 0;
  for (let i = 0; i < n; i++) {
    v += (xs[i] - m) ** 2;
    if (i) c += (xs[i] - m) * (xs[i - 1] - m);
  }
  return { mean: m, variance: v / (n - 1), lag1: c / v };
}

Deno.test("statistics: uniform, normal and bernoulli moments, KS and lag-1 correlation", async () => {
  const n = 1 << 16;
  const rng = new Rng(42);
  const ksCrit = 1.63 / Math.sqrt(n); // 1% level
  const corrTol = 4 / Math.sqrt(n);
  await tidyAsync(async () => {
    const u = await rng.uniform([n], 2, 4).data();
    const mu = moments(u);
    assert.ok(Math.abs(mu.mean - 3) < 5 * Math.sqrt(4 / 12 / n), `uniform mean ${mu.mean}`);
    assert.ok(Math.abs(mu.variance - 4 / 12) < 0.01, `uniform variance ${mu.variance}`);
    assert.ok(u.every((v) => v >= 2 && v < 4));
    assert.ok(ks(u, (x) => Math.min(Math.max((x - 2) / 2, 0), 1)) < ksCrit, "uniform KS");
    assert.ok(Math.abs(mu.lag1) < corrTol, `uniform lag-1 correlation ${mu.lag1}`);

    const z = await rng.normal([n], -1, 3).data();
    const mz = moments(z);
    assert.ok(Math.abs(mz.mean + 1) < 5 * 3 / Math.sqrt(n), `normal mean ${mz.mean}`);
    assert.ok(Math.abs(mz.variance / 9 - 1) < 0.03, `normal variance ${mz.variance}`);
    assert.ok(ks(z, (x) => 0.5 * (1 + erf((x + 1) / 3 / Math.SQRT2))) < ksCrit, "normal KS");
    assert.ok(Math.abs(mz.lag1) < corrTol, `normal lag-1 correlation ${mz.lag1}`);

    const b = await rng.bernoulli([n], 0.3).data();
    const mb = moments(b);
    assert.ok(b.every((v) => v === 0 || v === 1));
    assert.ok(Math.abs(mb.mean - 0.3) < 5 * Math.sqrt(0.21 / n), `bernoulli mean ${mb.mean}`);
    assert.ok((await rng.bernoulli([100], 0).data()).every((v) => v === 0));
    assert.ok((await rng.bernoulli([100], 1).data()).every((v) => v === 1));
  });
});

Deno.test("determinism: by seed and counter, independent of the call's shape; seeds and calls differ", async () => {
  await tidyAsync(async () => {
    const a = await new Rng(7).uniform([6, 35]).data();
    const b = await new Rng(7).uniform([210]).data();
    assert.deepEqual(a, b, "same seed, same values whatever the shape");
    const prefix = await new Rng(7).uniform([3, 1]).data();
    assert.deepEqual(prefix, a.slice(0, 3), "element i depends only on (seed, counter, i)");
    const c = await new Rng(8).uniform([210]).data();
    assert.ok(a.some((v, i) => v !== c[i]), "different seeds differ");
    const r = new Rng(7);
    const first = await r.uniform([210]).data();
    const second = await r.uniform([210]).data();
    assert.ok(first.some((v, i) => v !== second[i]), "consecutive draws differ");
    // State round trip (checkpoint resume).
    const resumed = Rng.fromState({ seed: 7, counter: 1 });
    assert.deepEqual(await resumed.uniform([210]).data(), second);
  });
  assert.throws(() => new Rng(-1), /seed must be a non-negative safe integer/);
});

Deno.test("host sampling helpers: integers in range, permutations (fast-check over seeds)", () => {
  fc.assert(
    fc.property(fc.nat(2 ** 31), fc.integer({ min: 1, max: 50 }), (seed, n) => {
      const r = new Rng(seed);
      const ints = r.integersHost(200, -3, 4);
      assert.ok(ints.every((v) => Number.isInteger(v) && v >= -3 && v < 4));
      const p = r.permutationHost(n);
      assert.deepEqual([...p].sort((x, y) => x - y), [...Array(n).keys()]);
      assert.deepEqual(new Rng(seed).integersHost(200, -3, 4), ints);
    }),
    { numRuns: 30 },
  );
});

Deno.test("dropout: keeps about 1-p, scales by 1/(1-p), gradient through the same mask", async () => {
  await tidyAsync(async () => {
    const n = 4096, p = 0.25;
    const x = requireGrad(tensor(new Float32Array(n).fill(2)));
    const y = F.dropout(x, p, new Rng(3));
    const yd = await y.data();
    const kept = yd.filter((v) => v !== 0);
    assert.ok(kept.every((v) => Math.abs(v - 2 / (1 - p)) < 1e-6));
    assert.ok(Math.abs(kept.length / n - (1 - p)) < 0.03, `kept fraction ${kept.length / n}`);
    backward(F.sum(y));
    const g = await x.grad!.data();
    g.forEach((v, i) => assert.equal(v, yd[i] / 2));
    assert.equal(F.dropout(x, p, new Rng(3), false), x);
  });
  await gradCheck((x) => F.dropout(x, 0.5, new Rng(11)), [{ shape: [5, 7] }]);
});
