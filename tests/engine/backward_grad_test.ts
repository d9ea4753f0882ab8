/**
 * `backward(y, g)` with the caller's gradient (activation checkpointing calls it once per segment):
 * the gradient is used where it lies, never copied; it stays the caller's, alive and unchanged;
 * no leaf's `.grad` shares its storage; a gradient of another shape is an error.
 */
import assert from "node:assert/strict";
import {
  backward,
  F,
  flush,
  memoryStats,
  pool,
  requireGrad,
  tensor,
  tidy,
} from "../../engine/mod.ts";
import { writeInto } from "../../engine/ops/view.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

await setup();

Deno.test("backward(y, g): g is used without a copy, and stays the caller's", async () => {
  const n = 1 << 20; // 4 MiB: a size the pool tracks to the byte
  const x = requireGrad(tensor(randArray(n, 3), [n]));
  const y = tidy(() => F.mul(x, 2));
  const gHost = randArray(n, 4);
  const g = tensor(gHost, [n]);
  flush();
  const before = memoryStats().liveBytes;
  pool.resetPeak();
  backward(y, g);
  flush();
  const extra = memoryStats().peakBytes - before;
  // x.grad (= 2g) is the only new tensor; a copy of g would add another (and its zero fill).
  assert.ok(extra < 2 * n * 4, `backward took ${extra} bytes above its inputs, x.grad is ${n * 4}`);
  assertClose(await g.data(), gHost, { atol: 0, rtol: 0 });
  assertClose(await x.grad!.data(), Array.from(gHost, (v) => 2 * v), { rtol: 1e-6 });
  for (const t of [x.grad!, x, y, g]) t.dispose();
});

Deno.test("backward(y, g): a leaf reached by g unchanged gets a .grad of its own storage", async () => {
  const x = requireGrad(tensor([1, 2, 3, 4, 5, 6], [2, 3]));
  const y = tidy(() => F.reshape(x, [6]));
  const g = tensor([1, -1, 2, -2, 3, -3], [6]);
  backward(y, g);
  assert.notEqual(x.grad!.storage, g.storage, "x.grad aliases the caller's gradient");
  writeInto(g, tensor([0, 0, 0, 0, 0, 0], [6]));
  assertClose(await x.grad!.data(), [1, -1, 2, -2, 3, -3], { atol: 0, rtol: 0 });
  for (const t of [x.grad!, x, y, g]) t.dispose();
});

Deno.test("backward(y, g): a gradient of another shape is an error naming both", () => {
  const x = requireGrad(tensor([1, 2, 3]));
  const y = tidy(() => F.mul(x, 2));
  const g = tensor([1, 2], [2]);
  assert.throws(() => backward(y, g), /gradient has shape \[2\], the output \[3\]/);
  for (const t of [x, y, g]) t.dispose();
});
