/**
 * BatchNorm recalibration ("precise BN", Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"):
 * the running statistics replaced by the average of the batch statistics over clean (un-augmented)
 * training patches, computed with the current weights in a forward pass without gradients.
 *
 * Why: eval mode (validation, CAM masks, pseudo-label prompts, inference) normalises with the
 * running statistics, an exponential average (momentum 0.1) over training batches that were
 * augmented and drawn while the weights were moving. After the few dozen steps of the small
 * profiles they still carry much of their initial value (0.9^5 = 59 % after a 5-batch epoch) and
 * lag the weights, so the eval-mode classifier scored its own training positives negative and its
 * CAMs were empty or not, depending on rounding. Recalibrated statistics depend only on the weights
 * and the patches. The reference EP-SAM code does not do this (its 50-epoch runs on Camelyon take
 * thousands of steps, where the running average has converged), so it is a profile option
 * (`classifier.preciseBn`), on where the runs are short.
 */
import { noGrad, tidy, trimPool } from "../../engine/mod.ts";
import { BatchNorm2d } from "../../engine/nn/norm.ts";
import type { ResNetAdl } from "../../model/resnet_adl.ts";
import { type PatchItem, PatchLoader } from "../data/patches.ts";

export interface PreciseBnOptions {
  batchSize: number;
  /** Patch side the classifier runs at. */
  size: number;
  /** Seed and epoch of the (class-balanced, shuffled) batch order: fixed, so resumes repeat it. */
  seed: number;
  epoch: number;
  /** Whether ADL is on in training (restored afterwards; off during the pass, as in eval). */
  adl: boolean;
}

/**
 * Sets every BatchNorm's running mean and variance of `model` to the mean over the batches of
 * `items` of the batch mean and unbiased batch variance (momentum 1/k for the k-th batch: a
 * cumulative average, independent of the previous running values). The batches are class-balanced
 * and shuffled like training batches, of the training batch size, without augmentation and with
 * ADL as the identity (as in eval mode), so the statistics are those of the network eval runs.
 * Leaves the model in eval mode. Returns the number of batches used.
 */
export async function recalibrateBatchNorm(
  model: ResNetAdl,
  items: PatchItem[],
  opts: PreciseBnOptions,
): Promise<number> {
  const bns = model.namedModules().map(([, m]) => m).filter((m) => m instanceof BatchNorm2d);
  const saved = bns.map((bn) => bn.opts.momentum);
  const loader = new PatchLoader(items, {
    batchSize: opts.batchSize,
    size: opts.size,
    seed: opts.seed,
    balance: true,
    // A last batch of one patch has no variance to average.
    dropLast: items.length > opts.batchSize,
  });
  model.train();
  model.setAdl(false);
  let k = 0;
  try {
    for await (const b of loader.batches(opts.epoch)) {
      k++;
      for (const bn of bns) bn.opts.momentum = 1 / k;
      tidy(() => noGrad(() => model.forward(b.images)));
      b.images.dispose();
    }
  } finally {
    bns.forEach((bn, i) => bn.opts.momentum = saved[i]);
    model.setAdl(opts.adl);
    model.eval();
    trimPool();
  }
  return k;
}
