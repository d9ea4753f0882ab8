/**
 * `deno task classify --checkpoint <.pth|.safetensors> [--layers 3,4,6,3] [--width 64]
 *   --image <png> --dataset camelyon16|camelyon17 --out <dir> [--no-rotations]`
 * The classifier's logit, raw CAM and EP-SAM CAM mask for one patch: writes
 * `<out>/cam.safetensors` (`logit` [1], `cam_raw` [h,w] rotation 0 before ReLU, `cam_norm` and
 * `cam_mask` at patch size), `mask.png` and `cam_overlay.png`.
 */
import { initGpu, noGrad, tensor, tidy } from "../../engine/mod.ts";
import {
  DEFAULT_MAX_IMAGE_PIXELS,
  MAX_IMAGE_PIXELS_ENV,
  readPng,
  toRgb,
  writePng,
} from "../../engine/io/png.ts";
import { writeSafetensors } from "../../engine/io/safetensors.ts";
import { loadCheckpoint } from "../../engine/io/state_dict.ts";
import { RESNET50_ADL, ResNetAdl } from "../../model/resnet_adl.ts";
import { type CamDataset, camDefaults, generateCamMasks } from "../../model/cam.ts";
import { heatmapOverlay, overlay } from "../plots.ts";
import { type Flags, numberFlag, requiredFlag, runCommand, UsageError } from "./args.ts";
import { maxImagePixelsFlag } from "./image_flags.ts";

const USAGE =
  `usage: deno task classify --checkpoint <.pth|.safetensors> [--layers 3,4,6,3] [--width 64]
    --image <png> --dataset camelyon16|camelyon17 --out <dir> [--no-rotations] [--no-fft]
    [--max-image-pixels N]   largest --image accepted (default ${DEFAULT_MAX_IMAGE_PIXELS}; env ${MAX_IMAGE_PIXELS_ENV})`;

const OPTIONS = {
  checkpoint: { type: "string" },
  layers: { type: "string", default: "3,4,6,3" },
  width: { type: "string", default: "64" },
  image: { type: "string" },
  dataset: { type: "string", default: "camelyon16" },
  out: { type: "string" },
  "no-rotations": { type: "boolean", default: false },
  "no-fft": { type: "boolean", default: false },
  "max-image-pixels": { type: "string" },
} as const;

export function main(argv: string[]): Promise<number> {
  return runCommand({ name: "classify", usage: USAGE, options: OPTIONS }, argv, classify);
}

async function classify(flags: Flags): Promise<void> {
  const v = flags as Record<string, string | boolean | undefined>;
  const checkpoint = requiredFlag(flags, "checkpoint");
  const image = requiredFlag(flags, "image");
  const out = requiredFlag(flags, "out");
  const layers = String(v.layers).split(",").map(Number);
  if (layers.length !== 4 || layers.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new UsageError(`--layers must be four positive integers like 3,4,6,3, got "${v.layers}"`);
  }
  const width = numberFlag(flags, "width", { min: 1, integer: true })!;
  if (v.dataset !== "camelyon16" && v.dataset !== "camelyon17") {
    throw new UsageError(`--dataset must be camelyon16 or camelyon17, got "${v.dataset}"`);
  }
  const maxPixels = maxImagePixelsFlag(flags);
  const img = toRgb(await readPng(image, { maxPixels }));
  await initGpu();
  const model = new ResNetAdl({
    ...RESNET50_ADL,
    layers: layers as [number, number, number, number],
    width,
    highFreq: !v["no-fft"],
  });
  model.loadStateDict(await loadCheckpoint(checkpoint), { file: checkpoint });
  model.eval();
  const { width: w, height: h } = img;
  const chw = new Float32Array(3 * h * w);
  for (let i = 0; i < h * w; i++) {
    for (let c = 0; c < 3; c++) chw[c * h * w + i] = img.data[i * 3 + c] / 255;
  }
  const logitT = tidy(() => noGrad(() => model.forward(tensor(chw, [1, 3, h, w]))));
  const logit = await logitT.data() as Float32Array;
  logitT.dispose();
  const cam = await generateCamMasks(model, img.data, h, w, {
    ...camDefaults(v.dataset as CamDataset),
    rotations: v["no-rotations"] ? 1 : 4,
  });
  if (cam.empty) console.warn(`classify: the CAM of ${image} is all zero; the mask is empty`);
  await Deno.mkdir(out, { recursive: true });
  await writeSafetensors(`${out}/cam.safetensors`, {
    logit: { dtype: "F32", shape: [1], data: Float32Array.from(logit) },
    cam_raw: { dtype: "F32", shape: [cam.featH, cam.featW], data: cam.rawRot0 },
    cam_norm: { dtype: "F32", shape: [h, w], data: cam.norm },
    cam_mask: { dtype: "U8", shape: [h, w], data: cam.mask },
  });
  await writePng(`${out}/mask.png`, {
    data: cam.mask.map((m) => (m ? 255 : 0)),
    width: w,
    height: h,
    channels: 1,
  });
  const heat = heatmapOverlay(img, { data: cam.norm, width: w, height: h });
  await writePng(`${out}/cam_overlay.png`, overlay(heat, cam.mask, [255, 255, 255], 0));
  const p = 1 / (1 + Math.exp(-logit[0]));
  console.log(
    `logit ${logit[0].toFixed(4)} (p(tumour) = ${p.toFixed(3)}); CAM ${cam.featH}x${cam.featW}; ` +
      `mask ${
        cam.mask.reduce((a, b) => a + b, 0)
      } px; wrote ${out}/cam.safetensors, mask.png, cam_overlay.png`,
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
