/**
 * `deno task sam`: prompt Segment Anything on one image, as the official SamPredictor.
 *
 *   deno task sam --checkpoint <.pth|.safetensors> [--config vit_b|vit_l|vit_h|<json>]
 *     --image <png> [--points "x,y,label;..."] [--box x0,y0,x1,y1]
 *     [--mask-input <safetensors with key mask_input>] [--multimask] --out <dir>
 *
 * Writes `mask_<k>.png` (0/255), `overlay.png` and `logits.safetensors` (image_embeddings,
 * low_res_logits, masks_logits, iou_predictions) into <dir>, each atomically.
 */
import { initGpu } from "../../engine/mod.ts";
import {
  type HostTensor,
  readSafetensors,
  toFloat32,
  writeSafetensors,
} from "../../engine/io/safetensors.ts";
import {
  DEFAULT_MAX_IMAGE_PIXELS,
  type Image8,
  MAX_IMAGE_PIXELS_ENV,
  readPng,
  toRgb,
  writePng,
} from "../../engine/io/png.ts";
import { type ParsedFlags, runCommand, UsageError } from "./args.ts";
import { maxImagePixelsFlag } from "./image_flags.ts";
import { loadSamConfig, type SamConfig } from "../../model/sam/configs.ts";
import { loadSam } from "../../model/sam/checkpoint.ts";
import { SamPredictor } from "../../model/sam/predictor.ts";

const USAGE = `usage: deno task sam --checkpoint <.pth|.safetensors> --image <png> --out <dir>
    [--config vit_b|vit_l|vit_h|<config.json>]   (default vit_b)
    [--points "x,y,label;x,y,label"]   original-image pixels, label 1 foreground / 0 background
    [--box x0,y0,x1,y1]                original-image pixels
    [--mask-input <file.safetensors>]  key "mask_input": low-res logits [1, 4h, 4w]
    [--multimask]                      three masks instead of one
    [--max-image-pixels N]             largest --image accepted (default ${DEFAULT_MAX_IMAGE_PIXELS};
                                       env ${MAX_IMAGE_PIXELS_ENV})`;

function numbers(s: string, flag: string, form: string): number[] {
  const parts = s.split(",").map((v) => v.trim());
  const out = parts.map(Number);
  if (parts.some((v) => v === "") || out.some((v) => !Number.isFinite(v))) {
    throw new UsageError(`--${flag} "${s}": expected ${form}`);
  }
  return out;
}

/** Parses `--points "x,y,label;x,y,label"`. */
function parsePoints(s: string): { coords: number[]; labels: number[] } {
  const form = `"x,y,label;x,y,label" with numbers x, y and label 0 or 1`;
  const coords: number[] = [], labels: number[] = [];
  for (const p of s.split(";").map((v) => v.trim()).filter((v) => v !== "")) {
    const v = numbers(p, "points", form);
    if (v.length !== 3 || (v[2] !== 0 && v[2] !== 1)) {
      throw new UsageError(`--points "${s}": point "${p}" is not x,y,label; expected ${form}`);
    }
    coords.push(v[0], v[1]);
    labels.push(v[2]);
  }
  if (labels.length === 0) throw new UsageError(`--points "${s}": no points; expected ${form}`);
  return { coords, labels };
}

/** Parses `--box x0,y0,x1,y1`. */
function parseBox(s: string): number[] {
  const form = "x0,y0,x1,y1 (four numbers, x1 >= x0, y1 >= y0)";
  const v = numbers(s, "box", form);
  if (v.length !== 4 || v[2] < v[0] || v[3] < v[1]) {
    throw new UsageError(`--box "${s}": expected ${form}`);
  }
  return v;
}

/**
 * Refuses prompt coordinates far outside the image (more than one image size beyond an edge):
 * such a prompt means nothing to SAM, and a huge value (1e16) would otherwise reach code that
 * loops over coordinates. Points and boxes partly outside the image stay legal.
 */
