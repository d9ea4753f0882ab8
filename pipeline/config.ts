/**
 * The EP-SAM pipeline's configuration: a profile (`tiny`, `default`, `paper`), then a JSON config
 * file (`--config`), then flags — each layer overrides the one before. Every value can be set
 * from the file or with `--set path.to.key=value`; the common ones have their own flags.
 * Unknown keys and values of the wrong type are errors that name the key.
 */
import { parseSamConfig, SAM_CONFIGS, type SamConfig } from "../model/sam/configs.ts";
import { InputError } from "../engine/io/errors.ts";
import { absentKeys, type AddedKey, oldValues } from "./config_compat.ts";

export type ProfileName = "tiny" | "default" | "paper";

export interface CamSettings {
  /** Percentile of non-zero CAM values used as threshold. */
  percentile: number;
  /** Side of the square opening. */
  openKernel: number;
  openAfterResize: boolean;
}

export interface PipelineConfig {
  profile: ProfileName;
  seed: number;
  data: {
    /** A prepared dataset (`<split>/image/<id>_<label>.png`); null: synthetic slides in `<run>/data`. */
    dir: string | null;
    /** Synthetic slides made on first use when `dir` is null. */
    synthetic: { count: number; size: number; patch: number };
    /** Keep at most this many negatives per positive in train/val (0: keep all). */
    negativesPerPositive: number;
  };
  /** Side the patches are resized to for the classifier and the masks (SAM resizes on its own). */
  patchSize: number;
  classifier: {
    layers: [number, number, number, number];
    width: number;
    epochs: number;
    batchSize: number;
    lr: number;
    weightDecay: number;
    /** StepLR step in epochs (0: epochs/5). */
    stepSize: number;
    gamma: number;
    /** Early-stopping patience in epochs (0: epochs/2). */
    patience: number;
    adl: boolean;
    fft: boolean;
    /** Average the CAM over the four rotations (false: the "no rotation" ablation). */
    rotations: boolean;
    augment: boolean;
    /**
     * Activation checkpointing of the stem and bottlenecks: one more forward per step for most of
     * the activation memory (the paper profile's 512², batch 16 step; see BENCHMARKS.md).
     */
    checkpoint: boolean;
    /**
     * Recalibrate BatchNorm before each validation: running statistics recomputed on clean
     * training patches with the epoch's weights (pipeline/classifier/precise_bn.ts), so model
     * selection, CAMs and inference use statistics of the weights they run. Not in the reference;
     * on in the short profiles, whose few dozen steps leave the running averages far from them.
     */
    preciseBn: boolean;
    cam: CamSettings;
  };
  sam: {
    /** "vit_b" / "vit_l" / "vit_h" or a full config object. */
    model: string | SamConfig;
    checkpoint: string | null;
    /** Train the image encoder too (the default when there is no checkpoint). */
    trainEncoder: boolean;
    epochs: number;
    batchSize: number;
    lr: number;
    weightDecay: number;
    /** Early-stopping patience (label-free validation loss). */
    patience: number;
    /** Prompt points per patch. */
    points: number;
    /** Start each re-training iteration from the previous model (false: from the base weights, as the reference). */
    warmStart: boolean;
    /**
     * Learning-rate factor for warm-started iterations: they fine-tune a model already fitted to
     * similar masks, and at the from-scratch rate the first steps undo it.
     */
    warmStartLrScale: number;
    augment: boolean;
  };
  iterations: number;
  idsThreshold: number;
}

/** A small SAM that trains from scratch here: `img`-px input, `patch`-px patches. */
export function smallSam(
  img: number,
  embed: number,
  depth: number,
  dim: number,
  patch = 8,
): SamConfig {
  return {
    encoder: {
      img_size: img,
      patch_size: patch,
      embed_dim: embed,
      depth,
      num_heads: 2,
      window_size: 4,
      global_attn_indexes: [depth - 1],
      mlp_ratio: 4,
      out_chans: dim,
      use_rel_pos: true,
      layernorm_eps: 1e-6,
    },
    prompt_encoder: {
      embed_dim: dim,
      image_embedding_size: [img / patch, img / patch],
      mask_in_chans: 4,
    },
    mask_decoder: {
      transformer_dim: dim,
      depth: 2,
      mlp_dim: 2 * dim,
      num_heads: 2,
      attention_downsample_rate: 2,
      num_multimask_outputs: 3,
      iou_head_depth: 3,
      iou_head_hidden_dim: dim,
    },
  };
}

