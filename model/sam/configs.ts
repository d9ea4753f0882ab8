/**
 * SAM configurations by name (vit_b / vit_l / vit_h, as build_sam.py) or from JSON with the
 * `encoder`, `prompt_encoder` and `mask_decoder` objects of ../shared/fixtures/sam-tiny/case.json.
 */

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

function need(
  obj: Record<string, unknown>,
  key: string,
  kind: "number" | "boolean" | "array",
  file: string,
  section: string,
): void {
  const v = obj[key];
  const ok = kind === "array"
    ? Array.isArray(v)
    : kind === "number"
    ? typeof v === "number"
    : typeof v === "boolean";
  if (!ok) {
    throw new Error(`${file}: field ${section}.${key} must be a ${kind}, got ${JSON.stringify(v)}`);
  }
}

/** Validates a parsed JSON config, naming the file and field at fault. */
export function parseSamConfig(json: unknown, file = "<config>"): SamConfig {
  const o = json as Record<string, Record<string, unknown>>;
  if (!o || typeof o !== "object") throw new Error(`${file}: expected a JSON object`);
  for (const s of ["encoder", "prompt_encoder", "mask_decoder"]) {
    if (!o[s] || typeof o[s] !== "object") throw new Error(`${file}: missing object "${s}"`);
  }
  const e = o.encoder;
  for (
    const k of [
      "img_size",
      "patch_size",
      "embed_dim",
      "depth",
      "num_heads",
      "window_size",
      "mlp_ratio",
      "out_chans",
    ]
  ) {
    need(e, k, "number", file, "encoder");
  }
  need(e, "global_attn_indexes", "array", file, "encoder");
  const p = o.prompt_encoder;
  need(p, "embed_dim", "number", file, "prompt_encoder");
  need(p, "image_embedding_size", "array", file, "prompt_encoder");
  need(p, "mask_in_chans", "number", file, "prompt_encoder");
  const m = o.mask_decoder;
  for (
    const k of [
      "transformer_dim",
      "depth",
      "mlp_dim",
      "num_heads",
      "attention_downsample_rate",
      "num_multimask_outputs",
      "iou_head_depth",
      "iou_head_hidden_dim",
    ]
  ) {
    need(m, k, "number", file, "mask_decoder");
  }
  return {
    encoder: {
      ...(e as unknown as EncoderConfig),
      use_rel_pos: (e.use_rel_pos as boolean | undefined) ?? true,
      layernorm_eps: (e.layernorm_eps as number | undefined) ?? 1e-6,
    },
    prompt_encoder: p as unknown as PromptEncoderConfig,
    mask_decoder: m as unknown as MaskDecoderConfig,
  };
}

/** A config by name (vit_b, vit_l, vit_h) or from a JSON file path. */
export async function loadSamConfig(nameOrPath: string): Promise<SamConfig> {
  if (SAM_CONFIGS[nameOrPath]) return SAM_CONFIGS[nameOrPath];
  let text: string;
  try {
    text = await Deno.readTextFile(nameOrPath);
  } catch {
    throw new Error(
      `--config ${nameOrPath}: not one of ${
        Object.keys(SAM_CONFIGS).join(", ")
      } and not a readable JSON file`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${nameOrPath}: invalid JSON (${(e as Error).message})`);
  }
  return parseSamConfig(json, nameOrPath);
}
