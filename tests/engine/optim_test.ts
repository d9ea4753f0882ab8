import assert from "node:assert/strict";
import { dispatchStats, memoryStats, type Tensor, tensor } from "../../engine/mod.ts";
import { Adam, AdamW } from "../../engine/optim/adam.ts";
import { CosineAnnealingLR, StepLR } from "../../engine/optim/schedulers.ts";
import { EarlyStopping } from "../../engine/optim/early_stopping.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import {
  type HostTensor,
  parseSafetensors,
  serializeSafetensors,
  toInt32,
} from "../../engine/io/safetensors.ts";

await setup();

/** torch.optim.Adam / AdamW (amsgrad off) in float64, one tensor. */
function refAdam(
  p0: ArrayLike<number>,
  grads: ArrayLike<number>[],
  lrs: number[],
  o: { betas: [number, number]; eps: number; wd: number; decoupled: boolean },
): Float64Array {
  const p = Float64Array.from(p0);
  const m = new Float64Array(p.length), v = new Float64Array(p.length);
  const [b1, b2] = o.betas;
  grads.forEach((g, s) => {
    const t = s + 1, lr = lrs[s];
    const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
    for (let i = 0; i < p.length; i++) {
      let gi = g[i];
      if (o.decoupled) p[i] *= 1 - lr * o.wd;
      else gi += o.wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + o.eps);
    }
  });
  return p;
}

const SHAPES = [[7], [3, 5, 11], [1], [1037]];

async function checkAgainstRef(decoupled: boolean): Promise<void> {
  const steps = 5;
  const wd = decoupled ? 0.05 : 0.01;
  const betas: [number, number] = [0.85, 0.995];
  const eps = 1e-7;
  const hostP = SHAPES.map((s, k) => randArray(s.reduce((a, b) => a * b, 1), 10 + k, -2, 2));
  const ps = hostP.map((d, k) => tensor(d, SHAPES[k]));
  const opt = decoupled
    ? new AdamW(ps, { lr: 0.01, betas, eps, weightDecay: wd })
    : new Adam(ps, { lr: 0.01, betas, eps, weightDecay: wd });
  const lrs = [0.01, 0.01, 0.005, 0.002, 0.02];
  const grads: Float32Array[][] = ps.map(() => []);
  for (let s = 0; s < steps; s++) {
    opt.lr = lrs[s];
    ps.forEach((p, k) => {
      const g = randArray(p.size, 100 * s + k, -1, 1);
      // Some tiny gradients (|g| ~ eps) exercise where eps enters.
      if (s === 1) g[0] = 3e-8;
      grads[k].push(g);
      p.grad?.dispose();
      p.grad = tensor(g, p.shape);
    });
    opt.step();
  }
  for (let k = 0; k < ps.length; k++) {
    const ref = refAdam(hostP[k], grads[k], lrs, { betas, eps, wd, decoupled });
    assertClose(await ps[k].data(), ref, {
      atol: 2e-6,
      rtol: 1e-5,
      what: `${decoupled ? "AdamW" : "Adam"} [${SHAPES[k]}]`,
    });
    assert.equal(opt.state.get(ps[k])!.step, steps);
  }
  opt.zeroGrad();
  opt.dispose();
  for (const p of ps) p.dispose();
}

Deno.test("Adam matches a float64 torch.optim.Adam (L2 decay, bias correction) over 5 steps", async () => {
  await checkAgainstRef(false);
});

Deno.test("AdamW matches a float64 torch.optim.AdamW (decoupled decay) over 5 steps", async () => {
  await checkAgainstRef(true);
});

Deno.test("Adam: one dispatch per parameter with a gradient, no readback; skips params without grad", () => {
  const ps = SHAPES.map((s, k) => tensor(randArray(s.reduce((a, b) => a * b, 1), k), s));
  const opt = new Adam(ps, { lr: 1e-3 });
  for (const p of ps.slice(0, 3)) p.grad = tensor(randArray(p.size, 5), p.shape);
  opt.step(); // allocates the moments
  const before = dispatchStats();
  opt.step();
  const after = dispatchStats();
  assert.equal(after.dispatches - before.dispatches, 3);
  assert.equal(after.readbacks, before.readbacks);
  assert.equal(opt.state.has(ps[3]), false, "a parameter without grad gets no state");
  const live = memoryStats().liveBytes;
  opt.dispose();
  assert.ok(memoryStats().liveBytes < live, "dispose frees the moment buffers");
  for (const p of ps) {
    p.grad?.dispose();
    p.dispose();
  }
});

