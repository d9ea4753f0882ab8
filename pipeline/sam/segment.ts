/**
 * SAM forward passes of the pipeline: encoder input of RGB patches, image embeddings (cached per
 * patch when the encoder is frozen), mask logits at patch size for point prompts, and segmentation
 * prompted from the CAM with seeded points (as the reference's `model_inference.py`).
 */
import { memoryStats, noGrad, type Tensor, tensor, tidy, trimPool } from "../../engine/mod.ts";
import { Rng } from "../../engine/rng.ts";
import type { Sam } from "../../model/sam/sam.ts";
import { applyCoords, applyImage, preprocess } from "../../model/sam/transforms.ts";
import type { HostPatch } from "../data/host_patches.ts";
import { exists } from "../fs.ts";
import { batchPrompts, camPointsInMask, type PointPrompt } from "../prompts.ts";
import type { PipelineConfig } from "../config.ts";
import type { SplitName } from "../stage_context.ts";

/** Normalised, padded encoder input of RGB patches, [B·3·I·I]. */
export function samInput(sam: Sam, patches: { rgb: Uint8Array; size: number }[]): Float32Array {
  const I = sam.imgSize;
  const out = new Float32Array(patches.length * 3 * I * I);
  patches.forEach((p, b) => {
    out.set(preprocess(applyImage(p.rgb, p.size, p.size, I), I), b * 3 * I * I);
  });
  return out;
}

/** Parked buffer bytes above which an encoder pass gives them back to the driver. */
const TRIM_ABOVE_BYTES = 256 * 2 ** 20;

/** Where frozen-encoder embeddings are cached (null: not cached). */
export type EmbeddingCache = string | null;

/** Image embeddings [B,C,h,w] (no gradient), read from / written to the cache when given. */
export async function embedPatches(
  sam: Sam,
  patches: HostPatch[],
  cache: EmbeddingCache,
  split: SplitName | "infer",
): Promise<Tensor> {
  const [eh, ew] = sam.config.prompt_encoder.image_embedding_size;
  const C = sam.config.prompt_encoder.embed_dim, per = C * eh * ew;
  const I = sam.imgSize;
  const host = new Float32Array(patches.length * per);
  const todo: number[] = [];
  for (let b = 0; b < patches.length; b++) {
    const f = cache ? `${cache}/${split}/${patches[b].item.id}.f32` : null;
    if (f && await exists(f)) {
      const bytes = await Deno.readFile(f);
      if (bytes.byteLength !== per * 4) {
        throw new Error(`${f}: cached embedding has the wrong size; delete ${cache}`);
      }
      host.set(new Float32Array(bytes.buffer, bytes.byteOffset, per), b * per);
    } else todo.push(b);
  }
  if (todo.length) {
    const x = samInput(sam, todo.map((b) => patches[b]));
    const emb = tidy(() => noGrad(() => sam.embed(tensor(x, [todo.length, 3, I, I]))));
    const d = await emb.data() as Float32Array;
    emb.dispose();
    // The encoder's buffers (GiBs at ViT-B size, another set per batch size) would otherwise stay
    // parked beside the decoder's: measured on the paper profile, 6.9 GiB held for 1.9 GiB used.
    // Small encoders keep theirs (re-creating buffers and bind groups each batch costs time).
    // Parked scratch textures (at most 256 MiB, none in use here) do not count towards it.
    const mem = memoryStats();
    if (mem.pooledBytes - mem.textureBytes > TRIM_ABOVE_BYTES) trimPool();
    for (let j = 0; j < todo.length; j++) {
      const v = d.subarray(j * per, (j + 1) * per);
      host.set(v, todo[j] * per);
      if (cache) {
        const { writeFileAtomic } = await import("../../engine/io/atomic.ts");
        await Deno.mkdir(`${cache}/${split}`, { recursive: true });
        await writeFileAtomic(
          `${cache}/${split}/${patches[todo[j]].item.id}.f32`,
          new Uint8Array(v.slice().buffer),
        );
      }
    }
  }
  return tensor(host, [patches.length, C, eh, ew]);
}

/** Mask logits at patch size [B,1,S,S] for embeddings and prompts in patch pixels. */
export function decodeLogits(sam: Sam, emb: Tensor, prompts: PointPrompt[], size: number): Tensor {
  const I = sam.imgSize;
  const p = batchPrompts(prompts);
  const coords = applyCoords(p.coords, [size, size], I);
  const { lowRes } = sam.decode(emb, {
    points: { coords, labels: p.labels, n: p.n },
    batch: prompts.length,
  }, false);
  const inHw = [Math.trunc(size * (I / size) + 0.5), Math.trunc(size * (I / size) + 0.5)] as [
    number,
    number,
  ];
  return sam.postprocess(lowRes, inHw, [size, size]);
}

/** Seeded CAM-weighted prompts of one patch (fixed per purpose, round and patch index). */
export function camPrompt(
  cfg: PipelineConfig,
  cam: { mask: Uint8Array; norm: Float32Array },
  size: number,
  purpose: number,
  index: number,
): PointPrompt {
  return camPointsInMask(
    cam.norm,
    cam.mask,
    size,
    size,
    cfg.sam.points,
    new Rng(cfg.seed + purpose, index * 4),
  );
}

/** Segments patches with CAM prompts: logits per patch (host), one readback per batch. */
export async function segmentWithCam(
  sam: Sam,
  cfg: PipelineConfig,
  patches: HostPatch[],
  cams: { mask: Uint8Array; norm: Float32Array }[],
  opts: { cache: EmbeddingCache; split: SplitName | "infer"; purpose: number; firstIndex: number },
): Promise<Float32Array[]> {
  const S = patches[0]?.size ?? cfg.patchSize;
  const emb = await embedPatches(sam, patches, opts.cache, opts.split);
  const prompts = cams.map((c, i) => camPrompt(cfg, c, S, opts.purpose, opts.firstIndex + i));
  const logits = tidy(() => noGrad(() => decodeLogits(sam, emb, prompts, S)));
  emb.dispose();
  const d = await logits.data() as Float32Array;
  logits.dispose();
  return patches.map((_, i) => d.slice(i * S * S, (i + 1) * S * S));
}
