/**
 * GPU augmentation of a training batch, as the reference classifier's torchvision pipeline:
 * RandomHorizontalFlip, RandomVerticalFlip, RandomRotation((0, 360)) (nearest, fill 0, same size),
 * ColorJitter(0.2, 0.2, 0.2, 0.2) (a random op order per sample), RandomGrayscale(0.1).
 *
 * Parameters are drawn on the host (seeded, so a run is reproducible and resumable) and travel to
 * the GPU in one small buffer; the batch takes 3 dispatches (+1 for a mask), not one per sample.
 * Formulas are torchvision's tensor ones (the reference runs them on PIL uint8 images, which
 * rounds every intermediate to 1/255; we stay in f32). Grayscale uses 0.299/0.587/0.114 (PIL's L).
 */
import { dispatch, grid1d } from "../../engine/dispatch.ts";
import { empty, type Tensor, tensor } from "../../engine/tensor.ts";
import { splitBatch } from "../../engine/split.ts";
import {
  AUGMENT_WG,
  GEOMETRIC_UNIFORMS,
  geometricKernel,
  JITTER_UNIFORMS,
  jitterApplyKernel,
  jitterMeanKernel,
  MAX_MEAN_PARTIALS,
  PARAM_STRIDE,
} from "../../kernels/augment.ts";

/** One sample's drawn transform. */
export interface AugmentParams {
  hflip: boolean;
  vflip: boolean;
  /** Counter-clockwise degrees (torchvision's convention). */
  angle: number;
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  /**
   * Order of the four jitter ops: a permutation of 0..3 in torchvision's `fn_idx` numbering
   * (0 brightness, 1 contrast, 2 saturation, 3 hue).
   */
  order: [number, number, number, number];
  /** Apply colour jitter at all (false: skip the four ops). */
  jitter: boolean;
  grayscale: boolean;
}

/** The reference's augmentation strengths. */
export interface AugmentConfig {
  flipP: number;
  /** Rotation range in degrees [lo, hi). */
  rotation: [number, number];
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  grayscaleP: number;
}

const DEFAULT_AUGMENT: Readonly<AugmentConfig> = {
  flipP: 0.5,
  rotation: [0, 360],
  brightness: 0.2,
  contrast: 0.2,
  saturation: 0.2,
  hue: 0.2,
  grayscaleP: 0.1,
};

/** Parameters that change nothing (tests start from these). */
export function identityParams(): AugmentParams {
  return {
    hflip: false,
    vflip: false,
    angle: 0,
    brightness: 1,
    contrast: 1,
    saturation: 1,
    hue: 0,
    order: [0, 1, 2, 3],
    jitter: false,
    grayscale: false,
  };
}

/** The host half of a seeded generator (engine/rng.ts `Rng` has it). */
export interface HostUniform {
  uniformHost(n: number, lo?: number, hi?: number): Float32Array;
}

const DRAWS = 12;

/** Draws `n` samples' parameters with one call to `rng` (one counter step per batch). */
export function sampleAugmentParams(
  rng: HostUniform,
  n: number,
  cfg: AugmentConfig = DEFAULT_AUGMENT,
): AugmentParams[] {
  const u = rng.uniformHost(n * DRAWS);
  const span = (v: number, k: number) => 1 - v + 2 * v * k;
  const out: AugmentParams[] = [];
  for (let i = 0; i < n; i++) {
    const r = u.subarray(i * DRAWS, (i + 1) * DRAWS);
    const order: [number, number, number, number] = [0, 1, 2, 3];
    for (let j = 3; j > 0; j--) {
      const k = Math.min(j, Math.floor(r[8 + j - 1] * (j + 1)));
      [order[j], order[k]] = [order[k], order[j]];
    }
    out.push({
      hflip: r[0] < cfg.flipP,
      vflip: r[1] < cfg.flipP,
      angle: cfg.rotation[0] + (cfg.rotation[1] - cfg.rotation[0]) * r[2],
      brightness: Math.max(0, span(cfg.brightness, r[3])),
      contrast: Math.max(0, span(cfg.contrast, r[4])),
      saturation: Math.max(0, span(cfg.saturation, r[5])),
      hue: -cfg.hue + 2 * cfg.hue * r[6],
      order,
      jitter: cfg.brightness > 0 || cfg.contrast > 0 || cfg.saturation > 0 || cfg.hue > 0,
      grayscale: r[7] < cfg.grayscaleP,
    });
  }
  return out;
}

/** cos/sin of a multiple of 90° exactly, so quarter turns are exact permutations. */
export function cosSin(deg: number): [number, number] {
  const q = ((deg % 360) + 360) % 360;
  if (q === 0) return [1, 0];
  if (q === 90) return [0, 1];
  if (q === 180) return [-1, 0];
  if (q === 270) return [0, -1];
  const t = (deg * Math.PI) / 180;
  return [Math.cos(t), Math.sin(t)];
}

