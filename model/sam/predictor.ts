/**
 * SamPredictor: embed an image once, then prompt it many times, as the official predictor (the
 * EP-SAM inference path). Prompts are in original-image pixels; outputs are logits.
 */
import { F, keep, noGrad, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import type { Prompts } from "./prompt_encoder.ts";
import type { Sam } from "./sam.ts";
import { applyBoxes, applyCoords, applyImage, preprocess } from "./transforms.ts";

/** Prompts for {@link SamPredictor.predict}, in original-image pixels. */
export interface PredictInput {
  /** N points as (x, y) pairs. */
  pointCoords?: ArrayLike<number>;
  /** N labels: 1 foreground, 0 background (−1 ignored). */
  pointLabels?: ArrayLike<number>;
  /** One box (x0, y0, x1, y1). */
  box?: ArrayLike<number>;
  /** Low-resolution logits from an earlier prediction, [1, 4h, 4w] (256×256 for SAM). */
  maskInput?: Tensor | Float32Array;
  /** Three masks (true) or the single-output token (false, EP-SAM's choice). */
  multimask?: boolean;
}

/** Result of {@link SamPredictor.predict}; the caller owns (and disposes) the tensors. */
export interface PredictOutput {
  /** [1, K, 4h, 4w] logits, reusable as `maskInput`. */
  lowResLogits: Tensor;
  /** [1, K, H, W] logits at the original image size (mask = logits > 0). */
  masksLogits: Tensor;
  /** [1, K] predicted IoU. */
  iou: Tensor;
}

export class SamPredictor {
  private features: Tensor | null = null;
  private originalHw: [number, number] | null = null;
  private inputHw: [number, number] | null = null;

  constructor(readonly sam: Sam) {}

  get isImageSet(): boolean {
    return this.features !== null;
  }

  /** Original (H, W) of the current image. */
  get originalSize(): [number, number] {
    return this.need().originalHw;
  }

  /** (H, W) after ResizeLongestSide, before padding. */
  get inputSize(): [number, number] {
    return this.need().inputHw;
  }

  /** Cached image embeddings [1, C, h, w] (owned by the predictor). */
  get imageEmbeddings(): Tensor {
    return this.need().features;
  }

  private need(): { features: Tensor; originalHw: [number, number]; inputHw: [number, number] } {
    if (!this.features || !this.originalHw || !this.inputHw) {
      throw new Error("SamPredictor: call setImage(...) before predicting");
    }
    return { features: this.features, originalHw: this.originalHw, inputHw: this.inputHw };
  }

  /** Resizes, normalises and pads an RGB uint8 HWC image, and caches its embeddings. */
  setImage(image: Uint8Array, h: number, w: number): void {
    if (image.length !== h * w * 3) {
      throw new Error(
        `SamPredictor.setImage: ${image.length} bytes for an ${h}x${w} RGB image (expected ${
          h * w * 3
        })`,
      );
    }
    this.reset();
    const s = this.sam.imgSize;
    const resized = applyImage(image, h, w, s);
    const input = preprocess(resized, s);
    this.features = keep(tidy(() => noGrad(() => this.sam.embed(tensor(input, [1, 3, s, s])))));
    this.originalHw = [h, w];
    this.inputHw = [resized.height, resized.width];
  }

  /** Drops the cached embeddings. */
  reset(): void {
    this.features?.dispose();
    this.features = null;
    this.originalHw = null;
    this.inputHw = null;
  }

  /** Decodes masks for the prompts against the cached embeddings (no gradients). */
  predict(p: PredictInput): PredictOutput {
    const { features, originalHw, inputHw } = this.need();
    const s = this.sam.imgSize;
    const prompts: Prompts = { batch: 1 };
    if (p.pointCoords !== undefined || p.pointLabels !== undefined) {
      if (p.pointCoords === undefined || p.pointLabels === undefined) {
        throw new Error("SamPredictor.predict: pointCoords and pointLabels must be given together");
      }
      const n = p.pointLabels.length;
      if (p.pointCoords.length !== 2 * n) {
        throw new Error(
          `SamPredictor.predict: ${p.pointCoords.length} coordinates for ${n} labels (expected ${
            2 * n
          })`,
        );
      }
      prompts.points = {
        coords: applyCoords(p.pointCoords, originalHw, s),
        labels: Float32Array.from(p.pointLabels),
        n,
      };
    }
    if (p.box !== undefined) {
      if (p.box.length !== 4) {
        throw new Error(
          `SamPredictor.predict: box must be (x0, y0, x1, y1), got ${p.box.length} values`,
        );
      }
      prompts.boxes = applyBoxes(p.box, originalHw, s);
    }
    const [eh, ew] = this.sam.config.prompt_encoder.image_embedding_size;
    return tidy(() =>
      noGrad(() => {
        if (p.maskInput !== undefined) {
          const m = p.maskInput;
          const size = m instanceof Float32Array ? m.length : m.size;
          if (size !== 16 * eh * ew) {
            const shape = m instanceof Float32Array ? `${m.length} values` : `[${m.shape}]`;
            throw new Error(
              `SamPredictor.predict: maskInput must be [1, ${4 * eh}, ${
                4 * ew
              }] low-res logits, got ${shape}`,
            );
          }
          prompts.masks = m instanceof Float32Array
            ? tensor(m, [1, 1, 4 * eh, 4 * ew])
            : F.reshape(m, [1, 1, 4 * eh, 4 * ew]);
        }
        const { lowRes, iou } = this.sam.decode(features, prompts, p.multimask ?? false);
        return {
          lowResLogits: lowRes,
          masksLogits: this.sam.postprocess(lowRes, inputHw, originalHw),
          iou,
        };
      })
    );
  }

  dispose(): void {
    this.reset();
  }
}
