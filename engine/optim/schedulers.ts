/**
 * Learning-rate schedulers with torch.optim.lr_scheduler's recursive (chainable) formulas.
 * Construction sets every group's lr to its `initialLr` (epoch 0); each `step()` advances one
 * epoch and writes the new lr into the optimiser's groups.
 */
import type { Optimizer } from "./adam.ts";

abstract class LRScheduler {
  /** torch's `last_epoch`: 0 after construction. */
  lastEpoch = 0;
  readonly baseLrs: number[];
  constructor(readonly optimizer: Optimizer) {
    this.baseLrs = optimizer.paramGroups.map((g) => g.initialLr);
    optimizer.paramGroups.forEach((g, i) => g.lr = this.baseLrs[i]);
  }
  protected abstract nextLr(groupLr: number, baseLr: number): number;
  /** Advances one epoch. */
  step(): void {
    this.lastEpoch++;
    this.optimizer.paramGroups.forEach((g, i) => g.lr = this.nextLr(g.lr, this.baseLrs[i]));
  }
  /** The current lr of every group (torch's `get_last_lr()`). */
  lastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }
  /** What resuming needs (JSON-safe; numbers round-trip exactly through JSON). */
  state(): SchedulerState {
    return { lastEpoch: this.lastEpoch, lastLr: this.lastLr() };
  }
  /** Restores {@link state}: the epoch and every group's lr (so the order of loads does not matter). */
  load(s: SchedulerState): void {
    const groups = this.optimizer.paramGroups;
    if (!(Number.isInteger(s.lastEpoch) && s.lastEpoch >= 0) || s.lastLr.length !== groups.length) {
      throw new Error(
        `${this.constructor.name}.load: expected lastEpoch >= 0 and ${groups.length} lrs, got ` +
          `${s.lastEpoch} and ${s.lastLr.length}`,
      );
    }
    this.lastEpoch = s.lastEpoch;
    groups.forEach((g, i) => g.lr = s.lastLr[i]);
  }
}

/** A scheduler's resumable state. */
export interface SchedulerState {
  lastEpoch: number;
  /** Every group's lr after `lastEpoch` steps. */
  lastLr: number[];
}

/** torch StepLR: multiplies the lr by `gamma` every `stepSize` epochs. */
export class StepLR extends LRScheduler {
  constructor(optimizer: Optimizer, readonly stepSize: number, readonly gamma = 0.1) {
    if (!(Number.isInteger(stepSize) && stepSize > 0)) {
      throw new Error(`StepLR: stepSize must be a positive integer, got ${stepSize}`);
    }
    super(optimizer);
  }
  protected nextLr(lr: number): number {
    return this.lastEpoch === 0 || this.lastEpoch % this.stepSize !== 0 ? lr : lr * this.gamma;
  }
}

/** torch CosineAnnealingLR (no restarts; past tMax the cosine continues, as torch's does). */
export class CosineAnnealingLR extends LRScheduler {
  constructor(optimizer: Optimizer, readonly tMax: number, readonly etaMin = 0) {
    if (!(tMax > 0)) throw new Error(`CosineAnnealingLR: tMax must be positive, got ${tMax}`);
    super(optimizer);
  }
  protected nextLr(lr: number, base: number): number {
    const e = this.lastEpoch, T = this.tMax, lo = this.etaMin;
    if (e === 0) return lr;
    if ((e - 1 - T) % (2 * T) === 0) return lr + (base - lo) * (1 - Math.cos(Math.PI / T)) / 2;
    return (1 + Math.cos(Math.PI * e / T)) / (1 + Math.cos(Math.PI * (e - 1) / T)) * (lr - lo) + lo;
  }
  /** The closed form eta_min + (base − eta_min)(1 + cos(π·epoch/tMax))/2. */
  closedForm(epoch = this.lastEpoch): number[] {
    return this.baseLrs.map((b) =>
      this.etaMin + (b - this.etaMin) * (1 + Math.cos(Math.PI * epoch / this.tMax)) / 2
    );
  }
}
