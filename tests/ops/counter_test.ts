import assert from "node:assert";
import { tensor } from "../../engine/mod.ts";
import { counterAddRaw } from "../../engine/ops/counter.ts";
import { BatchNorm2d } from "../../engine/nn/norm.ts";
import { randArray, setup } from "../util/gpu.ts";

await setup();

Deno.test("counterAddRaw adds in place; BatchNorm2d counts training batches only", async () => {
  const c = tensor(new Int32Array([41]), [1], "i32");
  counterAddRaw(c);
  counterAddRaw(c, -3);
  assert.deepEqual(Array.from(await c.data()), [39]);
  const scalar = tensor(new Int32Array([7]), [], "i32"); // PyTorch's 0-d counter, loaded as is
  counterAddRaw(scalar, 2);
  assert.equal(await scalar.item(), 9);
  assert.throws(() => counterAddRaw(tensor([1], [1])), /counterAddRaw: .*i32/);
  assert.throws(() => counterAddRaw(tensor(new Int32Array(2), [2], "i32")), /one-element/);
  assert.throws(() => counterAddRaw(c, 0.5), /32-bit integer/);
  const bn = new BatchNorm2d(2);
  const x = tensor(randArray(16, 1), [2, 2, 2, 2]);
  bn.forward(x).dispose();
  bn.forward(x).dispose();
  bn.eval();
  bn.forward(x).dispose();
  assert.equal(await bn.numBatchesTracked.item(), 2);
  for (const t of [c, scalar, x]) t.dispose();
  bn.dispose();
});
