/**
 * SAM's ViT image encoder as the official code: 16×16 patch embedding, absolute position
 * embedding, pre-norm blocks (windowed attention except the global ones, decomposed relative
 * position bias), and the neck (1×1 conv, LayerNorm2d, 3×3 conv, LayerNorm2d). Token grids are
 * NHWC [B, H, W, C] as in the official code; the neck output is NCHW.
 */
import { F, gpu, isGradEnabled, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import { Module } from "../../engine/nn/module.ts";
import { ModuleList } from "../../engine/nn/container.ts";
import { Conv2d } from "../../engine/nn/conv.ts";
import { LayerNorm, LayerNorm2d } from "../../engine/nn/norm.ts";
import { Linear } from "../../engine/nn/linear.ts";
import { constant, HostRng } from "../../engine/nn/init.ts";
import { attention, attentionImpl, relPosIndex, setAttentionScoresKernel } from "./attention.ts";
import type { EncoderConfig } from "./configs.ts";

export class MlpBlock extends Module {
  lin1: Linear;
  lin2: Linear;
  constructor(dim: number, hidden: number, readonly act: "gelu" | "relu", rng: HostRng) {
    super();
    this.lin1 = this.child("lin1", new Linear(dim, hidden, { rng }));
    this.lin2 = this.child("lin2", new Linear(hidden, dim, { rng }));
  }
  forward(x: Tensor): Tensor {
    const h = this.lin1.forward(x);
    return this.lin2.forward(this.act === "gelu" ? F.gelu(h) : F.relu(h));
  }
}

class EncoderAttention extends Module {
  qkv: Linear;
  proj: Linear;
  relPosH: Tensor | null = null;
  relPosW: Tensor | null = null;
  readonly headDim: number;
  constructor(
    dim: number,
    readonly numHeads: number,
    useRelPos: boolean,
    readonly inputSize: [number, number],
    rng: HostRng,
  ) {
    super();
    this.headDim = dim / numHeads;
    this.qkv = this.child("qkv", new Linear(dim, dim * 3, { rng }));
    this.proj = this.child("proj", new Linear(dim, dim, { rng }));
    if (useRelPos) {
      this.relPosH = this.param("rel_pos_h", constant([2 * inputSize[0] - 1, this.headDim], 0));
      this.relPosW = this.param("rel_pos_w", constant([2 * inputSize[1] - 1, this.headDim], 0));
    }
  }
  /** Tokens [B, H, W, C] → merged heads, projected: [B, H, W, C]. */
  forward(x: Tensor): Tensor {
    const [b, h, w, c] = x.shape;
    if (h === w && !composedPasses) {
      // The grid as one window: heads merged in one pass (a view when they come merged).
      const o = this.perHead(x);
      const merged = o.strides[1] === this.headDim && o.strides[2] === c && o.strides[3] === 1
        ? F.reshape(F.permute(o, [0, 2, 1, 3]), [b, h, w, c])
        : F.windowUnpartition(o, h, h, w);
      return this.proj.forward(merged);
    }
    // A view (no copy) whether the heads come dense or merged ([B, N, heads, hd] underneath, so
    // the permute below is then contiguous and the reshape a view too).
    const o = F.unflatten(this.perHead(x), 2, [h, w]);
    return this.proj.forward(F.reshape(F.permute(o, [0, 2, 3, 1, 4]), [b, h, w, c]));
  }

  /** Tokens [B, H, W, C] → the attention's output per head, [B, heads, H·W, hd] (maybe strided). */
  perHead(x: Tensor): Tensor {
    return this.perHeadOf(this.qkv.forward(x));
  }

  /**
   * The qkv projection of tokens [B, H, W, 3·C] → the attention's output per head,
   * [B, heads, H·W, hd] (maybe strided).
   */
  perHeadOf(proj: Tensor): Tensor {
    const [b, h, w] = proj.shape;
    const n = h * w, hd = this.headDim, nh = this.numHeads;
    // [B, N, 3, heads, hd] → q, k, v [B, heads, N, hd]: strided views of the projection, read
    // in place by the attention's matmuls (no copy of the 3·N·C projection).
    const qkv = F.permute(F.reshape(proj, [b, n, 3, nh, hd]), [2, 0, 3, 1, 4]);
    const q = F.select(qkv, 0, 0), k = F.select(qkv, 0, 1), v = F.select(qkv, 0, 2);
    let rel;
    if (this.relPosH && this.relPosW) {
      const rh = F.reshape(
        F.indexSelect(this.relPosH, 0, tensor(relPosIndex(h, h), [h * h], "i32")),
        [h, h, hd],
      );
      const rw = F.reshape(
        F.indexSelect(this.relPosW, 0, tensor(relPosIndex(w, w), [w * w], "i32")),
        [w, w, hd],
      );
      rel = { rh, rw, qh: h, qw: w };
    }
    if (b > 1 && headMajor && attentionImpl() === "composed") {
      // Windows as [heads, windows, N, hd] views: one head's windows lie end to end in the
      // projection, so the matmuls stage a pass's slices by a copy per head, not per window-head.
      const swap = (t: Tensor) => F.permute(t, [1, 0, 2, 3]);
      return swap(attention(swap(q), swap(k), swap(v), hd ** -0.5, rel));
    }
    return attention(q, k, v, hd ** -0.5, rel);
  }
}

/**
 * Whether the encoder takes its one-pass layout kernels (window partition and unpartition) or
 * the composed views and copies they replace: kept for A/B benchmarks (bench/sam_encoder_ab.ts)
 * and the test that both give the same block output.
 */
let composedPasses = false;

/**
 * Whether windowed blocks project qkv on the H·W real tokens and partition the projection, padding
 * with the bias (true), or partition the tokens and project the zero-padded windows (false: 16 %
 * more qkv rows on ViT-B's 64×64 grid in 14×14 windows). The projection of a zero token is exactly
 * the bias, so both give the same values; kept for A/B benchmarks (bench/sam_encoder_ab.ts).
 */
let qkvOnTokens = true;

/**
 * Whether the windows' attention runs head-major (true: slices ordered head by head, so a texture
 * operand's slices are staged by one copy per run of a head's windows) or window-major (false:
 * one copy per window-head). Same products per slice; kept for A/B benchmarks.
 */
let headMajor = true;

/** Sets {@link headMajor}; returns the old setting. */
export function setEncoderHeadMajorWindows(on: boolean): boolean {
  const old = headMajor;
  headMajor = on;
  return old;
}

/** Sets {@link qkvOnTokens}; returns the old setting. */
export function setEncoderQkvOnTokens(on: boolean): boolean {
  const old = qkvOnTokens;
  qkvOnTokens = on;
  return old;
}

/** Forces the composed passes (true) or the one-pass kernels (false); returns the old setting. */
export function setEncoderComposedPasses(on: boolean): boolean {
  const old = composedPasses;
  composedPasses = on;
  F.setRelPosTermsComposed(on);
  setAttentionScoresKernel(!on);
  return old;
}

/** [B,H,W,C] → windows [B·nWin, ws, ws, C] (zero-padded to multiples of ws), composed. */
function windowPartitionComposed(
  x: Tensor,
  ws: number,
): { windows: Tensor; hp: number; wp: number } {
  const [b, h, w, c] = x.shape;
  const ph = (ws - (h % ws)) % ws, pw = (ws - (w % ws)) % ws;
  const xp = ph || pw ? F.pad(x, [0, 0, 0, pw, 0, ph]) : x;
  const hp = h + ph, wp = w + pw;
  const v = F.reshape(xp, [b, hp / ws, ws, wp / ws, ws, c]);
  return { windows: F.reshape(F.permute(v, [0, 1, 3, 2, 4, 5]), [-1, ws, ws, c]), hp, wp };
}

/**
 * The attention's per-head output over windows, [B·nWin, heads, ws·ws, hd], → the padded token
 * grid [B, hp, wp, heads·hd]: merging the heads and undoing {@link windowPartition} in one copy.
 */
function mergeWindowsComposed(o: Tensor, ws: number, hp: number, wp: number): Tensor {
  const [bw, nh, , hd] = o.shape;
  const nwh = hp / ws, nww = wp / ws, b = bw / (nwh * nww);
  // Views whatever o's strides (the texture attention returns heads merged underneath).
  const o7 = F.unflatten(F.unflatten(o, 2, [ws, ws]), 0, [b, nwh, nww]);
  return F.reshape(F.permute(o7, [0, 1, 4, 2, 5, 3, 6]), [b, hp, wp, nh * hd]);
}

class Block extends Module {
  norm1: LayerNorm;
  attn: EncoderAttention;
  norm2: LayerNorm;
  mlp: MlpBlock;
  constructor(cfg: EncoderConfig, readonly windowSize: number, gridSize: number, rng: HostRng) {
    super();
    const dim = cfg.embed_dim;
    this.norm1 = this.child("norm1", new LayerNorm(dim, cfg.layernorm_eps));
    const size: [number, number] = windowSize > 0 ? [windowSize, windowSize] : [gridSize, gridSize];
    this.attn = this.child(
      "attn",
      new EncoderAttention(dim, cfg.num_heads, cfg.use_rel_pos, size, rng),
    );
    this.norm2 = this.child("norm2", new LayerNorm(dim, cfg.layernorm_eps));
    this.mlp = this.child("mlp", new MlpBlock(dim, Math.floor(dim * cfg.mlp_ratio), "gelu", rng));
  }
  forward(x: Tensor): Tensor {
    const [, h, w] = x.shape;
    let y = this.norm1.forward(x);
    if (this.windowSize > 0) {
      const ws = this.windowSize;
      if (composedPasses) {
        const { windows, hp, wp } = windowPartitionComposed(y, ws);
        const o = mergeWindowsComposed(this.attn.perHead(windows), ws, hp, wp);
        const grid = this.attn.proj.forward(o);
        y = hp > h || wp > w ? F.slice(F.slice(grid, 1, 0, h), 2, 0, w) : grid;
      } else {
        // Pad + partition in one pass; heads merged, windows put back and the padding cropped in
        // one pass. The projections act per token, so the output projection runs after, on the
        // H·W real tokens only, and so does qkv where no gradient reaches its bias (a padded
        // token's qkv is the bias: the partition pads with it).
        const qkv = this.attn.qkv;
        const biasGrad = isGradEnabled() && qkv.bias?.requiresGrad === true;
        const o = qkvOnTokens && !biasGrad
          ? this.attn.perHeadOf(F.windowPartition(qkv.forward(y), ws, qkv.bias ?? undefined))
          : this.attn.perHead(F.windowPartition(y, ws));
        y = this.attn.proj.forward(F.windowUnpartition(o, ws, h, w));
      }
    } else {
      y = this.attn.forward(y);
    }
    const x1 = F.add(x, y);
    return F.add(x1, this.mlp.forward(this.norm2.forward(x1)));
  }
}

class PatchEmbed extends Module {
  proj: Conv2d;
  constructor(cfg: EncoderConfig, rng: HostRng) {
    super();
    this.proj = this.child(
      "proj",
      new Conv2d(3, cfg.embed_dim, cfg.patch_size, { stride: cfg.patch_size, rng }),
    );
  }
  forward(x: Tensor): Tensor {
    const conv = this.proj;
    const p = conv.kernel;
    if (composedPasses || conv.stride !== p || conv.padding !== 0 || conv.dilation !== 1) {
      return F.permute(conv.forward(x), [0, 2, 3, 1]);
    }
    // Non-overlapping patches: the conv is one linear over each patch's 3·p·p values, in the
    // NHWC layout the blocks take (one copy gathers the patches; no conv pass, no permute).
    const [b, c, h, w] = x.shape, gh = h / p, gw = w / p, e = conv.outChannels;
    const patches = F.reshape(
      F.permute(F.reshape(x, [b, c, gh, p, gw, p]), [0, 2, 4, 1, 3, 5]),
      [b, gh, gw, c * p * p],
    );
    return F.linear(patches, F.reshape(conv.weight, [e, c * p * p]), conv.bias ?? undefined);
  }
}

class Neck extends Module {
  constructor(
    readonly c0: Conv2d,
    readonly n1: LayerNorm2d,
    readonly c2: Conv2d,
    readonly n3: LayerNorm2d,
  ) {
    super();
    this.child("0", c0);
    this.child("1", n1);
    this.child("2", c2);
    this.child("3", n3);
  }
  forward(x: Tensor): Tensor {
    return this.n3.forward(this.c2.forward(this.n1.forward(this.c0.forward(x))));
  }
}

export class ImageEncoderViT extends Module {
  patchEmbed: PatchEmbed;
  posEmbed: Tensor;
  blocks: Block[] = [];
  neck: Neck;
  /** Optional observer of intermediates (parity tests): name → NHWC token grid. */
  tap: ((name: string, t: Tensor) => void) | null = null;

  constructor(readonly cfg: EncoderConfig, seed = 0) {
    super();
    const rng = new HostRng(seed);
    const grid = cfg.img_size / cfg.patch_size;
    this.patchEmbed = this.child("patch_embed", new PatchEmbed(cfg, rng));
    this.posEmbed = this.param("pos_embed", constant([1, grid, grid, cfg.embed_dim], 0));
    const blocks = this.child("blocks", new ModuleList());
    for (let i = 0; i < cfg.depth; i++) {
      const ws = cfg.global_attn_indexes.includes(i) ? 0 : cfg.window_size;
      this.blocks.push(blocks.add(new Block(cfg, ws, grid, rng)));
    }
    const oc = cfg.out_chans;
    this.neck = this.child(
      "neck",
      new Neck(
        new Conv2d(cfg.embed_dim, oc, 1, { bias: false, rng }),
        new LayerNorm2d(oc),
        new Conv2d(oc, oc, 3, { padding: 1, bias: false, rng }),
        new LayerNorm2d(oc),
      ),
    );
  }

  /** x: normalised, padded image [B, 3, img, img] → embeddings [B, out_chans, grid, grid]. */
  forward(x: Tensor): Tensor {
    if (
      x.rank !== 4 || x.shape[1] !== 3 || x.shape[2] !== this.cfg.img_size ||
      x.shape[3] !== this.cfg.img_size
    ) {
      throw new Error(
        `ImageEncoderViT: expected [B,3,${this.cfg.img_size},${this.cfg.img_size}], got [${x.shape}]`,
      );
    }
    // Kernels bind whole tensors: keep every activation of a chunk under the binding limit
    // (ViT-B at 1024: the windowed qkv is 45 MB per image, so 2 images per chunk at 128 MiB).
    const chunk = Math.max(
      1,
      Math.floor(gpu().limits.maxStorageBufferBindingSize / this.largestActivationBytes()),
    );
    const b = x.shape[0];
    if (b > chunk) {
      const outs: Tensor[] = [];
      for (let i = 0; i < b; i += chunk) {
        outs.push(this.forwardChunk(F.slice(x, 0, i, Math.min(b, i + chunk))));
      }
      return F.concat(outs, 0);
    }
    return this.forwardChunk(x);
  }

  /** Bytes of the largest activation one image produces (qkv of the windowed/global blocks, MLP hidden). */
  largestActivationBytes(): number {
    const c = this.cfg, g = c.img_size / c.patch_size, d = c.embed_dim, ws = c.window_size;
    const windowed = ws > 0 ? Math.ceil(g / ws) ** 2 * ws * ws : g * g;
    return 4 *
      Math.max(
        windowed * 3 * d,
        g * g * 3 * d,
        g * g * Math.floor(d * c.mlp_ratio),
        3 * c.img_size ** 2,
      );
  }

  private forwardChunk(x: Tensor): Tensor {
    let t = this.patchEmbed.forward(x);
    // The fixture's `after_patch_embed` is taken after the absolute position embedding.
    t = F.add(t, this.posEmbed);
    this.tap?.("after_patch_embed", t);
    this.blocks.forEach((b, i) => {
      // One scope per block: its intermediates are freed as soon as it ends (those a backward
      // pass needs stay alive through the graph), so peak memory is one block's, not twelve.
      const prev = t;
      t = tidy(() => b.forward(prev));
      this.tap?.(`after_block_${i}`, t);
    });
    return this.neck.forward(F.permute(t, [0, 3, 1, 2]));
  }
}