/**
 * The classifier settings every profile shares: EP-SAM's method switches (ADL, the FFT channel,
 * rotated CAMs, augmentation) and its schedule (StepLR step and patience derived from the epochs,
 * gamma 0.9). Spread where these keys stand, so that config.json keeps its key order.
 */
const CLASSIFIER_METHOD = {
  stepSize: 0,
  gamma: 0.9,
  patience: 0,
  adl: true,
  fft: true,
  rotations: true,
  augment: true,
} as const;

const TINY: PipelineConfig = {
  profile: "tiny",
  seed: 7,
  data: { dir: null, synthetic: { count: 4, size: 2048, patch: 128 }, negativesPerPositive: 2 },
  patchSize: 64,
  classifier: {
    layers: [1, 1, 1, 1],
    width: 16,
    epochs: 8,
    batchSize: 16,
    lr: 1e-3,
    weightDecay: 1e-4,
    ...CLASSIFIER_METHOD,
    checkpoint: false,
    preciseBn: true,
    // Camelyon17's percentile: on 4×4 CAMs of 64-px patches the Camelyon16 one (10) keeps ~85 %
    // of every patch.
    cam: { percentile: 30, openKernel: 3, openAfterResize: true },
  },
  sam: {
    // 4-px patches (16×16 embeddings): with 8-px ones the final SAM stayed at the CAM's Dice.
    // Measured 2026-11-26 on llvmpipe: final SAM 0.860 vs CAM 0.827 (default conv routing),
    // 0.866 vs 0.864 (ENGINE_CONV=texture), 0.872 vs 0.842 (ENGINE_CONV=kernel): the final SAM
    // is steady, the classifier's CAM moves with the summation order. With classifier.preciseBn
    // (2026-12-03) the CAM no longer does: CAM 0.811 → final 0.852 (Winograd on), 0.811 → 0.829
    // (off), 0.787 → 0.842 (ENGINE_CONV=texture); BENCHMARKS.md "Winograd", seventh pass.
    model: smallSam(64, 32, 2, 32, 4),
    checkpoint: null,
    trainEncoder: true,
    epochs: 36,
    batchSize: 4,
    lr: 8e-4,
    weightDecay: 1e-2,
    patience: 12,
    points: 50,
    warmStart: true,
    warmStartLrScale: 0.25,
    augment: true,
  },
  iterations: 1,
  idsThreshold: 0.9,
};

const DEFAULT: PipelineConfig = {
  ...structuredClone(TINY),
  profile: "default",
  data: { dir: null, synthetic: { count: 6, size: 3072, patch: 128 }, negativesPerPositive: 2 },
  // Sized for about 10 minutes on a 2-core machine's software adapter. Measured 2026-11-26 on
  // llvmpipe: 7:31 in all, final SAM Dice 0.812 vs CAM 0.784 on the test positives (2026-11-25:
  // 12 classifier + 30 SAM epochs took 14:42 and ended 0.007 below the CAM).
  classifier: { ...structuredClone(TINY.classifier), width: 16, epochs: 8 },
  sam: { ...structuredClone(TINY.sam), model: smallSam(64, 48, 3, 32), epochs: 16, patience: 6 },
  iterations: 2,
};

const PAPER: PipelineConfig = {
  profile: "paper",
  seed: 21,
  data: { dir: null, synthetic: { count: 4, size: 4096, patch: 512 }, negativesPerPositive: 0 },
  patchSize: 512,
  classifier: {
    layers: [3, 4, 6, 3],
    width: 64,
    epochs: 50,
    batchSize: 16,
    lr: 1e-5,
    weightDecay: 1e-3,
    ...CLASSIFIER_METHOD,
    checkpoint: true,
    // The reference's schedule: 50 epochs of Camelyon's patches, thousands of steps.
    preciseBn: false,
    cam: { percentile: 10, openKernel: 21, openAfterResize: true },
  },
  sam: {
    model: "vit_b",
    checkpoint: null,
    trainEncoder: false,
    epochs: 20,
    batchSize: 4,
    lr: 5e-6,
    weightDecay: 1e-2,
    patience: 10,
    points: 50,
    warmStart: false,
    warmStartLrScale: 1,
    augment: true,
  },
  iterations: 3,
  idsThreshold: 0.9,
};

