/**
 * Early stopping on a monitored value (validation loss by default): an epoch improves when the
 * value beats the best so far by more than `minDelta` (lower for mode "min", higher for "max");
 * training stops after `patience` epochs in a row without improvement.
 */
export interface EarlyStoppingOptions {
  patience: number;
  minDelta?: number;
  mode?: "min" | "max";
}

/** EarlyStopping's resumable state. */
export interface EarlyStoppingState {
  best: number | null;
  counter: number;
  improved: boolean;
  shouldStop: boolean;
}

export class EarlyStopping {
  readonly patience: number;
  readonly minDelta: number;
  readonly mode: "min" | "max";
  /** Best value seen (±Infinity before the first step). */
  best: number;
  /** Epochs since the last improvement. */
  counter = 0;
  /** Whether the last `step` improved on the best (save a checkpoint then). */
  improved = false;
  /** Whether training should stop. */
  shouldStop = false;

  constructor(opts: EarlyStoppingOptions) {
    if (!(Number.isInteger(opts.patience) && opts.patience >= 0)) {
      throw new Error(
        `EarlyStopping: patience must be a non-negative integer, got ${opts.patience}`,
      );
    }
    this.patience = opts.patience;
    this.minDelta = Math.abs(opts.minDelta ?? 0);
    this.mode = opts.mode ?? "min";
    this.best = this.mode === "min" ? Infinity : -Infinity;
  }

  /** Records one epoch's value; returns true when training should stop. NaN never improves. */
  step(value: number): boolean {
    this.improved = this.mode === "min"
      ? value < this.best - this.minDelta
      : value > this.best + this.minDelta;
    if (this.improved) {
      this.best = value;
      this.counter = 0;
    } else {
      this.counter++;
      if (this.counter >= this.patience) this.shouldStop = true;
    }
    return this.shouldStop;
  }

  /** What resuming needs (JSON-safe: `best` is null before the first improvement). */
  state(): EarlyStoppingState {
    return {
      best: Number.isFinite(this.best) ? this.best : null,
      counter: this.counter,
      improved: this.improved,
      shouldStop: this.shouldStop,
    };
  }

  /** Restores {@link state}. */
  load(s: EarlyStoppingState): void {
    if (!(Number.isInteger(s.counter) && s.counter >= 0)) {
      throw new Error(
        `EarlyStopping.load: counter must be a non-negative integer, got ${s.counter}`,
      );
    }
    this.best = s.best ?? (this.mode === "min" ? Infinity : -Infinity);
    this.counter = s.counter;
    this.improved = s.improved;
    this.shouldStop = s.shouldStop;
  }

  /** Back to the initial state. */
  reset(): void {
    this.best = this.mode === "min" ? Infinity : -Infinity;
    this.counter = 0;
    this.improved = false;
    this.shouldStop = false;
  }
}