/** Packs parameters as the kernels read them (PARAM_STRIDE f32 per sample). */
function packParams(ps: AugmentParams[]): Float32Array {
  const out = new Float32Array(ps.length * PARAM_STRIDE);
  ps.forEach((p, i) => {
    if (p.order.length !== 4 || [...p.order].sort().join() !== "0,1,2,3") {
      throw new Error(
        `augment: sample ${i}: order must be a permutation of 0..3, got [${p.order}]`,
      );
    }
    const [c, s] = cosSin(p.angle);
    out.set([
      +p.hflip,
      +p.vflip,
      c,
      s,
      p.brightness,
      p.contrast,
      p.saturation,
      p.hue,
      +p.grayscale,
      ...p.order,
      +p.jitter,
    ], i * PARAM_STRIDE);
  });
  return out;
}

function check4(name: string, t: Tensor, c: number | null, n?: number, h?: number, w?: number) {
  t.assertAlive();
  const ok = t.dtype === "f32" && t.rank === 4 && (c === null || t.shape[1] === c) &&
    (n === undefined || (t.shape[0] === n && t.shape[2] === h && t.shape[3] === w)) && t.isDense();
  if (!ok) {
    const want = n === undefined ? `[N,${c ?? "C"},H,W]` : `[${n},${c},${h},${w}]`;
    throw new Error(`augment: ${name} must be a dense f32 ${want}, got ${t.dtype} [${t.shape}]`);
  }
}

/** Flips + rotation of [N,C,H,W] (any C): one dispatch. */
function geometricRaw(x: Tensor, prm: Tensor): Tensor {
  const [n, c, h, w] = x.shape;
  const y = empty(x.shape);
  if (y.size === 0) return y;
  // Samples are independent: over the binding limit, runs of samples are separate dispatches.
  for (const ch of splitBatch("augment", n, [x, y])) {
    const [rx, ry] = ch.ranges;
    const k = ch.n1 - ch.n0;
    dispatch(
      geometricKernel(),
      [prm.binding(), rx.binding, ry.binding],
      GEOMETRIC_UNIFORMS.pack({ n: k, c, h, w, s0: ch.n0, xOff: rx.off, yOff: ry.off }),
      grid1d(k * h * w, AUGMENT_WG),
    );
  }
  return y;
}

/** ColorJitter (per-sample order) + RandomGrayscale of [N,3,H,W]: two dispatches. */
function colourRaw(x: Tensor, prm: Tensor): Tensor {
  const [n, , h, w] = x.shape;
  const hw = h * w;
  const y = empty(x.shape);
  if (y.size === 0) return y;
  const parts = Math.max(1, Math.min(MAX_MEAN_PARTIALS, Math.ceil(hw / (AUGMENT_WG * 16))));
  const groups = Math.ceil(hw / AUGMENT_WG);
  if (groups > 65535 || n > 65535) {
    throw new Error(`augment: ${n}×${h}×${w} is too large for one dispatch`);
  }
  const partial = empty([n, parts]);
  for (const ch of splitBatch("augment", n, [x, y])) {
    const [rx, ry] = ch.ranges;
    const k = ch.n1 - ch.n0;
    const p = JITTER_UNIFORMS.pack({ n: k, hw, parts, s0: ch.n0, xOff: rx.off, yOff: ry.off });
    dispatch(jitterMeanKernel(), [prm.binding(), rx.binding, partial.binding()], p, [parts, k]);
    dispatch(
      jitterApplyKernel(),
      [prm.binding(), rx.binding, partial.binding(), ry.binding],
      p,
      [groups, k],
    );
  }
  partial.dispose();
  return y;
}

/**
 * Applies `params` (one per sample) to `images` [N,3,H,W] in [0,1], and the geometric part to
 * `mask` [N,1,H,W] when given. Returns new tensors; the inputs are left alone. No autograd.
 */
export function augmentWith(
  images: Tensor,
  params: AugmentParams[],
  mask?: Tensor,
): { images: Tensor; mask?: Tensor } {
  check4("images", images, 3);
  const [n, , h, w] = images.shape;
  if (params.length !== n) {
    throw new Error(`augment: ${params.length} parameter sets for a batch of ${n}`);
  }
  if (mask) check4("mask", mask, 1, n, h, w);
  const prm = tensor(packParams(params), [n, PARAM_STRIDE]);
  try {
    const geo = geometricRaw(images, prm);
    const out = colourRaw(geo, prm);
    geo.dispose();
    return { images: out, mask: mask ? geometricRaw(mask, prm) : undefined };
  } finally {
    prm.dispose();
  }
}

/** Draws parameters from `rng` and applies them (see {@link augmentWith}). */
export function augment(
  images: Tensor,
  rng: HostUniform,
  mask?: Tensor,
  cfg: AugmentConfig = DEFAULT_AUGMENT,
): { images: Tensor; mask?: Tensor; params: AugmentParams[] } {
  const params = sampleAugmentParams(rng, images.shape[0] ?? 0, cfg);
  return { ...augmentWith(images, params, mask), params };
}
