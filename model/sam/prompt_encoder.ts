/**
 * SAM's prompt encoder: random-Fourier positional encoding of points and box corners (shifted by
 * 0.5 to pixel centres), learned point-type embeddings, the padding point when no box is given,
 * mask-input downscaling, the no-mask embedding and the dense positional encoding.
 */
import { F, type Tensor, tensor } from "../../engine/mod.ts";
import { Module } from "../../engine/nn/module.ts";
import { ModuleList } from "../../engine/nn/container.ts";
import { Conv2d } from "../../engine/nn/conv.ts";
import { LayerNorm2d } from "../../engine/nn/norm.ts";
import { HostRng, normal } from "../../engine/nn/init.ts";
import type { PromptEncoderConfig } from "./configs.ts";

/** A learned embedding table (torch.nn.Embedding: `weight` [n, dim]). */
export class Embedding extends Module {
  weight: Tensor;
  constructor(n: number, dim: number, rng: HostRng) {
    super();
    this.weight = this.param("weight", normal([n, dim], 0, 1, rng));
  }
}

class PositionEmbeddingRandom extends Module {
  gaussian: Tensor;
  constructor(numPosFeats: number, rng: HostRng) {
    super();
    this.gaussian = this.buffer(
      "positional_encoding_gaussian_matrix",
      normal([2, numPosFeats], 0, 1, rng),
    );
  }
  /** coords in [0,1], [..., 2] → [..., 2F] = [sin, cos](2π(2c−1)·G). */
  encode(coords: Tensor): Tensor {
    const c = F.affine(coords, 2, -1);
    const p = F.mul(F.matmul(c, this.gaussian), 2 * Math.PI);
    return F.concat([F.sin(p), F.cos(p)], -1);
  }
  /** Dense encoding of an h×w grid, [2F, h, w]. */
  dense(h: number, w: number): Tensor {
    const xy = new Float32Array(h * w * 2);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        xy[(y * w + x) * 2] = (x + 0.5) / w;
        xy[(y * w + x) * 2 + 1] = (y + 0.5) / h;
      }
    }
    return F.permute(this.encode(tensor(xy, [h, w, 2])), [2, 0, 1]);
  }
}

class MaskDownscaling extends Module {
  constructor(
    readonly c0: Conv2d,
    readonly n1: LayerNorm2d,
    readonly c3: Conv2d,
    readonly n4: LayerNorm2d,
    readonly c6: Conv2d,
  ) {
    super();
    this.child("0", c0);
    this.child("1", n1);
    this.child("3", c3);
    this.child("4", n4);
    this.child("6", c6);
  }
  forward(m: Tensor): Tensor {
    const a = F.gelu(this.n1.forward(this.c0.forward(m)));
    const b = F.gelu(this.n4.forward(this.c3.forward(a)));
    return this.c6.forward(b);
  }
}

export interface Prompts {
  /** Points in model-input pixels (after ResizeLongestSide), [B, N, 2] as (x, y). */
  points?: { coords: Float32Array; labels: Float32Array; n: number };
  /** Boxes in model-input pixels, [B, 4] (x0, y0, x1, y1). */
  boxes?: Float32Array;
  /** Low-res mask logits [B, 1, 4h, 4w]. */
  masks?: Tensor;
  batch?: number;
}

export class PromptEncoder extends Module {
  peLayer: PositionEmbeddingRandom;
  pointEmbeddings: Embedding[] = [];
  notAPointEmbed: Embedding;
  maskDownscaling: MaskDownscaling;
  noMaskEmbed: Embedding;
  readonly inputImageSize: [number, number];

