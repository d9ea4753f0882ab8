/**
 * Losses against float64 references (torch formulas) on fixed and random batches (fast-check),
 * gradCheck, and the sam-tiny train_loss.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { backward, F, requireGrad, tensor } from "../../engine/mod.ts";
import { readSafetensors, toFloat32 } from "../../engine/io/safetensors.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";

await setup();

const softplus = (v: number) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)));
/** torch: (1 − t)·x + (1 + (pw − 1)·t)·softplus(−x). */
const bceRef = (x: number, t: number, pw = 1) => (1 - t) * x + (1 + (pw - 1) * t) * softplus(-x);

function diceRef(p: ArrayLike<number>, t: ArrayLike<number>, n: number, s = 1e-3): number {
  const m = p.length / n;
  let acc = 0;
  for (let b = 0; b < n; b++) {
    let inter = 0, sp = 0, st = 0;
    for (let i = b * m; i < (b + 1) * m; i++) {
      inter += p[i] * t[i];
      sp += p[i];
      st += t[i];
    }
    acc += 1 - (2 * inter + s) / (sp + st + s);
  }
  return acc / n;
}

function iouRef(p: ArrayLike<number>, t: ArrayLike<number>, n: number, s = 1e-3): number {
  const m = p.length / n;
  let acc = 0;
  for (let b = 0; b < n; b++) {
    let inter = 0, sum = 0;
    for (let i = b * m; i < (b + 1) * m; i++) {
      inter += p[i] * t[i];
      sum += p[i] + t[i];
    }
    acc += 1 - (inter + s) / (sum - inter + s);
  }
  return acc / n;
}

Deno.test("bceWithLogits: reductions, pos_weight and extreme logits match float64", async () => {
  const shape = [3, 5, 7];
  const x = randArray(105, 1, -8, 8);
  x[0] = 0;
  x[1] = 95; // exp overflow territory for a naive formula
  x[2] = -95;
  const t = randArray(105, 2, 0, 1);
  t[3] = 1;
  t[4] = 0;
  const xt = tensor(x, shape), tt = tensor(t, shape);
  const none = Array.from(x, (v, i) => bceRef(v, t[i]));
  assertClose(await F.bceWithLogits(xt, tt, { reduction: "none" }).data(), none, {
    atol: 1e-5,
    rtol: 1e-5,
    what: "none",
  });
  const total = none.reduce((a, b) => a + b, 0);
  assertClose([await F.bceWithLogits(xt, tt, { reduction: "sum" }).item()], [total], {
    rtol: 1e-5,
    what: "sum",
  });
  assertClose([await F.bceWithLogits(xt, tt).item()], [total / 105], { rtol: 1e-5, what: "mean" });
  const pwv = [0.5, 2, 3, 1, 4, 0.25, 7];
  const pw = tensor(Float32Array.from(pwv), [7]);
  const withPw = Array.from(x, (v, i) => bceRef(v, t[i], pwv[i % 7]));
  assertClose(await F.bceWithLogits(xt, tt, { reduction: "none", posWeight: pw }).data(), withPw, {
    atol: 1e-5,
    rtol: 1e-5,
    what: "pos_weight",
  });
  assertClose([await F.bceWithLogits(xt, tt, { posWeight: 3 }).item()], [
    Array.from(x, (v, i) => bceRef(v, t[i], 3)).reduce((a, b) => a + b) / 105,
  ], { rtol: 1e-5, what: "scalar pos_weight" });
  assert.throws(() => F.bceWithLogits(xt, tensor(new Float32Array(5), [5])), /same shape/);
  assert.throws(() => F.bceWithLogits(xt, tt, { reduction: "avg" as "mean" }), /reduction/);
  assert.throws(
    () => F.bceWithLogits(xt, tt, { posWeight: tensor(new Float32Array(4), [4]) }),
    /posWeight/,
  );
});

Deno.test("bceWithLogits: gradient is σ(x) − t exactly at 0 and when saturated", async () => {
  const x = requireGrad(tensor(Float32Array.from([0, 40, -40, 2]), [4]));
  const t = tensor(Float32Array.from([0.3, 0, 1, 1]), [4]);
  backward(F.bceWithLogits(x, t, { reduction: "sum" }));
  assertClose(await x.grad!.data(), [0.2, 1, -1, 1 / (1 + Math.exp(-2)) - 1], { atol: 1e-6 });
});

Deno.test("bceWithLogits: gradCheck in logits and targets, with and without pos_weight", async () => {
  const shape = [2, 3, 4];
  await gradCheck((x, t) => F.bceWithLogits(x, t, { reduction: "none" }), [
    { shape, lo: -3, hi: 3 },
    { shape, lo: 0, hi: 1 },
  ]);
  await gradCheck((x, t) => F.bceWithLogits(x, t, { reduction: "mean", posWeight: 2.5 }), [{
    shape,
    lo: -3,
    hi: 3,
  }, { shape, lo: 0, hi: 1 }]);
  const pw = tensor(Float32Array.from([0.5, 1.5, 3, 1]), [4]);
  await gradCheck((x, t) => F.bceWithLogits(x, t, { reduction: "sum", posWeight: pw }), [{
    shape,
    lo: -3,
    hi: 3,
  }, { shape, lo: 0, hi: 1 }]);
});