Deno.test("Adam: parameter groups keep their own lr and weight decay; bad hyper-parameters throw", async () => {
  const a = tensor([1, -2, 3]), b = tensor([0.5, 0.25]);
  const opt = new Adam([{ params: [a], lr: 0.1 }, { params: [b], weightDecay: 0.5 }], { lr: 0.01 });
  assert.deepEqual(opt.paramGroups.map((g) => [g.lr, g.weightDecay]), [[0.1, 0], [0.01, 0.5]]);
  a.grad = tensor([0.1, 0.2, -0.3]);
  b.grad = tensor([1, -1]);
  opt.step();
  const o = { betas: [0.9, 0.999] as [number, number], eps: 1e-8, decoupled: false };
  assertClose(await a.data(), refAdam([1, -2, 3], [[0.1, 0.2, -0.3]], [0.1], { ...o, wd: 0 }), {
    atol: 1e-6,
  });
  assertClose(await b.data(), refAdam([0.5, 0.25], [[1, -1]], [0.01], { ...o, wd: 0.5 }), {
    atol: 1e-6,
  });
  assert.throws(() => new Adam([a], { lr: -1 }), /invalid learning rate/);
  assert.throws(() => new Adam([a], { betas: [1, 0.9] }), /invalid betas/);
  assert.throws(() => new Adam([{ params: [a] }, { params: [a] }]), /appears twice/);
  opt.zeroGrad();
  assert.equal(a.grad, null);
  opt.dispose();
  a.dispose();
  b.dispose();
});

Deno.test("StepLR and CosineAnnealingLR follow torch's schedules", () => {
  const p = tensor([1]);
  const opt = new Adam([p], { lr: 0.1 });
  const step = new StepLR(opt, 3, 0.5);
  const got: number[] = [opt.lr];
  for (let e = 0; e < 8; e++) {
    step.step();
    got.push(opt.lr);
  }
  assertClose(got, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025], {
    atol: 1e-15,
    rtol: 1e-12,
  });

  const opt2 = new Adam([{ params: [p], lr: 0.2 }], {});
  const cos = new CosineAnnealingLR(opt2, 10, 1e-3);
  const lrs: number[] = [opt2.lr];
  for (let e = 1; e <= 25; e++) {
    cos.step();
    lrs.push(opt2.lr);
    // torch's recursive form equals the closed form (also past tMax, where the cosine rises again)
    assertClose([opt2.lr], cos.closedForm(e), { atol: 1e-12, rtol: 1e-9, what: `epoch ${e}` });
  }
  assert.ok(Math.abs(lrs[10] - 1e-3) < 1e-12, "eta_min at tMax");
  assert.ok(Math.abs(lrs[20] - 0.2) < 1e-9, "back to base at 2·tMax");
  assert.throws(() => new StepLR(opt, 0), /stepSize/);
  opt.dispose();
  opt2.dispose();
  p.dispose();
});

Deno.test("EarlyStopping: patience, minDelta, mode", () => {
  const es = new EarlyStopping({ patience: 2, minDelta: 0.01 });
  assert.equal(es.step(1.0), false);
  assert.equal(es.improved, true);
  assert.equal(es.step(0.995), false); // not better by more than minDelta
  assert.equal(es.improved, false);
  assert.equal(es.step(0.9), false); // improvement resets the counter
  assert.equal(es.counter, 0);
  assert.equal(es.step(0.95), false);
  assert.equal(es.step(NaN), true);
  assert.equal(es.shouldStop, true);
  assert.equal(es.best, 0.9);
  es.reset();
  assert.equal(es.best, Infinity);
  const mx = new EarlyStopping({ patience: 1, mode: "max" });
  assert.equal(mx.step(0.5), false);
  assert.equal(mx.step(0.6), false);
  assert.equal(mx.step(0.6), true);
  const zero = new EarlyStopping({ patience: 0 });
  assert.equal(zero.step(1), false, "the first value always improves");
  assert.equal(zero.step(2), true);
  assert.throws(() => new EarlyStopping({ patience: -1 }), /patience/);
});

Deno.test({
  name:
    "Adam(lr 1e-3, wd 1e-3) on the resnet-adl-tiny weights and gradients gives torch's after_step",
  ignore: !haveFixtures(),
  fn: async () => {
    const { readSafetensors, toFloat32 } = await import("../../engine/io/safetensors.ts");
    const w = await readSafetensors(fixturePath("resnet-adl-tiny", "weights.safetensors"));
    const c = await readSafetensors(fixturePath("resnet-adl-tiny", "case.safetensors"));
    const names = [...c.keys()].filter((k) => k.startsWith("grad.")).map((k) => k.slice(5));
    assert.ok(names.length > 10);
    const ps: Tensor[] = [];
    for (const n of names) {
      const p = tensor(toFloat32(w.get(n)!), w.get(n)!.shape);
      p.grad = tensor(toFloat32(c.get(`grad.${n}`)!), p.shape);
      ps.push(p);
    }
    const opt = new Adam(ps, { lr: 1e-3, weightDecay: 1e-3 });
    opt.step();
    for (let i = 0; i < names.length; i++) {
      const want = toFloat32(c.get(`after_step.${names[i]}`)!);
      assertClose(await ps[i].data(), want, { atol: 1e-6, rtol: 1e-5, what: names[i] });
    }
    opt.zeroGrad();
    opt.dispose();
    for (const p of ps) p.dispose();
  },
});

