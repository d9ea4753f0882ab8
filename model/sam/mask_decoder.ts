/**
 * SAM's mask decoder: output tokens (IoU + mask tokens) prepended to the prompt tokens, the
 * two-way transformer, upscaling by two 2×2 stride-2 transposed convolutions (LayerNorm2d and GELU
 * between), per-token hypernetwork MLPs giving mask weights, and the IoU head. Multimask output
 * returns masks 1..3, otherwise mask 0, as the official code.
 */
import { F, type Tensor } from "../../engine/mod.ts";
import { Module } from "../../engine/nn/module.ts";
import { ModuleList } from "../../engine/nn/container.ts";
import { ConvTranspose2d } from "../../engine/nn/conv.ts";
import { LayerNorm2d } from "../../engine/nn/norm.ts";
import { Linear } from "../../engine/nn/linear.ts";
import { HostRng } from "../../engine/nn/init.ts";
import { Embedding } from "./prompt_encoder.ts";
import { TwoWayTransformer } from "./two_way_transformer.ts";
import type { MaskDecoderConfig } from "./configs.ts";

class Mlp extends Module {
  layers: Linear[] = [];
  constructor(input: number, hidden: number, output: number, depth: number, rng: HostRng) {
    super();
    const ls = this.child("layers", new ModuleList());
    for (let i = 0; i < depth; i++) {
      const a = i === 0 ? input : hidden, b = i === depth - 1 ? output : hidden;
      this.layers.push(ls.add(new Linear(a, b, { rng })));
    }
  }
  forward(x: Tensor): Tensor {
    let y = x;
    this.layers.forEach((l, i) => {
      y = l.forward(y);
      if (i < this.layers.length - 1) y = F.relu(y);
    });
    return y;
  }
}

class OutputUpscaling extends Module {
  constructor(
    readonly t0: ConvTranspose2d,
    readonly n1: LayerNorm2d,
    readonly t3: ConvTranspose2d,
  ) {
    super();
    this.child("0", t0);
    this.child("1", n1);
    this.child("3", t3);
  }
  forward(x: Tensor): Tensor {
    return F.gelu(this.t3.forward(F.gelu(this.n1.forward(this.t0.forward(x)))));
  }
}

export class MaskDecoder extends Module {
  transformer: TwoWayTransformer;
  iouToken: Embedding;
  maskTokens: Embedding;
  outputUpscaling: OutputUpscaling;
  hyperMlps: Mlp[] = [];
  iouHead: Mlp;
  readonly numMaskTokens: number;

  constructor(readonly cfg: MaskDecoderConfig, seed = 0) {
    super();
    const rng = new HostRng(seed + 29);
    const d = cfg.transformer_dim;
    this.numMaskTokens = cfg.num_multimask_outputs + 1;
    this.transformer = this.child(
      "transformer",
      new TwoWayTransformer(
        cfg.depth,
        d,
        cfg.num_heads,
        cfg.mlp_dim,
        cfg.attention_downsample_rate,
        rng,
      ),
    );
    this.iouToken = this.child("iou_token", new Embedding(1, d, rng));
    this.maskTokens = this.child("mask_tokens", new Embedding(this.numMaskTokens, d, rng));
    this.outputUpscaling = this.child(
      "output_upscaling",
      new OutputUpscaling(
        new ConvTranspose2d(d, d / 4, 2, { stride: 2, rng }),
        new LayerNorm2d(d / 4),
        new ConvTranspose2d(d / 4, d / 8, 2, { stride: 2, rng }),
      ),
    );
    const hm = this.child("output_hypernetworks_mlps", new ModuleList());
    for (let i = 0; i < this.numMaskTokens; i++) {
      this.hyperMlps.push(hm.add(new Mlp(d, d, d / 8, 3, rng)));
    }
    this.iouHead = this.child(
      "iou_prediction_head",
      new Mlp(d, cfg.iou_head_hidden_dim, this.numMaskTokens, cfg.iou_head_depth, rng),
    );
  }

  /**
   * image [Bi,C,h,w] (Bi = 1 or B), pe [1,C,h,w], sparse [B,N,C], dense [B,C,h,w] →
   * masks [B,K,4h,4w] logits and iou [B,K] (K = 3 with multimask, else 1).
   */
  forward(
    image: Tensor,
    pe: Tensor,
    sparse: Tensor,
    dense: Tensor,
    multimask: boolean,
  ): { masks: Tensor; iou: Tensor } {
    const b = sparse.shape[0];
    const d = this.cfg.transformer_dim;
    const out = F.concat([this.iouToken.weight, this.maskTokens.weight], 0);
    const tokens = F.concat([F.expand(F.unsqueeze(out, 0), [b, out.shape[0], d]), sparse], 1);
    const [, c, h, w] = image.shape;
    const img = image.shape[0] === b ? image : F.expand(image, [b, c, h, w]);
    // The sum is formed channels-last, the layout of the transformer's keys: no copy after it.
    const nhwc = (t: Tensor) => F.permute(t, [0, 2, 3, 1]);
    const src = F.permute(F.add(nhwc(img), nhwc(dense)), [0, 3, 1, 2]);
    const pos = F.expand(pe, [b, c, h, w]);
    const [hs, keys] = this.transformer.forward(src, pos, tokens);
    const iouOut = F.select(hs, 1, 0);
    const srcImg = F.reshape(F.transpose(keys, 1, 2), [b, c, h, w]);
    const up = this.outputUpscaling.forward(srcImg);
    const hyper = F.stack(this.hyperMlps.map((m, i) => m.forward(F.select(hs, 1, 1 + i))), 1);
    const [, uc, uh, uw] = up.shape;
    const masks = F.reshape(F.matmul(hyper, F.reshape(up, [b, uc, uh * uw])), [
      b,
      this.numMaskTokens,
      uh,
      uw,
    ]);
    const iou = this.iouHead.forward(iouOut);
    return multimask
      ? { masks: F.slice(masks, 1, 1), iou: F.slice(iou, 1, 1) }
      : { masks: F.slice(masks, 1, 0, 1), iou: F.slice(iou, 1, 0, 1) };
  }
}
