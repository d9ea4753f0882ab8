/**
 * Attention-based Dropout Layer (Choe & Shim, CVPR 2019) as EP-SAM uses it: in training the
 * channel-mean attention gives an importance map (sigmoid) and a drop mask (attention below
 * threshold·max per sample); one Bernoulli draw per forward (probability `dropRate`) picks the drop
 * mask, otherwise the importance map; the input is multiplied by the chosen map. Identity in eval.
 */
import { F, type Tensor } from "../engine/mod.ts";
import { Module } from "../engine/nn/module.ts";
import { mulberry32Step } from "../engine/mulberry32.ts";

export interface AdlOptions {
  dropRate?: number;
  threshold?: number;
  /** Seed of the per-forward Bernoulli draw. */
  seed?: number;
}

export class Adl extends Module {
  readonly dropRate: number;
  readonly threshold: number;
  /** When false the layer is the identity in training too (the "no ADL" ablation). */
  enabled = true;
  /**
   * State of the per-forward draw. Training checkpoints save it ({@link rngState}) so a resumed
   * run draws the same branches as an uninterrupted one.
   */
  private state: number;
  /** Which branch the last training forward took (for tests and logging). */
  lastBranch: "importance" | "drop" | "identity" = "identity";

  constructor(opts: AdlOptions = {}) {
    super();
    this.dropRate = opts.dropRate ?? 0.75;
    this.threshold = opts.threshold ?? 0.8;
    if (!(this.dropRate >= 0 && this.dropRate <= 1)) {
      throw new Error(`ADL: drop rate ${this.dropRate} not in [0, 1]`);
    }
    if (!(this.threshold >= 0 && this.threshold <= 1)) {
      throw new Error(`ADL: threshold ${this.threshold} not in [0, 1]`);
    }
    this.state = (opts.seed ?? 0) >>> 0;
  }

  private rand(): number {
    const [s, r] = mulberry32Step(this.state);
    this.state = s;
    return r;
  }

  /** The draw generator's state (a u32), for checkpoints. */
  get rngState(): number {
    return this.state;
  }
  set rngState(s: number) {
    this.state = s >>> 0;
  }

  /** The importance map sigmoid(mean_c x), [N,1,H,W]. */
  importanceMap(x: Tensor): Tensor {
    return F.sigmoid(F.mean(x, 1, true));
  }

  /** The drop mask: 1 where mean_c x < threshold·max over the sample, [N,1,H,W]. */
  dropMask(x: Tensor): Tensor {
    const att = F.mean(x, 1, true);
    const mx = F.max(att, [1, 2, 3], true);
    return F.lt(att, F.mul(mx, this.threshold));
  }

  forward(x: Tensor, branch?: "importance" | "drop"): Tensor {
    if (!this.training || !this.enabled) {
      this.lastBranch = "identity";
      return x;
    }
    // floor(U + rate) = 1 with probability rate: the drop mask.
    const b = branch ?? (Math.floor(this.rand() + this.dropRate) >= 1 ? "drop" : "importance");
    this.lastBranch = b;
    return F.mul(x, b === "drop" ? this.dropMask(x) : this.importanceMap(x));
  }
}
