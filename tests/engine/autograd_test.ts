import assert from "node:assert/strict";
import {
  backward,
  F,
  isGradEnabled,
  noGrad,
  noGradAsync,
  record,
  requireGrad,
  type Tensor,
  tensor,
  tidy,
} from "../../engine/mod.ts";
import { assertClose, setup } from "../util/gpu.ts";

await setup();

const dispose = (...ts: (Tensor | null | undefined)[]) => {
  for (const t of ts) {
    t?.grad?.dispose();
    t?.dispose();
  }
};

Deno.test("diamond graph: each node's backward runs once, gradients summed over paths", async () => {
  // A true diamond with known derivative: y = exp(x); z = y*3 + y² ; dz/dx = (3 + 2y)·y.
  const x2 = requireGrad(tensor([0.5, -1, 2]));
  const l2 = tidy(() => {
    const y = F.exp(x2);
    return F.sum(F.add(F.mul(y, 3), F.square(y)));
  });
  backward(l2);
  assertClose(await x2.grad!.data(), [0.5, -1, 2].map((v) => (3 + 2 * Math.exp(v)) * Math.exp(v)), {
    rtol: 1e-5,
  });
  l2.dispose();
  dispose(x2);

  // The shared node's rule runs once even with two consumers.
  const x3 = requireGrad(tensor([1, 2]));
  let runs = 0;
  const l3 = tidy(() => {
    const shared = record("shared", [x3], F.dense(F.mul(x3, 1), true), (g) => {
      runs++;
      return [g];
    });
    return F.sum(F.add(F.mul(shared, 2), F.mul(shared, 5)));
  });
  backward(l3);
  assert.equal(runs, 1);
  assertClose(await x3.grad!.data(), [7, 7]);
  l3.dispose();
  dispose(x3);
});

Deno.test("an op using the same input twice (x*x) gets 2x", async () => {
  const x = requireGrad(tensor([1.5, -2, 0.25]));
  const l = tidy(() => F.sum(F.mul(x, x)));
  backward(l);
  assertClose(await x.grad!.data(), [3, -4, 0.5]);
  l.dispose();
  // add(x, x) passes the same gradient tensor to both inputs: each must be its own.
  x.grad!.dispose();
  x.grad = null;
  const l2 = tidy(() => F.sum(F.add(x, x)));
  backward(l2);
  assertClose(await x.grad!.data(), [2, 2, 2]);
  l2.dispose();
  dispose(x);
});

Deno.test("gradients accumulate across two backward() calls", async () => {
  const w = requireGrad(tensor([1, 2, 3]));
  for (let k = 0; k < 2; k++) {
    const l = tidy(() => F.sum(F.mul(w, tensor([1, 10, 100]))));
    backward(l);
    l.dispose();
  }
  assertClose(await w.grad!.data(), [2, 20, 200]);
  dispose(w);
});

Deno.test("broadcast inputs get gradients summed back to their shape", async () => {
  const a = requireGrad(tensor([1, 2, 3], [3, 1]));
  const b = requireGrad(tensor([10, 20], [2]));
  const l = tidy(() => F.sum(F.mul(a, b)));
  backward(l);
  assert.deepEqual(a.grad!.shape, [3, 1]);
  assertClose(await a.grad!.data(), [30, 30, 30]);
  assertClose(await b.grad!.data(), [6, 6]);
  l.dispose();
  dispose(a, b);
});

Deno.test("noGrad records nothing; frozen leaves get no .grad", async () => {
  const w = requireGrad(tensor([1, 2]));
  const frozen = tensor([3, 4]); // requiresGrad false
  assert.equal(isGradEnabled(), true);
  const y = noGrad(() => {
    assert.equal(isGradEnabled(), false);
    return F.mul(w, 2);
  });
  assert.equal(y.requiresGrad, false);
  assert.equal(y.node, null);
  assert.equal(isGradEnabled(), true);
  await noGradAsync(async () => {
    await Promise.resolve();
    assert.equal(isGradEnabled(), false);
  });
  assert.equal(isGradEnabled(), true);
  // noGrad restores the mode after a throw.
  assert.throws(() =>
    noGrad(() => {
      throw new Error("boom");
    }), /boom/);
  assert.equal(isGradEnabled(), true);

  const l = tidy(() => F.sum(F.mul(w, frozen)));
  backward(l);
  assertClose(await w.grad!.data(), [3, 4]);
  assert.equal(frozen.grad, null);
  l.dispose();
  // requireGrad(t, false) freezes a former leaf.
  requireGrad(w, false);
  assert.throws(() => backward(tidy(() => F.sum(F.mul(w, frozen)))), /does not require grad/);
  dispose(w, frozen, y);
});

Deno.test("backward twice without retainGraph → clear error; retainGraph allows it", async () => {
  const x = requireGrad(tensor([1, 2]));
  const l = tidy(() => F.sum(F.exp(x)));
  backward(l);
  assert.throws(() => backward(l), /already freed.*retainGraph/);
  l.dispose();
  x.grad!.dispose();
  x.grad = null;

  const l2 = tidy(() => F.sum(F.exp(x)));
  backward(l2, undefined, { retainGraph: true });
  backward(l2);
  assertClose(await x.grad!.data(), [2 * Math.exp(1), 2 * Math.exp(2)], { rtol: 1e-5 });
  l2.dispose();
  dispose(x);
});

Deno.test("non-scalar loss needs an explicit gradient; requireGrad on a non-leaf throws", async () => {
  const x = requireGrad(tensor([1, 2, 3]));
  const y = F.mul(x, 2);
  assert.throws(() => backward(y), /must be a scalar, got shape \[3\]/);
  assert.throws(() => requireGrad(y), /not a leaf/);
  const g = tensor([1, 0, -1]);
  backward(y, g);
  assertClose(await x.grad!.data(), [2, 0, -2]);
  dispose(x, y, g);
});

Deno.test("a long chain (deep graph) backpropagates without recursion limits", async () => {
  const x = requireGrad(tensor([1]));
  const l = tidy(() => {
    let y = x;
    for (let i = 0; i < 3000; i++) y = F.add(y, 0.001);
    return F.sum(y);
  });
  backward(l);
  assertClose(await x.grad!.data(), [1]);
  l.dispose();
  dispose(x);
});
