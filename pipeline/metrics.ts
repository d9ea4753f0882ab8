/**
 * Segmentation metrics on host arrays, as the EP-SAM reference computes them
 * (`segment_anything/utils/metrics.py`, `sam_trainer.model_evaluate`, `tools/generate_sam_mask.py`):
 * prediction = logits > 0, target = mask != 0, per-patch Dice/IoU with smooth 1e-3 averaged over
 * the (tumour) patches evaluated. Pooled (micro) scores are added because the per-patch mean
 * rewards empty-vs-empty agreement on tiny tumours; both are reported.
 */

/** The reference's smoothing term. */
const SMOOTH = 1e-3;

/** Pixel counts of one patch. */
export interface SegCounts {
  /** |pred ∧ target| */
  inter: number;
  /** |pred| */
  pred: number;
  /** |target| */
  target: number;
}

/**
 * Counts of one patch: pred pixel on when value > `predThreshold` (0: logits, as the reference's
 * `masks > mask_threshold`), target pixel on when non-zero (the reference sets mask != 0 to 1).
 */
export function segCounts(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  predThreshold = 0,
): SegCounts {
  if (pred.length !== target.length) {
    throw new Error(`segCounts: prediction has ${pred.length} pixels, target ${target.length}`);
  }
  let inter = 0, p = 0, t = 0;
  for (let i = 0; i < pred.length; i++) {
    const a = pred[i] > predThreshold, b = target[i] !== 0;
    if (a) p++;
    if (b) t++;
    if (a && b) inter++;
  }
  return { inter, pred: p, target: t };
}

/** (2|P∧T| + s) / (|P| + |T| + s). */
function diceOf(c: SegCounts, smooth = SMOOTH): number {
  return (2 * c.inter + smooth) / (c.pred + c.target + smooth);
}

/** (|P∧T| + s) / (|P| + |T| − |P∧T| + s). */
function iouOf(c: SegCounts, smooth = SMOOTH): number {
  return (c.inter + smooth) / (c.pred + c.target - c.inter + smooth);
}

/** Per-patch Dice of logits (or 0/1 masks) against a 0/nonzero target. */
export function dice(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  predThreshold = 0,
): number {
  return diceOf(segCounts(pred, target, predThreshold));
}

/** Per-patch IoU of logits (or 0/1 masks) against a 0/nonzero target. */
export function iou(pred: ArrayLike<number>, target: ArrayLike<number>, predThreshold = 0): number {
  return iouOf(segCounts(pred, target, predThreshold));
}

/**
 * Agreement of a SAM mask with the CAM mask it was prompted from: |CAM ∧ SAM| / (|SAM| + 1)
 * (`generate_sam_mask.py`; both masks on where non-zero). The +1 makes an empty SAM mask score 0.
 */
export function idsScore(cam: ArrayLike<number>, sam: ArrayLike<number>): number {
  if (cam.length !== sam.length) {
    throw new Error(`idsScore: CAM has ${cam.length} pixels, SAM mask ${sam.length}`);
  }
  let inter = 0, s = 0;
  for (let i = 0; i < sam.length; i++) {
    if (sam[i] !== 0) {
      s++;
      if (cam[i] !== 0) inter++;
    }
  }
  return inter / (s + 1);
}

/** Summary of {@link SegMetrics}. */
export interface SegSummary {
  patches: number;
  /** Mean of per-patch Dice (the reference's test Dice). */
  dice: number;
  /** Mean of per-patch IoU (the reference's test IoU). */
  iou: number;
  /** 2Σ|P∧T| / (Σ|P| + Σ|T|) over all pixels (1 when both are empty). */
  pooledDice: number;
  /** Σ|P∧T| / Σ|P∨T| (1 when both are empty). */
  pooledIoU: number;
}

/** Accumulates per-patch and pooled scores over an evaluation. */
export class SegMetrics {
  private n = 0;
  private diceSum = 0;
  private iouSum = 0;
  private inter = 0;
  private pred = 0;
  private target = 0;

  /** Adds one patch (logits or 0/1 prediction, 0/nonzero target). Returns its counts. */
  add(pred: ArrayLike<number>, target: ArrayLike<number>, predThreshold = 0): SegCounts {
    return this.addCounts(segCounts(pred, target, predThreshold));
  }

  addCounts(c: SegCounts): SegCounts {
    this.n++;
    this.diceSum += diceOf(c);
    this.iouSum += iouOf(c);
    this.inter += c.inter;
    this.pred += c.pred;
    this.target += c.target;
    return c;
  }

  summary(): SegSummary {
    const union = this.pred + this.target - this.inter;
    return {
      patches: this.n,
      dice: this.n ? this.diceSum / this.n : NaN,
      iou: this.n ? this.iouSum / this.n : NaN,
      pooledDice: this.pred + this.target ? (2 * this.inter) / (this.pred + this.target) : 1,
      pooledIoU: union ? this.inter / union : 1,
    };
  }
}
