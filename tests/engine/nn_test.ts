import assert from "node:assert/strict";
import { backward, F, memoryStats, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import { Module } from "../../engine/nn/module.ts";
import { Identity, ReLU, Sequential } from "../../engine/nn/layers.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

await setup();

/** A BN-like leaf: weight, bias, running stats and an integer counter. */
class Norm extends Module {
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  count: Tensor;
  constructor(readonly n: number) {
    super();
    // Registered in an order unlike the property order above, on purpose.
    this.bias = this.param("bias", tensor(new Float32Array(n)));
    this.weight = this.param("weight", tensor(new Float32Array(n).fill(1)));
    this.runningMean = this.buffer("running_mean", tensor(new Float32Array(n)));
    this.count = this.buffer("num_batches_tracked", tensor(new Int32Array([0]), [1], "i32"));
  }
  forward(x: Tensor): Tensor {
    return F.add(F.mul(x, this.weight), this.bias);
  }
}

class Scale extends Module {
  weight: Tensor;
  constructor(n: number, seed: number) {
    super();
    this.weight = this.param("weight", tensor(randArray(n, seed), [n]));
  }
  forward(x: Tensor): Tensor {
    return F.mul(x, this.weight);
  }
}

class Block extends Module {
  conv1: Scale;
  bn1: Norm;
  constructor(n: number, seed: number) {
    super();
    this.conv1 = this.child("conv1", new Scale(n, seed));
    this.bn1 = this.child("bn1", new Norm(n));
  }
  forward(x: Tensor): Tensor {
    return F.relu(this.bn1.forward(this.conv1.forward(x)));
  }
}

class Net extends Module {
  fc: Scale;
  layer1: Sequential;
  constructor(n = 5) {
    super();
    this.layer1 = this.child(
      "layer1",
      new Sequential(new Block(n, 1), new Identity(), new Block(n, 2)),
    );
    this.fc = this.child("fc", new Scale(n, 3));
  }
  forward(x: Tensor): Tensor {
    return this.fc.forward(this.layer1.forward(x));
  }
}

const KEYS = [
  "layer1.0.conv1.weight",
  "layer1.0.bn1.bias",
  "layer1.0.bn1.weight",
  "layer1.0.bn1.running_mean",
  "layer1.0.bn1.num_batches_tracked",
  "layer1.2.conv1.weight",
  "layer1.2.bn1.bias",
  "layer1.2.bn1.weight",
  "layer1.2.bn1.running_mean",
  "layer1.2.bn1.num_batches_tracked",
  "fc.weight",
];

Deno.test("Module: PyTorch state-dict names in registration order", () => {
  const net = new Net();
  assert.deepEqual([...net.stateDict().keys()], KEYS);
  assert.deepEqual(
    net.namedBuffers().map(([k]) => k),
    KEYS.filter((k) => /running|num_batches/.test(k)),
  );
  assert.deepEqual(
    net.namedParameters().map(([k]) => k),
    KEYS.filter((k) => !/running|num_batches/.test(k)),
  );
  assert.ok(net.parameters().every((p) => p.requiresGrad));
  assert.ok(net.namedBuffers().every(([, b]) => !b.requiresGrad));
  assert.deepEqual(net.namedModules().map(([k]) => k).slice(0, 4), [
    "",
    "layer1",
    "layer1.0",
    "layer1.0.conv1",
  ]);
  assert.equal(net.numParameters(), 7 * 5);
  net.dispose();
});

Deno.test("Module: duplicate or dotted names are rejected", () => {
  class Bad extends Module {
    constructor(name: string, twice: boolean) {
      super();
      this.param(name, tensor([1]));
      if (twice) this.buffer(name, tensor([2]));
    }
  }
  assert.throws(() => new Bad("w", true), /already registered/);
  assert.throws(() => new Bad("a.b", false), /invalid member name/);
});

Deno.test("Module: stateDict → host → loadStateDict round trip (f32 and i32, 0-d counters)", async () => {
  const a = new Net();
  const c = new Net();
  const host = new Map<string, { shape: number[]; data: Float32Array | Int32Array }>();
  for (const [k, t] of a.stateDict()) {
    const d = await t.data();
    host.set(k, { shape: t.shape.slice(), data: d instanceof Uint32Array ? new Int32Array(d) : d });
  }
  // torch saves num_batches_tracked as a 0-d int64.
  host.set("layer1.0.bn1.num_batches_tracked", { shape: [], data: new Int32Array([42]) });
  for (const k of KEYS.filter((k) => k.endsWith("running_mean"))) {
    host.get(k)!.data = randArray(5, 77);
  }
  const res = c.loadStateDict(host);
  assert.deepEqual(res.loaded, KEYS);
  for (const [k, t] of c.stateDict()) {
    assertClose(await t.data(), host.get(k)!.data, { atol: 0, rtol: 0, what: k });
  }
  // safetensors-style entries (I64 counters) are converted too.
  const st = new Map([["layer1.0.bn1.num_batches_tracked", {
    dtype: "I64" as const,
    shape: [],
    data: new BigInt64Array([7n]),
  }]]);
  c.loadStateDict(st, { strict: false });
  assert.deepEqual([...(await c.layer1.at(0).stateDict().get("bn1.num_batches_tracked")!.data())], [
    7,
  ]);
  a.dispose();
  c.dispose();
});

Deno.test("Module: loadStateDict lists missing, unexpected and mis-shaped keys in one error naming the file", () => {
  const net = new Net();
  const host = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, t] of net.stateDict()) {
    host.set(k, { shape: t.shape.slice(), data: new Float32Array(t.size) });
  }
  host.delete("fc.weight");
  host.delete("layer1.0.bn1.running_mean");
  host.set("layer1.0.bn1.extra", { shape: [1], data: new Float32Array(1) });
  host.set("layer1.2.conv1.weight", { shape: [6], data: new Float32Array(6) });
  let msg = "";
  try {
    net.loadStateDict(host, { file: "ckpt/model.safetensors" });
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.match(msg, /ckpt\/model\.safetensors/);
  assert.match(msg, /missing keys \(2\):\n {2}layer1\.0\.bn1\.running_mean\n {2}fc\.weight/);
  assert.match(msg, /unexpected keys \(1\):\n {2}layer1\.0\.bn1\.extra/);
  assert.match(
    msg,
    /mis-shaped keys \(1\):\n {2}layer1\.2\.conv1\.weight: got \[6\], expected \[5\]/,
  );
  // Not strict: missing/unexpected are reported, mis-shaped still throws.
  assert.throws(() => net.loadStateDict(host, { strict: false }), /mis-shaped/);
  host.delete("layer1.2.conv1.weight");
  const r = net.loadStateDict(host, { strict: false });
  assert.deepEqual(r.missing, ["layer1.0.bn1.running_mean", "layer1.2.conv1.weight", "fc.weight"]);
  assert.deepEqual(r.unexpected, ["layer1.0.bn1.extra"]);
  net.dispose();
});

