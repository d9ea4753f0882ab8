/**
 * BatchNorm recalibration (pipeline/classifier/precise_bn.ts): the stem BN's running statistics
 * become the mean over the batches of the batch mean and unbiased variance (checked against the
 * conv output computed here), the result does not depend on the running statistics before, and
 * momentum, ADL and its draw states are left as they were.
 */
import assert from "node:assert/strict";
import { writePng } from "../../engine/io/png.ts";
import { F, noGrad, tensor, tidy } from "../../engine/mod.ts";
import { BatchNorm2d } from "../../engine/nn/norm.ts";
import { PROFILES } from "../../pipeline/config.ts";
import { buildClassifier } from "../../pipeline/classifier/model.ts";
import { recalibrateBatchNorm } from "../../pipeline/classifier/precise_bn.ts";
import { listSplit, PatchLoader } from "../../pipeline/data/patches.ts";
import { randArray, setup } from "../util/gpu.ts";

await setup();

const S = 32;

async function makeSplit(neg: number, pos: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "precise_bn_test_" });
  await Deno.mkdir(`${dir}/image`);
  for (let k = 0; k < neg + pos; k++) {
    const label = k < neg ? 0 : 1;
    const px = randArray(S * S * 3, 100 + k, label ? 60 : 0, label ? 255 : 200);
    const data = Uint8Array.from(px, (v) => Math.floor(v));
    await writePng(`${dir}/image/p${k}_${label}.png`, { data, width: S, height: S, channels: 3 });
  }
  return dir;
}

function bns(model: ReturnType<typeof buildClassifier>): BatchNorm2d[] {
  return model.namedModules().map(([, m]) => m).filter((m) => m instanceof BatchNorm2d);
}

async function stats(model: ReturnType<typeof buildClassifier>): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const bn of bns(model)) {
    out.push(await bn.runningMean.data() as Float32Array);
    out.push(await bn.runningVar.data() as Float32Array);
  }
  return out;
}

Deno.test("recalibrateBatchNorm: averaged batch statistics, independent of the old ones", async () => {
  const dir = await makeSplit(4, 4);
  const items = await listSplit(dir);
  const cfg = structuredClone(PROFILES.tiny);
  cfg.patchSize = S;
  cfg.classifier.width = 4;
  const model = buildClassifier(cfg).train();
  const adlBefore = model.adlStates();
  const opts = { batchSize: 4, size: S, seed: 3, epoch: 1, adl: true };

  // Whatever the running statistics were, the recalibrated ones are the same, bit for bit.
  const results: Float32Array[][] = [];
  for (const junk of [[5, 9], [-2, 0.01]]) {
    for (const bn of bns(model)) {
      tidy(() => F.writeInto(bn.runningMean, F.fill(bn.runningMean.shape, junk[0])));
      tidy(() => F.writeInto(bn.runningVar, F.fill(bn.runningVar.shape, junk[1])));
    }
    assert.equal(await recalibrateBatchNorm(model, items, opts), 2);
    results.push(await stats(model));
  }
  assert.deepEqual(results[1], results[0]);
  assert.equal(model.training, false, "left in eval mode");
  assert.deepEqual(model.adlStates(), adlBefore, "ADL drew nothing");
  assert.ok(model.adls.every((a) => a.enabled), "ADL re-enabled");
  assert.ok(bns(model).every((bn) => bn.opts.momentum === undefined), "momentum restored");

  // The stem BN: mean over the two batches of conv1's per-channel batch mean / unbiased variance.
  const loader = new PatchLoader(items, { ...opts, balance: true, dropLast: true });
  const C = cfg.classifier.width;
  const mean = new Float64Array(C), variance = new Float64Array(C);
  let batches = 0;
  for await (const b of loader.batches(opts.epoch)) {
    const y = tidy(() => noGrad(() => model.conv1.forward(model.inputWithHighFreq(b.images))));
    const [n, , h, w] = y.shape;
    const v = await y.data() as Float32Array;
    y.dispose();
    b.images.dispose();
    const m = n * h * w;
    for (let c = 0; c < C; c++) {
      let s = 0, s2 = 0;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < h * w; j++) s += v[(i * C + c) * h * w + j];
      }
      const mu = s / m;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < h * w; j++) s2 += (v[(i * C + c) * h * w + j] - mu) ** 2;
      }
      mean[c] += mu;
      variance[c] += s2 / (m - 1);
    }
    batches++;
  }
  assert.equal(batches, 2);
  const gotMean = await model.bn1.runningMean.data() as Float32Array;
  const gotVar = await model.bn1.runningVar.data() as Float32Array;
  for (let c = 0; c < C; c++) {
    const em = mean[c] / 2, ev = variance[c] / 2;
    assert.ok(
      Math.abs(gotMean[c] - em) <= 1e-4 * (1 + Math.abs(em)),
      `mean[${c}] ${gotMean[c]} vs ${em}`,
    );
    assert.ok(Math.abs(gotVar[c] - ev) <= 1e-4 * (1 + ev), `var[${c}] ${gotVar[c]} vs ${ev}`);
  }
  // The eval-mode logits now use these statistics: finite.
  const logits = tidy(() =>
    noGrad(() => model.forward(tensor(randArray(2 * 3 * S * S, 7, 0, 1), [2, 3, S, S])))
  );
  for (const x of await logits.data() as Float32Array) assert.ok(Number.isFinite(x));
  logits.dispose();
  model.dispose();
  await Deno.remove(dir, { recursive: true });
});
