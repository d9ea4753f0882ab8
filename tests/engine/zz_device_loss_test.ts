/**
 * Device loss and recovery. Runs last (file name) because it destroys the engine's device; it
 * re-initialises before it ends, so anything after it still has a working engine.
 */
import assert from "node:assert/strict";
import { F, gpu, initGpu, memoryStats, tensor } from "../../engine/mod.ts";
import { assertClose, setup } from "../util/gpu.ts";

await setup();

Deno.test("after device loss: clear errors, then initGpu() creates a fresh working device", async () => {
  const old = gpu();
  const t = tensor([1, 2, 3]);
  assertClose(await F.add(t, t).data(), [2, 4, 6]);
  old.device.destroy();
  await old.device.lost;
  assert.throws(() => gpu(), /the WebGPU device was lost \(destroyed: .*\); re-run initGpu\(\)/);
  assert.throws(() => F.add(t, t), /device was lost/);
  const fresh = await initGpu();
  assert.notEqual(fresh.device, old.device);
  assert.equal(gpu(), fresh);
  // Old tensors are gone with their device; releasing them must not poison the new pool.
  const before = memoryStats().liveBytes;
  t.dispose();
  assert.ok(memoryStats().liveBytes <= before);
  // Pipelines, bind groups and pooled buffers are rebuilt on the new device.
  for (let i = 0; i < 3; i++) {
    const a = tensor([1, 2, 3, 4], [2, 2]);
    const s = F.sum(F.mul(F.transpose(a), 2), 1);
    assertClose(await s.data(), [8, 12]);
    a.dispose();
    s.dispose();
  }
});