export const PROFILES: Record<ProfileName, PipelineConfig> = {
  tiny: TINY,
  default: DEFAULT,
  paper: PAPER,
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Keys that name an object's prototype machinery rather than a setting: assigning them would
 * replace a config object's prototype (`__proto__`) or read a function. Refused by name, so the
 * message says why instead of "must be a undefined".
 */
const PROTOTYPE_KEYS = new Set(["__proto__", "prototype", "constructor"]);

function refusePrototypeKey(where: string, key: string, part: string): void {
  if (PROTOTYPE_KEYS.has(part)) {
    throw new InputError(
      `${where}: key "${key}" is not allowed ("${part}" names JavaScript's prototype machinery, ` +
        `not a setting)`,
      { file: where, field: key },
    );
  }
}

/**
 * Deep-merges `over` into `base`, checking every key exists in `base` and has its type (numbers,
 * booleans, strings, arrays of the same length; `null` fields take a string; `sam.model` takes a
 * name or an object).
 */
export function mergeConfig(base: Obj, over: Obj, where: string, prefix = ""): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const key = prefix ? `${prefix}.${k}` : k;
    refusePrototypeKey(where, key, k);
    if (!Object.hasOwn(base, k)) {
      throw new InputError(
        `${where}: unknown key "${key}" (known: ${Object.keys(base).join(", ")})`,
        { file: where, field: key },
      );
    }
    const b = base[k];
    if (key === "sam.model") {
      if (typeof v !== "string" && !isObj(v)) {
        throw new InputError(`${where}: "${key}" must be a SAM config name or object`);
      }
      out[k] = v;
    } else if (isObj(b)) {
      if (!isObj(v)) throw new InputError(`${where}: "${key}" must be an object`);
      out[k] = mergeConfig(b, v, where, key);
    } else if (b === null || key === "data.dir" || key === "sam.checkpoint") {
      if (v !== null && typeof v !== "string") {
        throw new InputError(
          `${where}: "${key}" must be a string or null, got ${JSON.stringify(v)}`,
        );
      }
      out[k] = v;
    } else if (Array.isArray(b)) {
      if (!Array.isArray(v) || v.length !== b.length || v.some((x) => typeof x !== typeof b[0])) {
        throw new InputError(
          `${where}: "${key}" must be an array of ${b.length} ${typeof b[0]}s, got ${
            JSON.stringify(v)
          }`,
        );
      }
      out[k] = v;
    } else {
      if (typeof v !== typeof b) {
        throw new InputError(
          `${where}: "${key}" must be a ${typeof b}, got ${JSON.stringify(v)}`,
        );
      }
      out[k] = v;
    }
  }
  return out;
}

/** Parses the text of `--set key=value` against the type of the default. */
export function parseSetting(base: Obj, assignment: string): Obj {
  const eq = assignment.indexOf("=");
  if (eq < 1) throw new InputError(`--set ${assignment}: expected key.path=value`);
  const path = assignment.slice(0, eq).split(".");
  const text = assignment.slice(eq + 1);
  for (const p of path) {
    refusePrototypeKey("--set", path.join("."), p);
    if (!p) {
      throw new InputError(`--set ${assignment}: empty key in "${path.join(".")}"`, {
        file: "--set",
        field: path.join("."),
      });
    }
  }
  let at: unknown = base;
  for (const p of path) at = isObj(at) && Object.hasOwn(at, p) ? at[p] : undefined;
  let value: unknown;
  if (typeof at === "number") {
    value = Number(text);
    if (!Number.isFinite(value as number)) {
      throw new InputError(`--set ${assignment}: "${path.join(".")}" must be a number`);
    }
  } else if (typeof at === "boolean") {
    if (text !== "true" && text !== "false") {
      throw new InputError(`--set ${assignment}: "${path.join(".")}" must be true or false`);
    }
    value = text === "true";
  } else if (typeof at === "string" || at === null) {
    value = text === "null" ? null : text;
  } else {
    try {
      value = JSON.parse(text);
    } catch {
      throw new InputError(`--set ${assignment}: value must be JSON for "${path.join(".")}"`);
    }
  }
  const over: Obj = {};
  let cur = over;
  path.forEach((p, i) => {
    if (i === path.length - 1) cur[p] = value;
    else cur = (cur[p] = {}) as Obj;
  });
  return over;
}

