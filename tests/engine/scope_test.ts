import assert from "node:assert/strict";
import {
  backward,
  F,
  keep,
  memoryStats,
  requireGrad,
  type Tensor,
  tensor,
  tidy,
  tidyAsync,
} from "../../engine/mod.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

await setup();

const live = () => memoryStats().liveBytes;

Deno.test("tidy disposes everything made inside except its result", async () => {
  const base = live();
  const x = tensor(randArray(1000, 1));
  const y = tidy(() => {
    const a = F.exp(x);
    const b = F.mul(a, 2);
    const c = F.add(b, x);
    return F.sum(c);
  });
  assert.equal(
    live(),
    base + 4096 + 256,
    "only x (4 KiB) and the 1-element result (256 B class) live",
  );
  assert.ok(Number.isFinite(await y.item()));
  y.dispose();
  x.dispose();
  assert.equal(live(), base);
});

Deno.test("tidy keeps tensors reachable through arrays, plain objects and maps", () => {
  const base = live();
  const out = tidy(() => {
    const a = tensor([1]), b = tensor([2]), c = tensor([3]), junk = tensor([4]);
    F.add(junk, junk);
    return { list: [a], nested: { b }, map: new Map([["c", c]]) };
  });
  assert.ok(!out.list[0].isDisposed && !out.nested.b.isDisposed && !out.map.get("c")!.isDisposed);
  assert.equal(live(), base + 3 * 256);
  out.list[0].dispose();
  out.nested.b.dispose();
  out.map.get("c")!.dispose();
  assert.equal(live(), base);
});

Deno.test("forward + backward under tidy, gradients kept outside: live bytes return to baseline", async () => {
  const w = requireGrad(tensor(randArray(64 * 3, 2), [64, 3]));
  const b = requireGrad(tensor([0.1, 0.2, 0.3]));
  const base = live();
  for (let step = 0; step < 3; step++) {
    const loss = tidy(() => {
      const x = tensor(randArray(8 * 64, 10 + step), [8, 64]);
      const h = F.tanh(F.add(F.sum(F.mul(F.reshape(x, [8, 64, 1]), w), 1), b));
      const l = F.mean(F.square(h));
      backward(l);
      return l.item();
    });
    assert.ok(Number.isFinite(await loss));
    // Only the two accumulated gradients survive the scope.
    assert.equal(live(), base + 1024 + 256, `step ${step}`);
  }
  assert.deepEqual(w.grad!.shape, [64, 3]);
  for (const t of [w, b]) {
    t.grad!.dispose();
    t.grad = null;
  }
  assert.equal(live(), base);
  w.dispose();
  b.dispose();
});

Deno.test("a graph abandoned without backward frees its saved tensors at scope end", () => {
  const x = requireGrad(tensor(randArray(4096, 3)));
  const base = live();
  const n = tidy(() => {
    // exp saves its output, mul saves both inputs, div saves the divisor and output.
    const y = F.div(F.mul(F.exp(x), x), F.add(F.square(x), 1));
    return y.size; // the graph is not returned: nothing will ever call backward
  });
  assert.equal(n, 4096);
  assert.equal(live(), base, "saved tensors were released");
  // A graph kept by the result stays alive until its backward frees it.
  const l = tidy(() => F.sum(F.mul(F.exp(x), x)));
  assert.ok(live() > base + 256, "saved exp output still held for backward");
  backward(l);
  l.dispose();
  x.grad!.dispose();
  x.grad = null;
  assert.equal(live(), base);
  x.dispose();
});

Deno.test("user dispose of a tensor saved for backward keeps it until backward", async () => {
  const x = requireGrad(tensor([1, 2, 3]));
  const e = F.exp(x); // exp saves e
  const l = F.sum(F.mul(e, 2));
  e.dispose();
  assert.equal(e.isDisposed, false, "held by the graph");
  backward(l);
  assert.equal(e.isDisposed, true, "freed after backward released it");
  assertClose(await x.grad!.data(), [1, 2, 3].map((v) => 2 * Math.exp(v)), { rtol: 1e-5 });
  for (const t of [x.grad!, x, l]) t.dispose();
});

Deno.test("use after dispose is a clear error; dispose is idempotent", async () => {
  const x = tensor([1, 2]);
  x.dispose();
  x.dispose();
  assert.throws(() => F.add(x, x), /was used after dispose\(\)/);
  await assert.rejects(() => x.data(), /tensor #\d+ \[2\] was used after dispose\(\)/);
  assert.throws(() => x.binding(), /used after dispose/);
  assert.throws(() => F.reshape(x, [2, 1]), /used after dispose/);
  const made = tidy(() => tensor([5]));
  assert.equal(made.isDisposed, false);
  made.dispose();
});

Deno.test("keep() survives the scope; nested tidy returns tensors to the parent", () => {
  const base = live();
  let inner: Tensor | null = null;
  let kept: Tensor | null = null;
  const outer = tidy(() => {
    kept = keep(tensor([9]));
    inner = tidy(() => {
      tensor([1]); // disposed by the inner scope
      return tensor([2]); // moves to the outer scope
    });
    assert.equal(inner.isDisposed, false);
    return tensor([3]);
  });
  assert.equal(inner!.isDisposed, true, "the inner result belonged to the outer scope");
  assert.equal(kept!.isDisposed, false);
  assert.equal(outer.isDisposed, false);
  assert.equal(live(), base + 2 * 256);
  kept!.dispose();
  outer.dispose();
  assert.equal(live(), base);
});

Deno.test("tidy cleans up when fn throws; tidyAsync works across awaits", async () => {
  const base = live();
  assert.throws(() =>
    tidy(() => {
      tensor(new Float32Array(100));
      throw new Error("inside");
    }), /inside/);
  assert.equal(live(), base);
  const v = await tidyAsync(async () => {
    const a = tensor([1, 2, 3]);
    const s = F.sum(a);
    const val = await s.item();
    return { val, t: F.mul(a, val) };
  });
  assert.equal(v.val, 6);
  assert.deepEqual([...(await v.t.data())], [6, 12, 18]);
  assert.equal(live(), base + 256);
  v.t.dispose();
  await assert.rejects(() =>
    tidyAsync(async () => {
      tensor([1]);
      await Promise.resolve();
      throw new Error("async");
    }), /async/);
  assert.equal(live(), base);
});

Deno.test("a failed backward (graph already freed) leaks nothing", () => {
  const x = requireGrad(tensor(randArray(2048, 4)));
  const l = tidy(() => F.sum(F.exp(x)));
  backward(l);
  x.grad!.dispose();
  x.grad = null;
  const base = live();
  assert.throws(() => backward(l), /already freed/);
  assert.equal(live(), base);
  assert.equal(x.grad, null);
  l.dispose();
  x.dispose();
});
