/** Losses against float64 references (torch formulas), gradCheck, and the sam-tiny train_loss. */
import assert from "node:assert/strict";
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