Deno.test("diceLoss / iouLoss: per-sample, then batch mean (EP-SAM losses.py)", async () => {
  const shape = [3, 6, 5];
  const p = randArray(90, 3, 0, 1),
    t = Float32Array.from(randArray(90, 4, 0, 1), (v) => (v > 0.6 ? 1 : 0));
  const pt = tensor(p, shape), tt = tensor(t, shape);
  assertClose([await F.diceLoss(pt, tt).item()], [diceRef(p, t, 3)], { rtol: 1e-5, what: "dice" });
  assertClose([await F.iouLoss(pt, tt).item()], [iouRef(p, t, 3)], { rtol: 1e-5, what: "iou" });
  assertClose([await F.diceLoss(pt, tt, 1).item()], [diceRef(p, t, 3, 1)], {
    rtol: 1e-5,
    what: "dice smooth 1",
  });
  // Per-sample averaging differs from pooling the batch: check it is not the pooled value.
  assert.ok(Math.abs(diceRef(p, t, 3) - diceRef(p, t, 1)) > 1e-4);
  assert.throws(() => F.diceLoss(pt, tensor(t, [3, 30])), /same shape/);
  assert.throws(
    () => F.iouLoss(tensor(p.slice(0, 5), [5]), tensor(t.slice(0, 5), [5])),
    /batch axis/,
  );
  await gradCheck((a, b) => F.add(F.diceLoss(a, b), F.iouLoss(a, b)), [{
    shape: [2, 3, 4],
    lo: 0,
    hi: 1,
  }, { shape: [2, 3, 4], lo: 0, hi: 1 }]);
});

Deno.test({
  name: "sam-tiny train_loss = Dice + IoU on sigmoid(p1_masks_logits)",
  ignore: !haveFixtures(),
  fn: async () => {
    const c = await readSafetensors(fixturePath("sam-tiny", "case.safetensors"));
    const logits = tensor(toFloat32(c.get("p1_masks_logits")!), [1, 48, 64]);
    const target = tensor(toFloat32(c.get("train_target")!), [1, 48, 64]);
    const p = F.sigmoid(logits);
    const loss = F.add(F.diceLoss(p, target), F.iouLoss(p, target));
    assertClose([await loss.item()], toFloat32(c.get("train_loss")!), {
      atol: 1e-5,
      rtol: 1e-5,
      what: "train_loss",
    });
  },
});

Deno.test("bceWithLogits, diceLoss and iouLoss equal float64 on random batches (fast-check)", async () => {
  // Logits up to ±40 (softplus saturated both ways), soft and hard targets, a scalar pos_weight;
  // bce's gradient against the closed form (1 − t) − (1 + (pw − 1)·t)·σ(−x) times the upstream
  // gradient. Dice and IoU of n samples of m pixels (sums of ≤ 400 terms in [0, 1]).
  // Tolerances: bce per element atol 1e-5 rtol 1e-5 (as the fixed cases: f32 softplus);
  // the losses' means rtol 1e-5 + atol 1e-6 (f32 sums of ≤ 1600 terms round by ~1e-6 relative).
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 1, max: 4 }),
        m: fc.integer({ min: 1, max: 400 }),
        range: fc.constantFrom(1, 8, 40),
        hard: fc.boolean(),
        pw: fc.constantFrom(1, 0.5, 3),
        smooth: fc.constantFrom(1e-3, 1),
        seed: fc.nat(1000),
      }),
      async (r) => {
        const len = r.n * r.m, shape = [r.n, r.m];
        const x = randArray(len, r.seed, -r.range, r.range);
        const t = randArray(len, r.seed + 1, 0, 1).map((v) => r.hard ? (v > 0.5 ? 1 : 0) : v);
        const p = randArray(len, r.seed + 2, 0, 1), gy = randArray(len, r.seed + 3);
        const xt = requireGrad(tensor(x, shape)), tt = tensor(t, shape), pt = tensor(p, shape);
        const what = `n ${r.n} m ${r.m} ±${r.range} hard ${r.hard} pw ${r.pw}`;
        const bce = F.bceWithLogits(xt, tt, { reduction: "none", posWeight: r.pw });
        assertClose(await bce.data(), Array.from(x, (v, i) => bceRef(v, t[i], r.pw)), {
          atol: 1e-5,
          rtol: 1e-5,
          what: `bce ${what}`,
        });
        backward(bce, tensor(gy, shape));
        const sig = (v: number) => 1 / (1 + Math.exp(-v));
        const dx = Array.from(
          x,
          (v, i) => gy[i] * ((1 - t[i]) - (1 + (r.pw - 1) * t[i]) * sig(-v)),
        );
        assertClose(await xt.grad!.data(), dx, { atol: 1e-5, rtol: 1e-5, what: `bce dx ${what}` });
        const losses = [
          [F.diceLoss(pt, tt, r.smooth), diceRef(p, t, r.n, r.smooth), "dice"],
          [F.iouLoss(pt, tt, r.smooth), iouRef(p, t, r.n, r.smooth), "iou"],
        ] as const;
        for (const [got, want, name] of losses) {
          assertClose([await got.item()], [want], {
            atol: 1e-6,
            rtol: 1e-5,
            what: `${name} ${what}`,
          });
          got.dispose();
        }
        for (const v of [xt.grad!, xt, tt, pt, bce]) v.dispose();
      },
    ),
    { numRuns: 25 },
  );
});
