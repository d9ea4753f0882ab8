import assert from "node:assert/strict";
import { dice, idsScore, iou, segCounts, SegMetrics } from "../../pipeline/metrics.ts";

const close = (a: number, b: number, what: string) => {
  if (Math.abs(a - b) > 1e-12) throw new Error(`${what}: ${a} != ${b}`);
};

Deno.test("per-patch Dice/IoU: logits > 0, target != 0, smooth 1e-3 (hand-computed)", () => {
  // 2×3 patch: pred on at 0,1,2 (logit 0 is off); target on at 1,2,4 (255 counts as on).
  const logits = [2.5, 0.1, 7, 0, -1, -3];
  const target = [0, 255, 1, 0, 1, 0];
  assert.deepEqual(segCounts(logits, target), { inter: 2, pred: 3, target: 3 });
  close(dice(logits, target), (4 + 1e-3) / (6 + 1e-3), "dice");
  close(iou(logits, target), (2 + 1e-3) / (4 + 1e-3), "iou");
  // Both empty: smoothing gives 1; prediction on an empty target: ~0.
  close(dice([-1, -1], [0, 0]), 1, "empty dice");
  close(iou([-1, -1], [0, 0]), 1, "empty iou");
  close(dice([1, 1], [0, 0]), 1e-3 / (2 + 1e-3), "false positive dice");
  assert.throws(() => dice([1], [1, 0]), /1 pixels, target 2/);
});

Deno.test("SegMetrics: per-patch mean as the reference, pooled micro scores", () => {
  const m = new SegMetrics();
  m.add([1, 1, -1, -1], [1, 0, 0, 0]); // I1 P2 T1
  m.add([1, 1, 1, 1], [1, 1, 1, 1]); // I4 P4 T4
  m.add([-1, -1, -1, -1], [0, 0, 0, 1]); // I0 P0 T1
  const s = m.summary();
  assert.equal(s.patches, 3);
  const d = [(2 + 1e-3) / (3 + 1e-3), (8 + 1e-3) / (8 + 1e-3), 1e-3 / (1 + 1e-3)];
  const j = [(1 + 1e-3) / (2 + 1e-3), 1, 1e-3 / (1 + 1e-3)];
  close(s.dice, (d[0] + d[1] + d[2]) / 3, "mean dice");
  close(s.iou, (j[0] + j[1] + j[2]) / 3, "mean iou");
  close(s.pooledDice, (2 * 5) / (6 + 6), "pooled dice");
  close(s.pooledIoU, 5 / (6 + 6 - 5), "pooled iou");
  assert.ok(Number.isNaN(new SegMetrics().summary().dice));
});

Deno.test("IDS = |CAM ∧ SAM| / (|SAM| + 1)", () => {
  close(idsScore([1, 1, 0, 0], [1, 1, 1, 0]), 2 / 4, "partial");
  close(idsScore([1, 1, 1, 1], [0, 0, 0, 0]), 0, "empty SAM");
  // 9 of 9 SAM pixels inside the CAM: 9/10 = 0.9 passes the reference's >= 0.9 filter.
  close(idsScore(new Array(12).fill(1), [...new Array(9).fill(1), 0, 0, 0]), 0.9, "all inside");
  close(idsScore([255, 0, 1], [true, true, false].map(Number)), 1 / 3, "nonzero counts");
  assert.throws(() => idsScore([1], [1, 1]), /CAM has 1 pixels/);
});