function checkPromptRange(
  points: { coords: number[] } | null,
  box: number[] | null,
  width: number,
  height: number,
): void {
  const check = (flag: string, v: number, axis: "x" | "y") => {
    const size = axis === "x" ? width : height;
    if (v < -size || v > 2 * size) {
      throw new UsageError(
        `--${flag}: ${axis} = ${v} lies far outside the ${width}x${height} image ` +
          `(accepted ${axis} in [${-size}, ${2 * size}], original-image pixels)`,
      );
    }
  };
  points?.coords.forEach((v, i) => check("points", v, i % 2 === 0 ? "x" : "y"));
  box?.forEach((v, i) => check("box", v, i % 2 === 0 ? "x" : "y"));
}

async function readMaskInput(path: string, config: SamConfig): Promise<Float32Array> {
  const [eh, ew] = config.prompt_encoder.image_embedding_size;
  let m: Map<string, HostTensor>;
  try {
    m = await readSafetensors(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`--mask-input ${path}: file not found`);
    }
    throw new UsageError(`--mask-input ${path}: ${(e as Error).message}`);
  }
  const t = m.get("mask_input");
  if (!t) {
    throw new UsageError(
      `--mask-input ${path}: no tensor "mask_input" (has ${[...m.keys()].join(", ") || "none"})`,
    );
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (n !== 16 * eh * ew || t.shape[t.shape.length - 1] !== 4 * ew) {
    throw new UsageError(
      `--mask-input ${path}: mask_input is [${t.shape}], expected [1, ${4 * eh}, ${
        4 * ew
      }] low-res logits`,
    );
  }
  return toFloat32(t);
}

const COLORS = [[30, 144, 255], [255, 140, 0], [50, 205, 50], [220, 20, 60], [186, 85, 211]];

/** The image with masks tinted (alpha 0.45), the box outlined and the points as discs. */
export function drawOverlay(
  img: Image8,
  masks: Uint8Array[],
  points: { coords: number[]; labels: number[] } | null,
  box: number[] | null,
): Image8 {
  const { width: w, height: h } = img;
  const out = img.data.slice();
  masks.forEach((m, k) => {
    const c = COLORS[k % COLORS.length];
    for (let i = 0; i < w * h; i++) {
      if (!m[i]) continue;
      for (let ch = 0; ch < 3; ch++) {
        out[i * 3 + ch] = Math.round(0.55 * out[i * 3 + ch] + 0.45 * c[ch]);
      }
    }
  });
  const put = (x: number, y: number, c: number[]) => {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    out.set(c, (y * w + x) * 3);
  };
  // Every loop below runs over the part of its shape inside the image only: a coordinate far
  // outside (1e16) must not drive a loop (x++ stops advancing past 2^53).
  if (box) {
    const [x0, y0, x1, y1] = box.map(Math.round);
    const green = [0, 255, 0];
    for (let x = Math.max(x0, 0), xe = Math.min(x1, w - 1); x <= xe; x++) {
      put(x, y0, green);
      put(x, y1, green);
    }
    for (let y = Math.max(y0, 0), ye = Math.min(y1, h - 1); y <= ye; y++) {
      put(x0, y, green);
      put(x1, y, green);
    }
  }
  if (points) {
    const r = Math.max(2, Math.round(Math.min(w, h) / 100));
    points.labels.forEach((l, i) => {
      const cx = points.coords[2 * i], cy = points.coords[2 * i + 1];
      const fill = l === 1 ? [0, 220, 0] : [230, 0, 0];
      const ya = Math.max(Math.floor(cy - r - 1), 0), yb = Math.min(Math.ceil(cy + r + 1), h - 1);
      const xa = Math.max(Math.floor(cx - r - 1), 0), xb = Math.min(Math.ceil(cx + r + 1), w - 1);
      for (let y = ya; y <= yb; y++) {
        for (let x = xa; x <= xb; x++) {
          const d = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
          if (d <= r) put(x, y, fill);
          else if (d <= r + 1) put(x, y, [255, 255, 255]);
        }
      }
    });
  }
  return { data: out, width: w, height: h, channels: 3 };
}

