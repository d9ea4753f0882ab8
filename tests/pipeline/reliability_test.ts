/** The pipeline's NaN/divergence check and out-of-memory hint name the stage, step and remedy. */
import assert from "node:assert/strict";
import { checkFinite, withOomHint } from "../../pipeline/train_guards.ts";

Deno.test("checkFinite reports NaN, Inf and divergence with the stage and step", () => {
  checkFinite("classifier", "epoch 1 step 3", 0.7);
  assert.throws(
    () => checkFinite("classifier", "epoch 2 step 5", NaN),
    /classifier: the loss became NaN at epoch 2 step 5.*learning rate/,
  );
  assert.throws(
    () => checkFinite("sam preliminary", "epoch 1 step 1", Infinity),
    /sam preliminary: the loss became Infinity/,
  );
  assert.throws(
    () => checkFinite("classifier", "epoch 3 step 1", 3e7),
    /diverged \(3\.00e\+7\) at epoch 3 step 1; lower the learning rate/,
  );
});

Deno.test("withOomHint turns the engine's out-of-memory error into the batch size to lower", async () => {
  const oom = () =>
    Promise.reject(
      new Error(
        "WebGPU ran out of memory: out of memory: allocation failed — lower the batch size or tile the work",
      ),
    );
  await assert.rejects(
    withOomHint("classifier", "--batch-size", 16, oom),
    /classifier: the GPU ran out of memory with batch size 16; lower it \(--batch-size 8\)/,
  );
  // Other errors pass through unchanged.
  await assert.rejects(
    withOomHint("classifier", "--batch-size", 16, () => Promise.reject(new Error("other"))),
    /^Error: other$/,
  );
  assert.equal(await withOomHint("classifier", "--batch-size", 16, () => Promise.resolve(5)), 5);
});
