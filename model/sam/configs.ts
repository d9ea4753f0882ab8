/**
 * SAM configurations by name (vit_b / vit_l / vit_h, as build_sam.py) or from JSON with the
 * `encoder`, `prompt_encoder` and `mask_decoder` objects of ../shared/fixtures/sam-tiny/case.json.
 */
import { InputError } from "../../engine/io/errors.ts";

export interface EncoderConfig {
  img_size: number;
  patch_size: number;
  embed_dim: number;
  depth: number;
  num_heads: number;
  window_size: number;
  global_attn_indexes: number[];
  mlp_ratio: number;
  out_chans: number;
  use_rel_pos: boolean;
  layernorm_eps: number;
}
export interface PromptEncoderConfig {
  embed_dim: number;
  image_embedding_size: [number, number];
  mask_in_chans: number;
}
export interface MaskDecoderConfig {
  transformer_dim: number;
  depth: number;
  mlp_dim: number;
  num_heads: number;
  attention_downsample_rate: number;
  num_multimask_outputs: number;
  iou_head_depth: number;
  iou_head_hidden_dim: number;
}
export interface SamConfig {
  encoder: EncoderConfig;
  prompt_encoder: PromptEncoderConfig;
  mask_decoder: MaskDecoderConfig;
}

function standard(embed: number, depth: number, heads: number, global: number[]): SamConfig {
  return {
    encoder: {
      img_size: 1024,
      patch_size: 16,
      embed_dim: embed,
      depth,
      num_heads: heads,
      window_size: 14,
      global_attn_indexes: global,
      mlp_ratio: 4,
      out_chans: 256,
      use_rel_pos: true,
      layernorm_eps: 1e-6,
    },
    prompt_encoder: { embed_dim: 256, image_embedding_size: [64, 64], mask_in_chans: 16 },
    mask_decoder: {
      transformer_dim: 256,
      depth: 2,
      mlp_dim: 2048,
      num_heads: 8,
      attention_downsample_rate: 2,
      num_multimask_outputs: 3,
      iou_head_depth: 3,
      iou_head_hidden_dim: 256,
    },
  };
}

export const SAM_CONFIGS: Record<string, SamConfig> = {
  vit_b: standard(768, 12, 12, [2, 5, 8, 11]),
  vit_l: standard(1024, 24, 16, [5, 11, 17, 23]),
  vit_h: standard(1280, 32, 16, [7, 15, 23, 31]),
};

