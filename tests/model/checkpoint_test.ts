/**
 * Activation checkpointing (`checkpoint`, `ResNetAdl.setCheckpointing`): the same loss, parameter
 * gradients, input gradient and BatchNorm statistics as the ordinary graph, with fewer live bytes
 * at the end of the forward.
 */
import assert from "node:assert/strict";
import {
  backward,
  checkpoint,
  F,
  flush,
  memoryStats,
  requireGrad,
  tensor,
  tidy,
} from "../../engine/mod.ts";
import { BatchNorm2d } from "../../engine/nn/norm.ts";
import { Conv2d } from "../../engine/nn/conv.ts";
import { HostRng } from "../../engine/nn/init.ts";
import { ResNetAdl } from "../../model/resnet_adl.ts";
import { randArray, setup } from "../util/gpu.ts";

await setup();

/** Max |a − b| over two host arrays. */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("checkpoint: conv-BN-ReLU segment, gradients of input and parameters and BN statistics as without", async () => {
  const run = async (ckpt: boolean) => {
    const conv = new Conv2d(3, 5, 3, { padding: 1, rng: new HostRng(4) });
    const bn = new BatchNorm2d(5);
    const x = requireGrad(tensor(randArray(2 * 3 * 7 * 5, 9), [2, 3, 7, 5]));
    const seg = (z: typeof x) => tidy(() => F.relu(bn.forward(conv.forward(z))));
    const loss = tidy(() => {
      const y = ckpt ? checkpoint(x, [...conv.parameters(), ...bn.parameters()], seg) : seg(x);
      return F.sum(F.mul(y, y));
    });
    backward(loss);
    const out = {
      loss: await loss.data(),
      gx: await x.grad!.data(),
      gw: await conv.weight.grad!.data(),
      gb: await bn.weight.grad!.data(),
      mean: await bn.runningMean.data(),
      count: await bn.numBatchesTracked.data(),
    };
    for (const t of [loss, x, conv, bn]) t.dispose();
    return out;
  };
  const [plain, ck] = [await run(false), await run(true)];
  for (const k of ["loss", "gx", "gw", "gb", "mean", "count"] as const) {
    assert.ok(maxDiff(plain[k], ck[k]) <= 1e-6, `${k}: max diff ${maxDiff(plain[k], ck[k])}`);
  }
  assert.equal(ck.count[0], 1, "the rerun did not count the batch again");
});

Deno.test("ResNetAdl with checkpointing: same step, fewer bytes held after the forward", async () => {
  const cfg = {
    layers: [2, 1, 1, 1] as [number, number, number, number],
    width: 8,
    adlPositions: [[], [], [], [0], [0]],
    adlDropRate: 0.75,
    adlThreshold: 0.8,
    highFreq: true,
    seed: 3,
  };
  const step = async (ckpt: boolean) => {
    const m = new ResNetAdl(cfg).train().setCheckpointing(ckpt);
    const x = tensor(randArray(2 * 3 * 48 * 48, 5, 0, 1), [2, 3, 48, 48]);
    flush();
    const before = memoryStats().liveBytes;
    const loss = tidy(() => F.sum(m.forward(x)));
    flush();
    const held = memoryStats().liveBytes - before;
    backward(loss);
    const grads = new Map<string, Float32Array>();
    for (const [k, p] of m.namedParameters()) grads.set(k, await p.grad!.data() as Float32Array);
    const stats = await m.stateDict().get("layer1.0.bn2.running_var")!.data();
    const out = { loss: (await loss.data())[0], grads, stats, held };
    loss.dispose();
    x.dispose();
    m.dispose();
    return out;
  };
  const [plain, ck] = [await step(false), await step(true)];
  assert.ok(
    Math.abs(plain.loss - ck.loss) <= 1e-5 * Math.abs(plain.loss),
    `${plain.loss} ${ck.loss}`,
  );
  for (const [k, g] of plain.grads) {
    const d = maxDiff(g, ck.grads.get(k)!), scale = Math.max(1e-3, ...g.map(Math.abs));
    assert.ok(d <= 1e-4 * scale, `${k}: max diff ${d} (scale ${scale})`);
  }
  assert.ok(maxDiff(plain.stats, ck.stats) <= 1e-6, "BN running statistics moved once");
  assert.ok(ck.held < plain.held / 2, `held after forward: ${ck.held} vs ${plain.held}`);
});
