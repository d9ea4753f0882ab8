/**
 * Ops over the per-binding limit: with the planners' limit forced small
 * (`setBindingLimitForTests`), every op on ResNet-50-ADL's training path runs as several
 * dispatches over binding ranges, and must give the unsplit result — bit-identical where the math
 * is per element or per sample, within float rounding where a reduction's order changes.
 */
import { convTiles, setConvTiles } from "../../engine/routing.ts";
import {
  backward,
  dispatchStats,
  F,
  requireGrad,
  setBindingLimitForTests,
  splitBatch,
  splitViews,
  type Tensor,
  tensor,
  tidy,
  viewOf,
} from "../../engine/mod.ts";
import { boundBytes } from "../../engine/split.ts";
import { highFrequencyDirect } from "../../model/highfreq.ts";
import { RESNET50_ADL, ResNetAdl } from "../../model/resnet_adl.ts";
import { augmentWith, identityParams } from "../../pipeline/data/augment.ts";
import { assertClose, randArray, randTensor, setup } from "../util/gpu.ts";

await setup();

function assert(ok: boolean, msg = "assertion failed"): void {
  if (!ok) throw new Error(msg);
}
function assertEquals(a: number, b: number, msg = ""): void {
  if (a !== b) throw new Error(`${msg} ${a} !== ${b}`);
}

const LIMIT = 2048;

/** Runs `fn` unsplit and with the small limit; returns both downloads and the dispatch counts. */
async function both(fn: () => Tensor[], limit = LIMIT): Promise<{
  whole: Float32Array[];
  split: Float32Array[];
  dWhole: number;
  dSplit: number;
}> {
  const run = async (limit: number | null) => {
    setBindingLimitForTests(limit);
    try {
      const d0 = dispatchStats().dispatches;
      const ts = fn();
      const d = dispatchStats().dispatches - d0;
      const out = [];
      for (const t of ts) out.push(Float32Array.from(await t.data()));
      ts.forEach((t) => t.dispose());
      return { out, d };
    } finally {
      setBindingLimitForTests(null);
    }
  };
  const a = await run(null);
  const b = await run(limit);
  return { whole: a.out, split: b.out, dWhole: a.d, dSplit: b.d };
}

function sameBits(a: Float32Array[], b: Float32Array[], what: string): void {
  assertEquals(a.length, b.length);
  a.forEach((x, i) => {
    const ua = new Uint32Array(x.buffer), ub = new Uint32Array(b[i].buffer);
    assertEquals(ua.length, ub.length, `${what}[${i}] length`);
    for (let j = 0; j < ua.length; j++) {
      if (ua[j] !== ub[j]) {
        throw new Error(`${what}[${i}] differs at ${j}: ${x[j]} unsplit vs ${b[i][j]} split`);
      }
    }
  });
}

