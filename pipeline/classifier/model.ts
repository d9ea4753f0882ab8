/** The run's patch classifier (ResNet-ADL) built from the config, and its checkpoint paths. */
import { RESNET50_ADL, ResNetAdl } from "../../model/resnet_adl.ts";
import type { PipelineConfig } from "../config.ts";
import { loadTrainState } from "../train_state.ts";

/** A fresh classifier with the run's architecture, ADL, FFT and checkpointing settings. */
export function buildClassifier(cfg: PipelineConfig): ResNetAdl {
  const c = cfg.classifier;
  const m = new ResNetAdl({
    ...RESNET50_ADL,
    layers: c.layers,
    width: c.width,
    highFreq: c.fft,
    seed: cfg.seed,
  });
  m.setAdl(c.adl);
  m.setCheckpointing(c.checkpoint);
  return m;
}

/** The selected (best validation loss) classifier, relative to the run folder. */
export const CLASSIFIER_BEST = "checkpoints/classifier_best.safetensors";
/** The last epoch's classifier with its optimiser state (for resuming). */
export const CLASSIFIER_LAST = "checkpoints/classifier_last.safetensors";

/** Loads the selected classifier of a run (eval mode). */
export async function loadClassifier(cfg: PipelineConfig, path: string): Promise<ResNetAdl> {
  const m = buildClassifier(cfg);
  await loadTrainState(path, m, null);
  return m.eval();
}