function host(data: Float32Array | Int32Array | Uint32Array, shape: readonly number[]): HostTensor {
  return {
    dtype: "F32",
    shape: [...shape],
    data: data instanceof Float32Array ? data : Float32Array.from(data),
  };
}

const OPTIONS = {
  checkpoint: { type: "string" },
  config: { type: "string" },
  image: { type: "string" },
  points: { type: "string" },
  box: { type: "string" },
  "mask-input": { type: "string" },
  multimask: { type: "boolean" },
  out: { type: "string" },
  "max-image-pixels": { type: "string" },
} as const;

export function main(argv: string[]): Promise<number> {
  return runCommand({ name: "sam", usage: USAGE, options: OPTIONS }, argv, (v) => promptSam(v));
}

async function promptSam(values: ParsedFlags<typeof OPTIONS>): Promise<number> {
  for (const f of ["checkpoint", "image", "out"] as const) {
    if (!values[f]) throw new UsageError(`--${f} is required`);
  }
  const points = values.points !== undefined ? parsePoints(values.points) : null;
  const box = values.box !== undefined ? parseBox(values.box) : null;
  if (!points && !box && values["mask-input"] === undefined) {
    throw new UsageError("give at least one prompt: --points, --box or --mask-input");
  }
  const config = await loadSamConfig(values.config ?? "vit_b").catch((e) => {
    throw new UsageError((e as Error).message);
  });
  const maskInput = values["mask-input"] !== undefined
    ? await readMaskInput(values["mask-input"], config)
    : undefined;
  const maxPixels = maxImagePixelsFlag(values);
  let img: Image8;
  try {
    img = toRgb(await readPng(values.image!, { maxPixels }));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`--image ${values.image}: file not found`);
    }
    throw new UsageError(`--image ${(e as Error).message}`);
  }
  checkPromptRange(points, box, img.width, img.height);
  try {
    await Deno.stat(values.checkpoint!);
  } catch {
    throw new UsageError(`--checkpoint ${values.checkpoint}: file not found`);
  }
  const out = values.out!;
  await Deno.mkdir(out, { recursive: true });

  await initGpu();
  const sam = await loadSam(values.checkpoint!, config);
  const predictor = new SamPredictor(sam);
  predictor.setImage(img.data, img.height, img.width);
  const r = predictor.predict({
    pointCoords: points?.coords,
    pointLabels: points?.labels,
    box: box ?? undefined,
    maskInput,
    multimask: !!values.multimask,
  });
  const emb = predictor.imageEmbeddings;
  const [embD, lowD, maskD, iouD] = await Promise.all([
    emb.data(),
    r.lowResLogits.data(),
    r.masksLogits.data(),
    r.iou.data(),
  ]);
  await writeSafetensors(`${out}/logits.safetensors`, {
    image_embeddings: host(embD, emb.shape),
    low_res_logits: host(lowD, r.lowResLogits.shape),
    masks_logits: host(maskD, r.masksLogits.shape),
    iou_predictions: host(iouD, r.iou.shape),
  });
  const k = r.masksLogits.shape[1], n = img.width * img.height;
  const masks: Uint8Array[] = [];
  for (let i = 0; i < k; i++) {
    const m = Uint8Array.from(maskD.subarray(i * n, (i + 1) * n), (v) => (v > 0 ? 255 : 0));
    masks.push(m);
    await writePng(`${out}/mask_${i}.png`, {
      data: m,
      width: img.width,
      height: img.height,
      channels: 1,
    });
  }
  await writePng(`${out}/overlay.png`, drawOverlay(img, masks, points, box));
  for (let i = 0; i < k; i++) {
    const area = masks[i].reduce((a, v) => a + (v ? 1 : 0), 0);
    console.log(
      `mask ${i}: predicted IoU ${iouD[i].toFixed(4)}, ${area} px (${
        (100 * area / n).toFixed(1)
      }%)`,
    );
  }
  console.log(`wrote ${k} mask PNG(s), overlay.png and logits.safetensors to ${out}`);
  r.lowResLogits.dispose();
  r.masksLogits.dispose();
  r.iou.dispose();
  predictor.dispose();
  sam.dispose();
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
