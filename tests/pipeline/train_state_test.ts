/**
 * loadTrainState refuses a checkpoint lacking one of the model's weights (naming the file and the
 * key) unless the caller says that key may be absent (a SAM stage checkpoints only what it trains).
 */
import assert from "node:assert/strict";
import { F, type Tensor, tensor } from "../../engine/mod.ts";
import { Module } from "../../engine/nn/module.ts";
import { loadTrainState, saveTrainState } from "../../pipeline/train_state.ts";
import { setup } from "../util/gpu.ts";

await setup();

class Head extends Module {
  weight: Tensor;
  constructor(fill: number) {
    super();
    this.weight = this.param("weight", tensor(new Float32Array(3).fill(fill)));
  }
  forward(x: Tensor): Tensor {
    return F.mul(x, this.weight);
  }
}

/** A "base" part and a trained "decoder" part, like SAM's encoder and mask decoder. */
class Net extends Module {
  base: Head;
  decoder: Head;
  constructor(fill: number) {
    super();
    this.base = this.child("base", new Head(fill));
    this.decoder = this.child("decoder", new Head(fill));
  }
  forward(x: Tensor): Tensor {
    return this.decoder.forward(this.base.forward(x));
  }
}

Deno.test("loadTrainState: a checkpoint lacking a model key is refused naming file and key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "train_state_" });
  try {
    const full = `${dir}/full.safetensors`, part = `${dir}/part.safetensors`;
    await saveTrainState(full, new Net(2), null, { epoch: 1 });
    await saveTrainState(part, new Net(3), null, {}, (k) => k.startsWith("decoder."));
    const into = new Net(0);
    assert.deepEqual(await loadTrainState(full, into, null), { epoch: 1, steps: {} });
    assert.deepEqual([...await into.base.weight.data()], [2, 2, 2]);
    await assert.rejects(
      () => loadTrainState(part, new Net(0), null),
      (e: Error) => {
        assert.ok(e.message.includes(part), e.message);
        assert.match(e.message, /lacks 1 of this model's weights \(base\.weight\)/);
        return true;
      },
    );
    // Allowed absent: the base keeps its own values, the decoder is loaded.
    const sam = new Net(7);
    await loadTrainState(part, sam, null, (k) => !k.startsWith("decoder."));
    assert.deepEqual([...await sam.base.weight.data()], [7, 7, 7]);
    assert.deepEqual([...await sam.decoder.weight.data()], [3, 3, 3]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
