/**
 * `deno task classify --checkpoint <.pth|.safetensors> [--layers 3,4,6,3] [--width 64]
 *   --image <png> --dataset camelyon16|camelyon17 --out <dir> [--no-rotations]`
 * The classifier's logit, raw CAM and EP-SAM CAM mask for one patch: writes
 * `<out>/cam.safetensors` (`logit` [1], `cam_raw` [h,w] rotation 0 before ReLU, `cam_norm` and
 * `cam_mask` at patch size), `mask.png` and `cam_overlay.png`.
 */
import { initGpu, noGrad, tensor, tidy } from "../../engine/mod.ts";
import { readPng, toRgb, writePng } from "../../engine/io/png.ts";
import { writeSafetensors } from "../../engine/io/safetensors.ts";
import { loadCheckpoint } from "../../engine/io/state_dict.ts";
import { RESNET50_ADL, ResNetAdl } from "../../model/resnet_adl.ts";
import { type CamDataset, camDefaults, generateCamMasks } from "../../model/cam.ts";
import { heatmapOverlay, overlay } from "../plots.ts";
import { type ParsedFlags, runCommand, UsageError } from "./args.ts";

const USAGE = "usage: deno task classify --checkpoint <.pth|.safetensors> [--layers 3,4,6,3] " +
  "[--width 64] --image <png> --dataset camelyon16|camelyon17 --out <dir> [--no-rotations] [--no-fft]";

const OPTIONS = {
  checkpoint: { type: "string" },
  layers: { type: "string", default: "3,4,6,3" },
  width: { type: "string", default: "64" },
  image: { type: "string" },
  dataset: { type: "string", default: "camelyon16" },
  out: { type: "string" },
  "no-rotations": { type: "boolean", default: false },
  "no-fft": { type: "boolean", default: false },
} as const;

function usage(msg: string): never {
  throw new UsageError(msg);
}

export function main(argv: string[]): Promise<number> {
  return runCommand({ name: "classify", usage: USAGE, options: OPTIONS }, argv, (v) => classify(v));
}

async function classify(v: ParsedFlags<typeof OPTIONS>): Promise<number> {
  if (!v.checkpoint) usage("--checkpoint is required");
  if (!v.image) usage("--image is required");
  if (!v.out) usage("--out is required");
  const layers = v.layers!.split(",").map(Number);
  if (layers.length !== 4 || layers.some((n) => !Number.isInteger(n) || n < 1)) {
    usage(`--layers must be four positive integers like 3,4,6,3, got "${v.layers}"`);
  }
  const width = Number(v.width);
  if (!Number.isInteger(width) || width < 1) {
    usage(`--width must be a positive integer, got "${v.width}"`);
  }
  if (v.dataset !== "camelyon16" && v.dataset !== "camelyon17") {
    usage(`--dataset must be camelyon16 or camelyon17, got "${v.dataset}"`);
  }
  const img = toRgb(await readPng(v.image!));
  await initGpu();
  const model = new ResNetAdl({
    ...RESNET50_ADL,
    layers: layers as [number, number, number, number],
    width,
    highFreq: !v["no-fft"],
  });
  model.loadStateDict(await loadCheckpoint(v.checkpoint!), { file: v.checkpoint! });
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
  if (cam.empty) console.warn(`classify: the CAM of ${v.image} is all zero; the mask is empty`);
  await Deno.mkdir(v.out!, { recursive: true });
  await writeSafetensors(`${v.out}/cam.safetensors`, {
    logit: { dtype: "F32", shape: [1], data: Float32Array.from(logit) },
    cam_raw: { dtype: "F32", shape: [cam.featH, cam.featW], data: cam.rawRot0 },
    cam_norm: { dtype: "F32", shape: [h, w], data: cam.norm },
    cam_mask: { dtype: "U8", shape: [h, w], data: cam.mask },
  });
  await writePng(`${v.out}/mask.png`, {
    data: cam.mask.map((m) => (m ? 255 : 0)),
    width: w,
    height: h,
    channels: 1,
  });
  const heat = heatmapOverlay(img, { data: cam.norm, width: w, height: h });
  await writePng(`${v.out}/cam_overlay.png`, overlay(heat, cam.mask, [255, 255, 255], 0));
  const p = 1 / (1 + Math.exp(-logit[0]));
  console.log(
    `logit ${logit[0].toFixed(4)} (p(tumour) = ${p.toFixed(3)}); CAM ${cam.featH}x${cam.featW}; ` +
      `mask ${
        cam.mask.reduce((a, b) => a + b, 0)
      } px; wrote ${v.out}/cam.safetensors, mask.png, cam_overlay.png`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