/** Checks ranges that the type check cannot; errors start with `where` (the file, or "config"). */
function validateConfig(c: PipelineConfig, where = "config"): PipelineConfig {
  const posInt = (v: number, k: string, min = 1) => {
    if (!Number.isInteger(v) || v < min) {
      throw new InputError(`${where}: ${k} must be an integer >= ${min}, got ${v}`);
    }
  };
  posInt(c.patchSize, "patchSize", 16);
  posInt(c.classifier.epochs, "classifier.epochs");
  posInt(c.classifier.batchSize, "classifier.batchSize");
  posInt(c.classifier.width, "classifier.width");
  c.classifier.layers.forEach((n, i) => posInt(n, `classifier.layers[${i}]`));
  posInt(c.classifier.stepSize, "classifier.stepSize", 0);
  posInt(c.classifier.patience, "classifier.patience", 0);
  posInt(c.sam.epochs, "sam.epochs");
  posInt(c.sam.batchSize, "sam.batchSize");
  posInt(c.sam.points, "sam.points");
  posInt(c.sam.patience, "sam.patience", 0);
  posInt(c.iterations, "iterations", 0);
  posInt(c.data.negativesPerPositive, "data.negativesPerPositive", 0);
  posInt(c.seed, "seed", 0);
  if (!(c.idsThreshold >= 0 && c.idsThreshold <= 1)) {
    throw new InputError(`${where}: idsThreshold must be in [0, 1], got ${c.idsThreshold}`);
  }
  for (const [k, v] of [["classifier.lr", c.classifier.lr], ["sam.lr", c.sam.lr]] as const) {
    if (!(v > 0)) throw new InputError(`${where}: ${k} must be positive, got ${v}`);
  }
  if (c.classifier.cam.openKernel < 1 || !Number.isInteger(c.classifier.cam.openKernel)) {
    throw new InputError(`${where}: classifier.cam.openKernel must be a positive integer`);
  }
  // Upper bounds: what no experiment needs but a typo could ask for (terabytes of weights).
  const atMost = (v: number, k: string, max: number) => {
    if (v > max) {
      throw new InputError(`${where}: ${k} must be at most ${max}, got ${v}`, { field: k });
    }
  };
  atMost(c.patchSize, "patchSize", 8192);
  atMost(c.classifier.width, "classifier.width", 4096);
  c.classifier.layers.forEach((n, i) => atMost(n, `classifier.layers[${i}]`, 256));
  const m = c.sam.model;
  if (typeof m === "string") {
    if (!Object.hasOwn(SAM_CONFIGS, m)) {
      throw new InputError(
        `${where}: sam.model must be one of ${Object.keys(SAM_CONFIGS).join(", ")} or an object, ` +
          `got ${JSON.stringify(m)}`,
        { field: "sam.model" },
      );
    }
  } else parseSamConfig(m, `${where}: sam.model`);
  return c;
}

/** What the command line gave (all optional). */
export interface ConfigFlags {
  profile?: string;
  config?: string;
  data?: string;
  samCheckpoint?: string;
  samModel?: string;
  trainEncoder?: boolean;
  noAdl?: boolean;
  noFft?: boolean;
  noRotation?: boolean;
  idsThreshold?: string;
  iterations?: string;
  seed?: string;
  epochs?: string;
  samEpochs?: string;
  batchSize?: string;
  samBatchSize?: string;
  patchSize?: string;
  points?: string;
  dataset?: string;
  set?: string[];
}

function num(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InputError(`--${flag} must be a number, got "${v}"`);
  return n;
}

/** How a config is resolved beyond the flags. */
export interface ResolveOptions {
  /**
   * The run folder being resumed was made before these keys existed (pipeline/config_compat.ts):
   * their profile defaults are the values the code that made it had.
   */
  madeBefore?: readonly AddedKey[];
}