Deno.test("Module: assignParameter writes into the existing tensor (fields stay valid)", async () => {
  const net = new Net();
  const w = net.fc.weight;
  net.assignParameter("fc.weight", tensor([1, 2, 3, 4, 5]));
  assert.equal(net.fc.weight, w);
  assert.deepEqual([...(await w.data())], [1, 2, 3, 4, 5]);
  assert.throws(() => net.assignParameter("fc.weight", tensor([1])), /does not match/);
  assert.throws(() => net.assignParameter("fc.nope", tensor([1])), /no parameter or buffer/);
  assert.throws(() => net.assignParameter("layer9.weight", tensor([1])), /no submodule "layer9"/);
  net.dispose();
});

Deno.test("Module: train/eval recurse; zeroGrad; requiresGrad(false) freezes a subtree", async () => {
  const net = new Net();
  net.eval();
  assert.ok(net.namedModules().every(([, m]) => !m.training));
  net.layer1.train();
  assert.equal(net.training, false);
  assert.ok(net.layer1.namedModules().every(([, m]) => m.training));

  net.layer1.at(0).requiresGrad(false);
  const x = tensor(randArray(5, 9, 0.5, 1));
  const loss = tidy(() => F.sum(net.forward(x)));
  backward(loss);
  for (const [k, p] of net.namedParameters()) {
    if (k.startsWith("layer1.0.")) assert.equal(p.grad, null, `${k} is frozen`);
    else assert.ok(p.grad, `${k} has a gradient`);
  }
  // fc.weight's gradient is the input to fc.
  const fcIn = tidy(() => net.layer1.forward(x));
  assertClose(await net.fc.weight.grad!.data(), await fcIn.data());
  net.zeroGrad();
  assert.ok(net.parameters().every((p) => p.grad === null));
  loss.dispose();
  fcIn.dispose();
  x.dispose();
  net.dispose();
});

Deno.test("Module: built inside tidy survives it; dispose returns every byte", () => {
  const base = memoryStats().liveBytes;
  const net = tidy(() => new Net(9));
  assert.ok(net.parameters().every((p) => !p.isDisposed));
  assert.ok(memoryStats().liveBytes > base);
  net.dispose();
  assert.equal(memoryStats().liveBytes, base);
});

Deno.test("Sequential runs its layers in order; ReLU and Identity", async () => {
  const s = new Sequential(new Scale(4, 1), new ReLU(), new Identity());
  assert.equal(s.length, 3);
  assert.deepEqual(s.namedParameters().map(([k]) => k), ["0.weight"]);
  const x = tensor([1, -1, 2, -2]);
  const y = s.forward(x);
  const w = await s.at(0).namedParameters()[0][1].data();
  assertClose(await y.data(), [1, -1, 2, -2].map((v, i) => Math.max(0, v * w[i])));
  assert.throws(() => s.at(5), /no layer 5/);
  x.dispose();
  y.dispose();
  s.dispose();
});
