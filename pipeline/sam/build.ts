/**
 * The run's SAM: its config, the base model (the pretrained checkpoint or a seeded
 * initialisation), which weights a SAM stage trains, and where each stage's weights are stored.
 */
import { parseSamConfig, SAM_CONFIGS, type SamConfig } from "../../model/sam/configs.ts";
import { loadSam } from "../../model/sam/checkpoint.ts";
import { Sam } from "../../model/sam/sam.ts";
import type { PipelineConfig } from "../config.ts";
import { loadTrainState } from "../train_state.ts";

/** The SAM config named (vit_b, vit_l, vit_h) or given as an object by `sam.model`. */
export function samConfigOf(cfg: PipelineConfig): SamConfig {
  const m = cfg.sam.model;
  if (typeof m === "string") {
    const c = SAM_CONFIGS[m];
    if (!c) {
      throw new Error(`sam.model: unknown SAM config "${m}" (vit_b, vit_l, vit_h or an object)`);
    }
    return c;
  }
  return parseSamConfig(m, "sam.model");
}

/** The base SAM: the pretrained checkpoint, or a seeded initialisation. */
export async function buildSam(cfg: PipelineConfig): Promise<Sam> {
  const sc = samConfigOf(cfg);
  if (cfg.sam.checkpoint) return await loadSam(cfg.sam.checkpoint, sc, { seed: cfg.seed });
  return new Sam(sc, cfg.seed);
}

/** Keys a SAM stage trains and checkpoints. */
export function trainedKeys(cfg: PipelineConfig): (k: string) => boolean {
  return cfg.sam.trainEncoder ? () => true : (k) => k.startsWith("mask_decoder.");
}

/** Keys a SAM stage checkpoint leaves out: the untrained base weights {@link buildSam} loads. */
export function untrainedKeys(cfg: PipelineConfig): (k: string) => boolean {
  const trained = trainedKeys(cfg);
  return (k) => !trained(k);
}

/** Selected weights of a SAM stage (`preliminary`, `iter_<k>`), relative to the run folder. */
export const samBest = (tag: string) => `checkpoints/sam_${tag}_best.safetensors`;
/** Last epoch of a SAM stage with its optimiser state (for resuming). */
export const samLast = (tag: string) => `checkpoints/sam_${tag}_last.safetensors`;

/** A SAM with a stage's selected weights loaded over the base (eval mode). */
export async function loadStageSam(cfg: PipelineConfig, path: string): Promise<Sam> {
  const sam = await buildSam(cfg);
  await loadTrainState(path, sam, null, untrainedKeys(cfg));
  return sam.eval();
}

/** Tag of the stage whose weights are the final model. */
export function finalTag(iterations: number): string {
  return iterations > 0 ? `iter_${iterations}` : "preliminary";
}
