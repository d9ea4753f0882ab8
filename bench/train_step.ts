/**
 * One training step as the benchmarks run it, declared once (bench/models.ts, bench/memory.ts):
 * the loss inside `tidy` (the step's temporaries freed), its backward, one optimiser step and the
 * gradients zeroed. The last loss is kept for a check after the step; the one before is disposed.
 */
import { backward, type Tensor, tidy } from "../engine/mod.ts";
import type { Adam } from "../engine/optim/adam.ts";

export class TrainStep {
  /** The loss of the latest step (null before the first and after `dispose`). */
  lastLoss: Tensor | null = null;

  constructor(private readonly lossOf: () => Tensor, private readonly opt: Adam) {}

  step(): void {
    const loss = tidy(() => {
      const l = this.lossOf();
      backward(l);
      return l;
    });
    this.opt.step();
    this.opt.zeroGrad();
    this.lastLoss?.dispose();
    this.lastLoss = loss;
  }

  /** Disposes the last loss (the optimiser stays the caller's). */
  dispose(): void {
    this.lastLoss?.dispose();
    this.lastLoss = null;
  }
}