/** Downloads an optimiser state dict and round-trips it through safetensors bytes. */
async function throughSafetensors(m: Map<string, Tensor>): Promise<Map<string, HostTensor>> {
  const host = new Map<string, HostTensor>();
  for (const [k, t] of m) {
    const data = await t.data();
    host.set(k, {
      dtype: t.dtype === "i32" ? "I32" : "F32",
      shape: [...t.shape],
      data: data as Float32Array,
    });
    t.dispose();
  }
  return parseSafetensors(serializeSafetensors(host), "optim.safetensors");
}

Deno.test("Adam/AdamW, schedulers and EarlyStopping resume bit-exactly from saved state", async () => {
  const N = 6;
  const shapes = [[3, 5], [7], [2, 2]];
  const init = shapes.map((s, k) => randArray(s.reduce((a, b) => a * b, 1), 40 + k, -2, 2));
  const losses = [0.9, 0.7, 0.8, 0.6, 0.65, 0.66];
  /** Steps `from` ≤ s < `to` with deterministic gradients; the third parameter skips step 0. */
  const run = (
    ps: Tensor[],
    opt: Adam,
    sched: CosineAnnealingLR,
    es: EarlyStopping,
    from: number,
    to: number,
  ) => {
    for (let s = from; s < to; s++) {
      ps.forEach((p, k) => {
        p.grad?.dispose();
        p.grad = k === 2 && s === 0 ? null : tensor(randArray(p.size, 500 + 10 * s + k), p.shape);
      });
      opt.step();
      sched.step();
      es.step(losses[s]);
    }
  };
  for (const Opt of [Adam, AdamW]) {
    const make = (data: Float32Array[]) => {
      const ps = data.map((d, k) => tensor(d, shapes[k]));
      const opt = new Opt([{ params: ps.slice(0, 2), lr: 0.05 }, {
        params: ps.slice(2),
        lr: 0.01,
        weightDecay: 0.1,
      }], {
        betas: [0.8, 0.99],
      });
      return {
        ps,
        opt,
        sched: new CosineAnnealingLR(opt, 4, 1e-3),
        es: new EarlyStopping({ patience: 2 }),
      };
    };
    const a = make(init);
    run(a.ps, a.opt, a.sched, a.es, 0, N);
    const b = make(init);
    run(b.ps, b.opt, b.sched, b.es, 0, N / 2);
    // Checkpoint: parameters, optimiser state (safetensors bytes), scheduler and early stopping (JSON).
    const saved = await Promise.all(b.ps.map((p) => p.data()));
    const optState = await throughSafetensors(b.opt.stateDict());
    assert.equal(optState.has("state.2.step"), true);
    assert.deepEqual(toInt32(optState.get("state.0.step")!), Int32Array.from([3]));
    const json = JSON.parse(JSON.stringify({ sched: b.sched.state(), es: b.es.state() }));
    // Resume in fresh objects.
    const c = make(saved as Float32Array[]);
    c.opt.loadStateDict(optState, { file: "optim.safetensors" });
    c.sched.load(json.sched);
    c.es.load(json.es);
    run(c.ps, c.opt, c.sched, c.es, N / 2, N);
    for (let k = 0; k < shapes.length; k++) {
      assert.deepEqual(await c.ps[k].data(), await a.ps[k].data(), `${Opt.name} parameter ${k}`);
    }
    assert.deepEqual(c.sched.lastLr(), a.sched.lastLr());
    assert.deepEqual(c.es.state(), a.es.state());
    assert.deepEqual(c.opt.state.get(c.ps[2])!.step, a.opt.state.get(a.ps[2])!.step);
    // A state dict for other parameters is refused with every problem listed.
    const other = new Opt([tensor(new Float32Array(4), [4])]);
    assert.throws(
      () => other.loadStateDict(optState, { file: "optim.safetensors" }),
      /optim\.safetensors: does not match .*\n.*state\.0\.exp_avg: got \[3, 5\], expected \[4\]/s,
    );
    for (const x of [a, b, c]) {
      x.opt.dispose();
      for (const p of x.ps) {
        p.grad?.dispose();
        p.dispose();
      }
    }
    other.dispose();
  }
});