/** Profile → config file → flags, validated. */
export async function resolveConfig(
  f: ConfigFlags,
  opts: ResolveOptions = {},
): Promise<PipelineConfig> {
  const profile = (f.profile ?? "default") as ProfileName;
  if (!Object.hasOwn(PROFILES, profile)) {
    throw new InputError(
      `--profile must be one of ${Object.keys(PROFILES).join(", ")}, got "${profile}"`,
    );
  }
  let c = structuredClone(PROFILES[profile]) as unknown as Obj;
  if (opts.madeBefore?.length) c = mergeConfig(c, oldValues(opts.madeBefore), "run folder");
  if (f.config) {
    let json: unknown;
    try {
      json = JSON.parse(await Deno.readTextFile(f.config));
    } catch (e) {
      throw new InputError(`--config ${f.config}: ${(e as Error).message}`);
    }
    if (!isObj(json)) {
      throw new InputError(`--config ${f.config}: expected a JSON object`, { file: f.config });
    }
    const { profile: _p, ...rest } = json;
    c = mergeConfig(c, rest, f.config);
  }
  const over: Obj[] = [];
  const put = (path: string, v: unknown) => {
    if (v === undefined) return;
    over.push(parseSetting(c, `${path}=${typeof v === "string" ? v : JSON.stringify(v)}`));
  };
  if (f.data !== undefined) over.push({ data: { dir: f.data } });
  if (f.samCheckpoint !== undefined) over.push({ sam: { checkpoint: f.samCheckpoint } });
  if (f.samModel !== undefined) {
    let model: unknown = f.samModel;
    if (!/^vit_[blh]$/.test(f.samModel)) {
      try {
        model = JSON.parse(await Deno.readTextFile(f.samModel));
      } catch (e) {
        throw new InputError(
          `--sam-model ${f.samModel}: not vit_b/l/h nor a JSON file (${(e as Error).message})`,
        );
      }
    }
    over.push({ sam: { model } });
  }
  if (f.noAdl) over.push({ classifier: { adl: false } });
  if (f.noFft) over.push({ classifier: { fft: false } });
  if (f.noRotation) over.push({ classifier: { rotations: false } });
  put("idsThreshold", num(f.idsThreshold, "ids-threshold"));
  put("iterations", num(f.iterations, "iterations"));
  put("seed", num(f.seed, "seed"));
  put("classifier.epochs", num(f.epochs, "epochs"));
  put("sam.epochs", num(f.samEpochs, "sam-epochs"));
  put("classifier.batchSize", num(f.batchSize, "batch-size"));
  put("sam.batchSize", num(f.samBatchSize, "sam-batch-size"));
  put("patchSize", num(f.patchSize, "patch-size"));
  put("sam.points", num(f.points, "points"));
  if (f.dataset !== undefined) {
    if (f.dataset !== "camelyon16" && f.dataset !== "camelyon17") {
      throw new InputError(`--dataset must be camelyon16 or camelyon17, got "${f.dataset}"`);
    }
    const { camDefaults } = await import("../model/cam.ts");
    over.push({ classifier: { cam: camDefaults(f.dataset) } });
  }
  for (const s of f.set ?? []) over.push(parseSetting(c, s));
  for (const o of over) c = mergeConfig(c, o, "flags");
  const cfg = c as unknown as PipelineConfig;
  // No checkpoint: nothing pretrained to keep frozen, so the encoder trains unless told otherwise.
  if (f.trainEncoder !== undefined) cfg.sam.trainEncoder = f.trainEncoder;
  else if (cfg.sam.checkpoint === null) cfg.sam.trainEncoder = true;
  if (cfg.profile === "paper" && cfg.sam.checkpoint === null) {
    throw new InputError(
      "--profile paper needs --sam-checkpoint sam_vit_b_01ec64.pth (pretrained SAM weights)",
    );
  }
  if (cfg.profile === "paper" && cfg.data.dir === null) {
    throw new InputError("--profile paper needs --data <prepared dataset> (see deno task prepare)");
  }
  return validateConfig(cfg);
}

/** Largest run-folder config.json read (they are a few kilobytes). */
const MAX_RUN_CONFIG_BYTES = 16 * 2 ** 20;

/**
 * Reads the config.json that `train` wrote into a run folder, checking every field as a
 * `--config` file is checked (over its profile's defaults), so a damaged or hand-edited file is an
 * error naming the file and the field rather than a failure deep in `infer`.
 */
export async function readRunConfig(dir: string): Promise<PipelineConfig> {
  const file = `${dir}/config.json`;
  let json: unknown;
  try {
    const size = (await Deno.stat(file)).size;
    if (size > MAX_RUN_CONFIG_BYTES) throw new Error(`${size} bytes, more than a config holds`);
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    throw new InputError(`${dir}: not a run folder (${file}: ${(e as Error).message})`, { file });
  }
  if (!isObj(json)) {
    throw new InputError(`${file}: field (root): expected the run's config object`, { file });
  }
  const { profile, ...rest } = json;
  if (typeof profile !== "string" || !Object.hasOwn(PROFILES, profile)) {
    throw new InputError(
      `${file}: field profile: expected one of ${Object.keys(PROFILES).join(", ")}, got ${
        JSON.stringify(profile)
      }`,
      { file, field: "profile" },
    );
  }
  // Keys added after the run was made take the values it ran with, not today's defaults.
  const base = mergeConfig(
    structuredClone(PROFILES[profile as ProfileName]) as unknown as Obj,
    oldValues(absentKeys(json)),
    file,
  );
  return validateConfig(mergeConfig(base, rest, file) as unknown as PipelineConfig, file);
}

/** StepLR step and early-stopping patience as the reference derives them from the epochs. */
export function classifierSchedule(
  c: PipelineConfig["classifier"],
): { step: number; patience: number } {
  return {
    step: c.stepSize || Math.max(1, Math.floor(c.epochs / 5)),
    patience: c.patience || Math.max(1, Math.floor(c.epochs / 2)),
  };
}