Deno.test("splitViews and splitBatch cover everything once within the limit", () => {
  const x = randTensor([7, 5, 9, 11], 1);
  try {
    // A transposed view and a dense one over the same index space.
    const shape = [7, 5, 11, 9];
    const views = [viewOf(x, shape, [495, 99, 1, 11]), viewOf(x, shape, [495, 99, 9, 1])];
    for (const limit of [256, 1024, 4096, 1 << 20]) {
      const chunks = splitViews("t", shape, views, limit);
      let covered = 0;
      for (const ch of chunks) {
        for (const v of ch.views) assert(boundBytes(v) <= limit, `chunk binds ${boundBytes(v)}`);
        covered += ch.shape.reduce((a, b) => a * b, 1);
      }
      assertEquals(covered, x.size);
    }
    for (const limit of [2304, 4096, 1 << 20]) {
      const cs = splitBatch("t", 7, [x], limit);
      assertEquals(cs[0].n0, 0);
      assertEquals(cs[cs.length - 1].n1, 7);
      cs.forEach((c, i) => i && assertEquals(c.n0, cs[i - 1].n1));
      for (const c of cs) assert(c.ranges[0].binding.size <= limit);
    }
    let msg = "";
    try {
      splitBatch("myop", 7, [x], 1024);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(/myop: one sample/.test(msg), msg);
  } finally {
    x.dispose();
  }
});

Deno.test("elementwise, dense, writeInto and cast split bit-identically", async () => {
  const shape = [5, 3, 9, 9];
  const r = await both(() =>
    tidy(() => {
      const a = randTensor(shape, 2), b = randTensor(shape, 3);
      const c = randTensor([1, 3, 1, 1], 4);
      const t = F.permute(randTensor([5, 9, 9, 3], 5), [0, 3, 1, 2]);
      return [
        F.relu(a), // flat unary
        F.add(a, b), // flat binary
        F.mul(t, c), // strided + broadcast
        F.where(F.gt(a, b), t, b), // ternary
        F.dense(t), // strided copy
        F.concat([a, F.slice(b, 1, 0, 1)], 1), // writeInto
        F.cast(F.cast(F.affine(a, 100, 0), "i32"), "f32"),
        F.fill(shape, 0.5),
      ];
    })
  );
  assert(r.dSplit > r.dWhole, `${r.dSplit} dispatches split vs ${r.dWhole}`);
  sameBits(r.whole, r.split, "elementwise");
});

Deno.test("reductions over a tensor past the limit split over kept and reduced dims", async () => {
  const r = await both(() =>
    tidy(() => {
      const x = randTensor([5, 6, 9, 9], 6);
      return [
        F.sum(x, [0, 2, 3]),
        F.sum(x),
        F.max(x, 1, true),
        F.mean(F.permute(x, [1, 0, 2, 3]), [1, 2]),
      ];
    })
  );
  assert(r.dSplit > r.dWhole);
  r.whole.forEach((w, i) => assertClose(r.split[i], w, { what: `reduce ${i}`, atol: 1e-4 }));
});

Deno.test("conv2d forward and both gradients split over the batch", async () => {
  // The conv kernels' batch splitting (the texture path works a sample at a time anyway).
  setConvTiles(convTiles());
  try {
    await convSplitCases();
  } finally {
    setConvTiles(null);
  }
});

async function convSplitCases(): Promise<void> {
  for (const opts of [{ stride: 2, padding: 3 }, { stride: 1, padding: 0 }]) {
    const k = opts.padding ? 7 : 1;
    let gw: Float32Array[] = [];
    const r = await both(() => {
      const x = requireGrad(randTensor([5, 4, 10, 10], 7));
      const w = requireGrad(randTensor([4, 4, k, k], 8, -0.2, 0.2));
      const y = F.conv2d(x, w, null, opts);
      const gy = randTensor(y.shape.slice(), 9);
      backward(F.sum(F.mul(y, gy)));
      const out = [F.dense(y, true), x.grad!, w.grad!];
      x.grad = w.grad = null;
      tidy(() => [x, w, gy, y].forEach((t) => t.dispose()));
      return out;
    });
    assert(r.dSplit > r.dWhole);
    sameBits(r.whole.slice(0, 2), r.split.slice(0, 2), `conv2d ${JSON.stringify(opts)}`);
    gw = [r.whole[2], r.split[2]];
    assertClose(gw[1], gw[0], { what: "conv2d weight gradient", atol: 1e-4, rtol: 1e-4 });
  }
}

Deno.test("batchNorm2d training forward and backward split bit-identically", async () => {
  // [5, 3, 8, 12]: planes of a multiple of 4, so the per-channel sums read vec4s in both runs.
  for (const shape of [[5, 3, 9, 9], [5, 3, 8, 12]]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const r = await both(() => {
      const x = requireGrad(tensor(randArray(n, 10, 99, 101), shape));
      const w = requireGrad(tensor(randArray(3, 11, 0.5, 1.5)));
      const b = requireGrad(tensor(randArray(3, 12)));
      const rm = tensor(randArray(3, 13)), rv = tensor(randArray(3, 14, 0.5, 2));
      const y = F.batchNorm2d(x, {
        weight: w,
        bias: b,
        runningMean: rm,
        runningVar: rv,
        training: true,
      });
      const gy = randTensor(shape, 15);
      backward(F.sum(F.mul(y, gy)));
      const out = [F.dense(y, true), x.grad!, w.grad!, b.grad!, rm, rv];
      tidy(() => [x, w, b, gy, y].forEach((t) => t.dispose()));
      return out;
    });
    assert(r.dSplit > r.dWhole);
    sameBits(r.whole, r.split, `batchNorm2d [${shape}]`);
  }
});

Deno.test("pooling forward and backward split bit-identically", async () => {
  const r = await both(() => {
    const x = requireGrad(randTensor([5, 3, 10, 10], 16));
    const outs: Tensor[] = [];
    const mp = F.maxPool2d(x, { kernel: 3, stride: 2, padding: 1 });
    const ap = F.avgPool2d(x, { kernel: 2 });
    const ad = F.adaptiveAvgPool2d(x, [3, 4]);
    const gl = F.adaptiveAvgPool2d(x, [1, 1]);
    backward(
      F.add(F.add(F.sum(F.square(mp)), F.sum(F.square(ap))), F.add(F.sum(F.square(ad)), F.sum(gl))),
    );
    outs.push(...[mp, ap, ad, gl].map((t) => F.dense(t, true)), x.grad!);
    tidy(() => [x, mp, ap, ad, gl].forEach((t) => t.dispose()));
    return outs;
  });
  assert(r.dSplit > r.dWhole);
  // The gradient sums four branches whose reductions (F.sum) split: compare those closely.
  sameBits(r.whole.slice(0, 4), r.split.slice(0, 4), "pooling");
  assertClose(r.split[4], r.whole[4], { what: "pooling gradient", atol: 1e-5 });
});

Deno.test("high-frequency channel and augmentation split by image", async () => {
  const n = 5, h = 12, w = 12;
  const params = Array.from({ length: n }, (_, i) => ({
    ...identityParams(),
    hflip: i % 2 === 0,
    angle: 37 * i,
    jitter: true,
    brightness: 1.1,
    contrast: 0.9 + 0.05 * i,
    saturation: 1.05,
    hue: 0.02 * i,
    order: [3, 1, 0, 2] as [number, number, number, number],
    grayscale: i === 3,
  }));
  const r = await both(() =>
    tidy(() => {
      const x = randTensor([n, 3, h, w], 17, 0, 1);
      const m = randTensor([n, 1, h, w], 18, 0, 1);
      const a = augmentWith(x, params, m);
      return [highFrequencyDirect(x), a.images, a.mask!];
    })
  );
  assert(r.dSplit > r.dWhole);
  sameBits(r.whole, r.split, "highfreq/augment");
});

Deno.test("a small ResNet-ADL training step is unchanged by splitting", async () => {
  const cfg = {
    ...RESNET50_ADL,
    layers: [1, 1, 1, 1] as [number, number, number, number],
    width: 8,
  };
  const names = ["conv1.weight", "bn1.weight", "layer1.0.conv2.weight", "fc.weight"];
  const r = await both(() => {
    const m = new ResNetAdl(cfg);
    const x = randTensor([4, 3, 24, 24], 19, 0, 1);
    const t = tensor([0, 1, 1, 0], [4, 1]);
    const loss = F.bceWithLogits(m.forward(x), t);
    backward(loss);
    const params = new Map(m.namedParameters());
    const out = [loss, ...names.map((n) => params.get(n)!.grad!)];
    for (const p of params.values()) {
      if (!out.includes(p.grad!)) p.grad?.dispose();
      p.grad = null;
      p.dispose();
    }
    x.dispose();
    t.dispose();
    return out;
  }, 12288);
  assert(r.dSplit > r.dWhole);
  r.whole.forEach((w, i) =>
    assertClose(r.split[i], w, { what: names[i - 1] ?? "loss", atol: 1e-5, rtol: 1e-3 })
  );
});
