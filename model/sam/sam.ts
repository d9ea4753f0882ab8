/**
 * Segment Anything: image encoder + prompt encoder + mask decoder under the official state-dict
 * prefixes (`image_encoder.`, `prompt_encoder.`, `mask_decoder.`), and the predictor path
 * (embed once, prompt many times) EP-SAM uses.
 */
import { F, type Tensor } from "../../engine/mod.ts";
import { Module } from "../../engine/nn/module.ts";
import { ImageEncoderViT } from "./image_encoder.ts";
import { PromptEncoder, type Prompts } from "./prompt_encoder.ts";
import { MaskDecoder } from "./mask_decoder.ts";
import type { SamConfig } from "./configs.ts";

export const PIXEL_MEAN = [123.675, 116.28, 103.53];
export const PIXEL_STD = [58.395, 57.12, 57.375];

export class Sam extends Module {
  imageEncoder: ImageEncoderViT;
  promptEncoder: PromptEncoder;
  maskDecoder: MaskDecoder;

  constructor(readonly config: SamConfig, seed = 0) {
    super();
    this.imageEncoder = this.child("image_encoder", new ImageEncoderViT(config.encoder, seed));
    this.promptEncoder = this.child(
      "prompt_encoder",
      new PromptEncoder(config.prompt_encoder, config.encoder.img_size, seed),
    );
    this.maskDecoder = this.child("mask_decoder", new MaskDecoder(config.mask_decoder, seed));
  }

  get imgSize(): number {
    return this.config.encoder.img_size;
  }

  /** Normalised, padded input [B,3,S,S] → image embeddings [B,C,h,w]. */
  embed(input: Tensor): Tensor {
    return this.imageEncoder.forward(input);
  }

  /**
   * Low-resolution mask logits [B,K,4h,4w] and IoU predictions [B,K] from cached embeddings.
   * Prompt coordinates are in model-input pixels (after ResizeLongestSide).
   */
  decode(
    embeddings: Tensor,
    prompts: Prompts,
    multimask: boolean,
  ): { lowRes: Tensor; iou: Tensor; sparse: Tensor; dense: Tensor } {
    const { sparse, dense } = this.promptEncoder.forward(prompts);
    const pe = this.promptEncoder.densePe();
    const { masks, iou } = this.maskDecoder.forward(embeddings, pe, sparse, dense, multimask);
    return { lowRes: masks, iou, sparse, dense };
  }

  /**
   * Official post-processing: bilinear to the padded input size, crop to the resized image,
   * bilinear to the original size (logits; threshold at 0 for masks).
   */
  postprocess(lowRes: Tensor, inputHw: [number, number], originalHw: [number, number]): Tensor {
    const s = this.imgSize;
    const up = F.interpolateBilinear(lowRes, [s, s], { alignCorners: false });
    const crop = F.slice(F.slice(up, 2, 0, inputHw[0]), 3, 0, inputHw[1]);
    return F.interpolateBilinear(crop, originalHw, { alignCorners: false });
  }
}