  constructor(readonly cfg: PromptEncoderConfig, imgSize: number, seed = 0) {
    super();
    const rng = new HostRng(seed + 17);
    const d = cfg.embed_dim, mc = cfg.mask_in_chans;
    this.inputImageSize = [imgSize, imgSize];
    this.peLayer = this.child("pe_layer", new PositionEmbeddingRandom(d / 2, rng));
    const pts = this.child("point_embeddings", new ModuleList());
    for (let i = 0; i < 4; i++) this.pointEmbeddings.push(pts.add(new Embedding(1, d, rng)));
    this.notAPointEmbed = this.child("not_a_point_embed", new Embedding(1, d, rng));
    this.maskDownscaling = this.child(
      "mask_downscaling",
      new MaskDownscaling(
        new Conv2d(1, mc / 4, 2, { stride: 2, rng }),
        new LayerNorm2d(mc / 4),
        new Conv2d(mc / 4, mc, 2, { stride: 2, rng }),
        new LayerNorm2d(mc),
        new Conv2d(mc, d, 1, { rng }),
      ),
    );
    this.noMaskEmbed = this.child("no_mask_embed", new Embedding(1, d, rng));
  }

  /** Dense positional encoding [1, C, h, w]. */
  densePe(): Tensor {
    const [h, w] = this.cfg.image_embedding_size;
    return F.unsqueeze(this.peLayer.dense(h, w), 0);
  }

  private encodeCoords(xy: Float32Array, b: number, n: number): Tensor {
    const [ih, iw] = this.inputImageSize;
    const norm = new Float32Array(xy.length);
    for (let i = 0; i < xy.length; i += 2) {
      norm[i] = (xy[i] + 0.5) / iw;
      norm[i + 1] = (xy[i + 1] + 0.5) / ih;
    }
    return this.peLayer.encode(tensor(norm, [b, n, 2]));
  }

  /** Sparse [B, N', C] and dense [B, C, h, w] embeddings. */
  forward(p: Prompts): { sparse: Tensor; dense: Tensor } {
    const d = this.cfg.embed_dim;
    const b = p.batch ??
      (p.points
        ? p.points.labels.length / p.points.n
        : p.boxes
        ? p.boxes.length / 4
        : p.masks
        ? p.masks.shape[0]
        : 1);
    const parts: Tensor[] = [];
    if (p.points) {
      const n0 = p.points.n, pad = !p.boxes;
      const n = n0 + (pad ? 1 : 0);
      const coords = new Float32Array(b * n * 2);
      const labels = new Float32Array(b * n);
      for (let i = 0; i < b; i++) {
        for (let j = 0; j < n; j++) {
          const src = i * n0 + j;
          // The padding point sits at (0,0) − 0.5 so that the shift lands it on (0,0).
          coords[(i * n + j) * 2] = j < n0 ? p.points.coords[src * 2] : -0.5;
          coords[(i * n + j) * 2 + 1] = j < n0 ? p.points.coords[src * 2 + 1] : -0.5;
          labels[i * n + j] = j < n0 ? p.points.labels[src] : -1;
        }
      }
      const pe = this.encodeCoords(coords, b, n);
      const mask = (v: number) =>
        tensor(Float32Array.from(labels, (l) => (l === v ? 1 : 0)), [b, n, 1]);
      const keep = tensor(Float32Array.from(labels, (l) => (l === -1 ? 0 : 1)), [b, n, 1]);
      let emb = F.mul(pe, keep);
      emb = F.add(emb, F.mul(mask(-1), this.notAPointEmbed.weight));
      emb = F.add(emb, F.mul(mask(0), this.pointEmbeddings[0].weight));
      emb = F.add(emb, F.mul(mask(1), this.pointEmbeddings[1].weight));
      parts.push(emb);
    }
    if (p.boxes) {
      const pe = this.encodeCoords(p.boxes, b, 2);
      const corner = tensor(Float32Array.from({ length: b * 2 }, (_, i) => i % 2), [b, 2, 1]);
      const first = F.affine(corner, -1, 1);
      const emb = F.add(
        F.add(pe, F.mul(first, this.pointEmbeddings[2].weight)),
        F.mul(corner, this.pointEmbeddings[3].weight),
      );
      parts.push(emb);
    }
    const sparse = parts.length === 0
      ? F.zeros([b, 0, d])
      : parts.length === 1
      ? parts[0]
      : F.concat(parts, 1);
    const [h, w] = this.cfg.image_embedding_size;
    const dense = p.masks
      ? this.maskDownscaling.forward(p.masks)
      : F.expand(F.reshape(this.noMaskEmbed.weight, [1, d, 1, 1]), [b, d, h, w]);
    return { sparse, dense };
  }
}