/** A field that fails its check: names the file, the field and what was expected. */
function bad(file: string, field: string, expected: string, got: unknown): never {
  throw new InputError(`${file}: field ${field}: expected ${expected}, got ${show(got)}`, {
    file,
    field,
  });
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 60)}...` : s;
}

/**
 * Largest sizes accepted: ViT-H is 1024 px, 1280 wide, 32 deep; these leave room for larger
 * experiments while keeping a typo from building a model that cannot fit in any memory.
 */
const LIMITS = { img: 8192, dim: 16384, depth: 1024, heads: 1024, ratio: 64 };

/**
 * Checks every field of a SAM config: types, ranges and the divisibilities the modules rely on
 * (heads divide the width, patches tile the image, the decoder upscales by 4 and 8, ...), so a
 * bad value is an error naming the field instead of `Invalid typed array length` later.
 */
function validateSamConfig(c: SamConfig, file = "<config>"): SamConfig {
  const sec = (name: string, v: unknown): Record<string, unknown> => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      bad(file, name, "an object", v);
    }
    return v as Record<string, unknown>;
  };
  const int = (
    o: Record<string, unknown>,
    section: string,
    key: string,
    min: number,
    max: number,
  ) => {
    const v = o[key];
    if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
      bad(file, `${section}.${key}`, `an integer in [${min}, ${max}]`, v);
    }
    return v as number;
  };
  const divides = (field: string, v: number, by: number, what: string) => {
    if (v % by !== 0) {
      bad(file, field, `a multiple of ${by} (${what})`, v);
    }
  };
  const e = sec("encoder", c?.encoder);
  const img = int(e, "encoder", "img_size", 1, LIMITS.img);
  const patch = int(e, "encoder", "patch_size", 1, img);
  divides("encoder.img_size", img, patch, "encoder.patch_size must tile the image");
  const heads = int(e, "encoder", "num_heads", 1, LIMITS.heads);
  const embed = int(e, "encoder", "embed_dim", 1, LIMITS.dim);
  divides("encoder.embed_dim", embed, heads, "encoder.num_heads must divide it");
  const depth = int(e, "encoder", "depth", 1, LIMITS.depth);
  const grid = img / patch;
  int(e, "encoder", "window_size", 0, grid);
  const g = e.global_attn_indexes;
  if (!Array.isArray(g)) bad(file, "encoder.global_attn_indexes", "an array of block indices", g);
  (g as unknown[]).forEach((x, i) => {
    if (!Number.isSafeInteger(x) || (x as number) < 0 || (x as number) >= depth) {
      bad(file, `encoder.global_attn_indexes[${i}]`, `a block index in [0, ${depth - 1}]`, x);
    }
  });
  const ratio = e.mlp_ratio;
  if (
    typeof ratio !== "number" || !(ratio > 0 && ratio <= LIMITS.ratio) ||
    !Number.isInteger(embed * ratio)
  ) {
    bad(
      file,
      "encoder.mlp_ratio",
      `a number in (0, ${LIMITS.ratio}] giving an integer width`,
      ratio,
    );
  }
  const outChans = int(e, "encoder", "out_chans", 1, LIMITS.dim);
  if (typeof e.use_rel_pos !== "boolean") {
    bad(file, "encoder.use_rel_pos", "a boolean", e.use_rel_pos);
  }
  const eps = e.layernorm_eps;
  if (typeof eps !== "number" || !(eps > 0 && eps < 1)) {
    bad(file, "encoder.layernorm_eps", "a number in (0, 1)", eps);
  }
  const p = sec("prompt_encoder", c?.prompt_encoder);
  const pDim = int(p, "prompt_encoder", "embed_dim", 2, LIMITS.dim);
  divides("prompt_encoder.embed_dim", pDim, 2, "half of it are sine, half cosine features");
  if (pDim !== outChans) {
    bad(file, "prompt_encoder.embed_dim", `encoder.out_chans (${outChans})`, pDim);
  }
  const ies = p.image_embedding_size;
  if (!Array.isArray(ies) || ies.length !== 2 || ies[0] !== grid || ies[1] !== grid) {
    bad(
      file,
      "prompt_encoder.image_embedding_size",
      `[${grid}, ${grid}] (img_size / patch_size)`,
      ies,
    );
  }
  const mc = int(p, "prompt_encoder", "mask_in_chans", 4, LIMITS.dim);
  divides("prompt_encoder.mask_in_chans", mc, 4, "the mask downscaler's first conv has a quarter");
  const m = sec("mask_decoder", c?.mask_decoder);
  const td = int(m, "mask_decoder", "transformer_dim", 8, LIMITS.dim);
  if (td !== pDim) {
    bad(file, "mask_decoder.transformer_dim", `prompt_encoder.embed_dim (${pDim})`, td);
  }
  divides(
    "mask_decoder.transformer_dim",
    td,
    8,
    "the output upscaling has a quarter and an eighth",
  );
  const mh = int(m, "mask_decoder", "num_heads", 1, LIMITS.heads);
  divides("mask_decoder.transformer_dim", td, mh, "mask_decoder.num_heads must divide it");
  const rate = int(m, "mask_decoder", "attention_downsample_rate", 1, td);
  if (td % rate !== 0 || (td / rate) % mh !== 0) {
    bad(
      file,
      "mask_decoder.attention_downsample_rate",
      `a divisor of transformer_dim (${td}) leaving a multiple of num_heads (${mh})`,
      rate,
    );
  }
  int(m, "mask_decoder", "depth", 1, LIMITS.depth);
  int(m, "mask_decoder", "mlp_dim", 1, LIMITS.dim * LIMITS.ratio);
  int(m, "mask_decoder", "num_multimask_outputs", 1, 64);
  int(m, "mask_decoder", "iou_head_depth", 1, LIMITS.depth);
  int(m, "mask_decoder", "iou_head_hidden_dim", 1, LIMITS.dim);
  return c;
}

/** Validates a parsed JSON config, naming the file and field at fault. */
export function parseSamConfig(json: unknown, file = "<config>"): SamConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new InputError(`${file}: expected a JSON object`, { file });
  }
  const o = json as Record<string, Record<string, unknown> | undefined>;
  for (const s of ["encoder", "prompt_encoder", "mask_decoder"]) {
    const v = o[s];
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new InputError(`${file}: missing object "${s}"`, { file, field: s });
    }
  }
  const e = o.encoder!;
  return validateSamConfig({
    encoder: {
      ...(e as unknown as EncoderConfig),
      use_rel_pos: (e.use_rel_pos as boolean | undefined) ?? true,
      layernorm_eps: (e.layernorm_eps as number | undefined) ?? 1e-6,
    },
    prompt_encoder: o.prompt_encoder as unknown as PromptEncoderConfig,
    mask_decoder: o.mask_decoder as unknown as MaskDecoderConfig,
  }, file);
}

/** A config by name (vit_b, vit_l, vit_h) or from a JSON file path. */
export async function loadSamConfig(nameOrPath: string): Promise<SamConfig> {
  if (Object.hasOwn(SAM_CONFIGS, nameOrPath)) return SAM_CONFIGS[nameOrPath];
  let text: string;
  try {
    text = await Deno.readTextFile(nameOrPath);
  } catch {
    throw new InputError(
      `--config ${nameOrPath}: not one of ${
        Object.keys(SAM_CONFIGS).join(", ")
      } and not a readable JSON file`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${nameOrPath}: invalid JSON (${(e as Error).message})`);
  }
  return parseSamConfig(json, nameOrPath);
}
