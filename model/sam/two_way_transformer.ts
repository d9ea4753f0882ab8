/**
 * The mask decoder's two-way transformer: token self-attention, token→image and image→token
 * cross-attention (internal width divided by the downsample rate), a ReLU MLP on the tokens,
 * LayerNorms after each, and a final token→image attention.
 */
import { F, type Tensor } from "../../engine/mod.ts";
import { Module } from "../../engine/nn/module.ts";
import { ModuleList } from "../../engine/nn/container.ts";
import { LayerNorm } from "../../engine/nn/norm.ts";
import { Linear } from "../../engine/nn/linear.ts";
import type { HostRng } from "../../engine/nn/init.ts";
import { attention } from "./attention.ts";
import { MlpBlock } from "./image_encoder.ts";

class DecoderAttention extends Module {
  qProj: Linear;
  kProj: Linear;
  vProj: Linear;
  outProj: Linear;
  readonly internal: number;
  constructor(dim: number, readonly heads: number, downsample: number, rng: HostRng) {
    super();
    this.internal = dim / downsample;
    if (this.internal % heads) {
      throw new Error(`DecoderAttention: ${heads} heads do not divide ${this.internal}`);
    }
    this.qProj = this.child("q_proj", new Linear(dim, this.internal, { rng }));
    this.kProj = this.child("k_proj", new Linear(dim, this.internal, { rng }));
    this.vProj = this.child("v_proj", new Linear(dim, this.internal, { rng }));
    this.outProj = this.child("out_proj", new Linear(this.internal, dim, { rng }));
  }
  /** [B, N, internal] → [B, heads, N, hd], a view (the attention reads it in place). */
  private split(x: Tensor): Tensor {
    const [b, n] = x.shape;
    const hd = this.internal / this.heads;
    return F.transpose(F.reshape(x, [b, n, this.heads, hd]), 1, 2);
  }
  forward(q: Tensor, k: Tensor, v: Tensor): Tensor {
    const [b, nq] = q.shape;
    const hd = this.internal / this.heads;
    let qp = this.qProj.forward(q), kp = this.kProj.forward(k);
    // The scale goes on the smaller projection while it is dense (a flat pass, not a strided one
    // over a head view).
    if (qp.size <= kp.size) qp = F.mul(qp, 1 / Math.sqrt(hd));
    else kp = F.mul(kp, 1 / Math.sqrt(hd));
    const o = attention(this.split(qp), this.split(kp), this.split(this.vProj.forward(v)), 1);
    const merged = F.reshape(F.transpose(o, 1, 2), [b, nq, this.internal]);
    return this.outProj.forward(merged);
  }
}

class TwoWayAttentionBlock extends Module {
  selfAttn: DecoderAttention;
  norm1: LayerNorm;
  crossT2I: DecoderAttention;
  norm2: LayerNorm;
  mlp: MlpBlock;
  norm3: LayerNorm;
  norm4: LayerNorm;
  crossI2T: DecoderAttention;
  constructor(
    dim: number,
    heads: number,
    mlpDim: number,
    downsample: number,
    readonly skipFirstPe: boolean,
    rng: HostRng,
  ) {
    super();
    this.selfAttn = this.child("self_attn", new DecoderAttention(dim, heads, 1, rng));
    this.norm1 = this.child("norm1", new LayerNorm(dim));
    this.crossT2I = this.child(
      "cross_attn_token_to_image",
      new DecoderAttention(dim, heads, downsample, rng),
    );
    this.norm2 = this.child("norm2", new LayerNorm(dim));
    this.mlp = this.child("mlp", new MlpBlock(dim, mlpDim, "relu", rng));
    this.norm3 = this.child("norm3", new LayerNorm(dim));
    this.norm4 = this.child("norm4", new LayerNorm(dim));
    this.crossI2T = this.child(
      "cross_attn_image_to_token",
      new DecoderAttention(dim, heads, downsample, rng),
    );
  }
  forward(queries: Tensor, keys: Tensor, queryPe: Tensor, keyPe: Tensor): [Tensor, Tensor] {
    let qs: Tensor;
    if (this.skipFirstPe) qs = this.selfAttn.forward(queries, queries, queries);
    else {
      const q = F.add(queries, queryPe);
      qs = F.add(queries, this.selfAttn.forward(q, q, queries));
    }
    qs = this.norm1.forward(qs);
    let q = F.add(qs, queryPe);
    let k = F.add(keys, keyPe);
    qs = this.norm2.forward(F.add(qs, this.crossT2I.forward(q, k, keys)));
    qs = this.norm3.forward(F.add(qs, this.mlp.forward(qs)));
    q = F.add(qs, queryPe);
    k = F.add(keys, keyPe);
    const ks = this.norm4.forward(F.add(keys, this.crossI2T.forward(k, q, qs)));
    return [qs, ks];
  }
}

export class TwoWayTransformer extends Module {
  layers: TwoWayAttentionBlock[] = [];
  finalAttn: DecoderAttention;
  normFinal: LayerNorm;
  constructor(
    depth: number,
    dim: number,
    heads: number,
    mlpDim: number,
    downsample: number,
    rng: HostRng,
  ) {
    super();
    const layers = this.child("layers", new ModuleList());
    for (let i = 0; i < depth; i++) {
      this.layers.push(
        layers.add(new TwoWayAttentionBlock(dim, heads, mlpDim, downsample, i === 0, rng)),
      );
    }
    this.finalAttn = this.child(
      "final_attn_token_to_image",
      new DecoderAttention(dim, heads, downsample, rng),
    );
    this.normFinal = this.child("norm_final_attn", new LayerNorm(dim));
  }
  /** image [B,C,h,w], pe [B,C,h,w], tokens [B,T,C] → (tokens [B,T,C], image tokens [B,hw,C]). */
  forward(image: Tensor, pe: Tensor, tokens: Tensor): [Tensor, Tensor] {
    const [b, c, h, w] = image.shape;
    // Both dense channels-last [B, h·w, C] (every later add with them is then a flat one): a view
    // where the caller formed them channels-last (the mask decoder's sum, the dense PE), else a copy.
    const tokensOf = (t: Tensor) => F.dense(F.reshape(F.permute(t, [0, 2, 3, 1]), [b, h * w, c]));
    const keysIn = tokensOf(image);
    const keyPe = tokensOf(pe);
    let queries = tokens, keys = keysIn;
    for (const l of this.layers) [queries, keys] = l.forward(queries, keys, tokens, keyPe);
    const q = F.add(queries, tokens);
    const k = F.add(keys, keyPe);
    queries = this.normFinal.forward(F.add(queries, this.finalAttn.forward(q, k, keys)));
    return [queries, keys];
  }
}
