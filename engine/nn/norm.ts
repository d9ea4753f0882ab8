/** BatchNorm2d, LayerNorm and SAM's LayerNorm2d with PyTorch's parameter and buffer names. */
import { F, isRecomputing, noGrad, type Tensor, tensor, tidy } from "../mod.ts";
import { Module } from "./module.ts";
import { constant } from "./init.ts";
import { counterAddRaw } from "../ops/counter.ts";

export class BatchNorm2d extends Module {
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
  numBatchesTracked: Tensor;
  constructor(readonly channels: number, readonly opts: { eps?: number; momentum?: number } = {}) {
    super();
    this.weight = this.param("weight", constant([channels], 1));
    this.bias = this.param("bias", constant([channels], 0));
    this.runningMean = this.buffer("running_mean", constant([channels], 0));
    this.runningVar = this.buffer("running_var", constant([channels], 1));
    // PyTorch stores an int64 counter; kept as i32 here (converted on load/save).
    this.numBatchesTracked = this.buffer(
      "num_batches_tracked",
      tensor(new Int32Array([0]), [1], "i32"),
    );
  }
  private countBatch(): void {
    increment(this.numBatchesTracked);
  }
  /** `relu`, `residual`: relu?(result + residual) in the same pass (F.batchNorm2d's options). */
  forward(x: Tensor, opts: { relu?: boolean; residual?: Tensor } = {}): Tensor {
    // A checkpointed forward's rerun must not count the batch or move the statistics twice.
    const update = !this.training || !isRecomputing();
    if (this.training && update) this.countBatch();
    return F.batchNorm2d(x, {
      relu: opts.relu,
      residual: opts.residual,
      weight: this.weight,
      bias: this.bias,
      runningMean: update ? this.runningMean : undefined,
      runningVar: update ? this.runningVar : undefined,
      training: this.training,
      momentum: this.opts.momentum ?? 0.1,
      eps: this.opts.eps ?? 1e-5,
    });
  }
}

/**
 * `num_batches_tracked += 1` on the GPU (no readback), as PyTorch does in training mode: one
 * dispatch (engine/ops/counter.ts) for the dense counter a module holds, else through f32.
 */
function increment(counter: Tensor): void {
  if (counter.dtype === "i32" && counter.size === 1 && counter.isDense()) {
    return counterAddRaw(counter, 1);
  }
  noGrad(() =>
    tidy(() => {
      const next = F.cast(F.add(F.cast(counter, "f32"), 1), "i32");
      F.writeInto(counter, next);
    })
  );
}

export class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-5) {
    super();
    this.weight = this.param("weight", constant([dim], 1));
    this.bias = this.param("bias", constant([dim], 0));
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, [this.dim], this.weight, this.bias, this.eps);
  }
}

/** SAM's LayerNorm2d: normalises over channels at each pixel of an NCHW tensor. */
export class LayerNorm2d extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(readonly channels: number, readonly eps = 1e-6) {
    super();
    this.weight = this.param("weight", constant([channels], 1));
    this.bias = this.param("bias", constant([channels], 0));
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm2d(x, this.weight, this.bias, this.eps);
  }
}
