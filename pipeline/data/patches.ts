/**
 * The prepared patch dataset (pipeline/wsi/extract.ts layout): `<split>/image/<id>_<label>.png`
 * and, for positives, `<split>/mask/<id>_1.png`. Listing, decoding, optional resizing, seeded
 * per-epoch shuffling, optional class balancing, and batches uploaded as [N,3,H,W] in [0,1].
 *
 * Decoding of the next batch starts before the current one is handed out, so it overlaps with
 * whatever the caller awaits on the GPU (PNG decoding itself runs on this thread).
 */
import { readPng, toRgb } from "../../engine/io/png.ts";
// engine/mod.ts before engine/rng.ts: entering the engine's op modules through rng.ts first trips
// the elementwise ↔ view registration cycle.
import { type Tensor, tensor } from "../../engine/mod.ts";
import { Rng } from "../../engine/rng.ts";

/** One patch of a split. */
export interface PatchItem {
  /** File name without `_<label>.png`. */
  id: string;
  /** Path of the RGB image. */
  image: string;
  label: 0 | 1;
  /** Path of the 0/255 mask, when the split has one for this patch. */
  mask: string | null;
}

const NAME = /^(.*)_(\d+)\.png$/i;

async function listDir(dir: string): Promise<string[] | null> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
    return names.sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * Lists a split folder (sorted by file name, so the order does not depend on the file system).
 * The label is the integer after the last `_`, as the reference's ClassifierDataset reads it.
 */
export async function listSplit(dir: string): Promise<PatchItem[]> {
  const images = await listDir(`${dir}/image`);
  if (images === null) {
    throw new Error(`${dir}: no image/ folder (expected <split>/image/<id>_<label>.png)`);
  }
  const masks = new Set((await listDir(`${dir}/mask`)) ?? []);
  const out: PatchItem[] = [];
  for (const name of images) {
    if (!name.toLowerCase().endsWith(".png")) continue;
    const m = NAME.exec(name);
    const label = m ? Number(m[2]) : NaN;
    if (!m || (label !== 0 && label !== 1)) {
      throw new Error(`${dir}/image/${name}: name must end in _0.png or _1.png (the patch label)`);
    }
    out.push({
      id: m[1],
      image: `${dir}/image/${name}`,
      label: label as 0 | 1,
      mask: masks.has(name) ? `${dir}/mask/${name}` : null,
    });
  }
  if (!out.length) throw new Error(`${dir}/image: no patches (*.png)`);
  return out;
}

/** The tumour patches (label 1) of a list. */
export const positives = (items: PatchItem[]): PatchItem[] => items.filter((i) => i.label === 1);

// ------------------------------------------------------------------------------ resizing

/** PIL-style resampling taps for one axis: bilinear, widened by the scale when shrinking (antialias). */
function taps(inSize: number, outSize: number): { start: Int32Array; w: Float64Array[] } {
  const scale = inSize / outSize, fs = Math.max(scale, 1), support = fs;
  const start = new Int32Array(outSize);
  const w: Float64Array[] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const k = new Float64Array(Math.max(0, hi - lo));
    let sum = 0;
    for (let i = 0; i < k.length; i++) {
      k[i] = Math.max(0, 1 - Math.abs((i + lo - center + 0.5) / fs));
      sum += k[i];
    }
    for (let i = 0; i < k.length; i++) k[i] = sum ? k[i] / sum : 0;
    start[o] = lo;
    w.push(k);
  }
  return { start, w };
}

/**
 * Bilinear resize of planar float channels [C,H,W] → [C,oh,ow], antialiased when shrinking
 * (as torchvision's Resize on PIL images).
 */
export function resizeBilinear(
  src: Float32Array,
  c: number,
  h: number,
  w: number,
  oh: number,
  ow: number,
): Float32Array {
  if (h === oh && w === ow) return src.slice();
  const tx = taps(w, ow), ty = taps(h, oh);
  const tmp = new Float64Array(c * h * ow);
  for (let k = 0; k < c; k++) {
    for (let y = 0; y < h; y++) {
      const row = k * h * w + y * w;
      for (let x = 0; x < ow; x++) {
        const kk = tx.w[x], s = tx.start[x];
        let acc = 0;
        for (let i = 0; i < kk.length; i++) acc += kk[i] * src[row + s + i];
        tmp[(k * h + y) * ow + x] = acc;
      }
    }
  }
  const out = new Float32Array(c * oh * ow);
  for (let k = 0; k < c; k++) {
    for (let y = 0; y < oh; y++) {
      const kk = ty.w[y], s = ty.start[y];
      for (let x = 0; x < ow; x++) {
        let acc = 0;
        for (let i = 0; i < kk.length; i++) acc += kk[i] * tmp[(k * h + s + i) * ow + x];
        out[(k * oh + y) * ow + x] = acc;
      }
    }
  }
  return out;
}

/** Nearest resize of one plane (masks must stay binary). */
function resizeNearest(
  src: Float32Array,
  h: number,
  w: number,
  oh: number,
  ow: number,
): Float32Array {
  if (h === oh && w === ow) return src;
  const out = new Float32Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / oh));
    for (let x = 0; x < ow; x++) {
      out[y * ow + x] = src[sy * w + Math.min(w - 1, Math.floor(((x + 0.5) * w) / ow))];
    }
  }
  return out;
}

// ------------------------------------------------------------------------------ decoding

/** Decoded batch in host memory. */
export interface HostBatch {
  /** [N,3,H,W], values /255. */
  images: Float32Array;
  /** [N,1,H,W] 0/1 (mask != 0), zeros for patches without a mask; only when masks were asked for. */
  masks?: Float32Array;
  labels: Float32Array;
  ids: string[];
  height: number;
  width: number;
}

/**
 * Decodes `items` into one host batch of size×size (or the first image's size when `size` is
 * undefined; then every image must have it). A positive patch without a mask is an error when
 * masks are asked for.
 */
export async function loadHostBatch(
  items: PatchItem[],
  opts: { size?: number | [number, number]; masks?: boolean } = {},
): Promise<HostBatch> {
  const n = items.length;
  let oh = 0, ow = 0;
  if (typeof opts.size === "number") oh = ow = opts.size;
  else if (opts.size) [oh, ow] = opts.size;
  let images: Float32Array | null = null;
  let masks: Float32Array | undefined;
  for (let s = 0; s < n; s++) {
    const it = items[s];
    const img = toRgb(await readPng(it.image));
    const { width: w, height: h } = img;
    if (!oh) [oh, ow] = [h, w];
    else if (opts.size === undefined && (h !== oh || w !== ow)) {
      throw new Error(
        `${it.image}: image is ${w}×${h}, the batch's first is ${ow}×${oh} (pass a size to resize)`,
      );
    }
    if (!images) {
      images = new Float32Array(n * 3 * oh * ow);
      if (opts.masks) masks = new Float32Array(n * oh * ow);
    }
    const hw = h * w;
    const planar = new Float32Array(3 * hw);
    for (let i = 0; i < hw; i++) {
      planar[i] = img.data[3 * i] / 255;
      planar[hw + i] = img.data[3 * i + 1] / 255;
      planar[2 * hw + i] = img.data[3 * i + 2] / 255;
    }
    images.set(resizeBilinear(planar, 3, h, w, oh, ow), s * 3 * oh * ow);
    if (masks) {
      if (it.mask === null) {
        if (it.label === 1) throw new Error(`${it.image}: positive patch has no mask in ../mask/`);
        continue;
      }
      const m = await readPng(it.mask);
      if (m.width !== w || m.height !== h) {
        throw new Error(`${it.mask}: mask is ${m.width}×${m.height}, its image is ${w}×${h}`);
      }
      const plane = new Float32Array(hw);
      for (let i = 0; i < hw; i++) plane[i] = m.data[i * m.channels] !== 0 ? 1 : 0;
      masks.set(resizeNearest(plane, h, w, oh, ow), s * oh * ow);
    }
  }
  return {
    images: images ?? new Float32Array(0),
    masks,
    labels: Float32Array.from(items, (it) => it.label),
    ids: items.map((it) => it.id),
    height: oh,
    width: ow,
  };
}

// ------------------------------------------------------------------------------ loader

/** Options of {@link PatchLoader}. */
export interface LoaderOptions {
  batchSize: number;
  /** Output side (square) or [H, W]; default: the images' own size. */
  size?: number | [number, number];
  /** Shuffle each epoch (default true). */
  shuffle?: boolean;
  /** Seed of the per-epoch order (default 0). */
  seed?: number;
  /** Oversample the smaller class up to the larger one's count, each epoch. */
  balance?: boolean;
  /** Drop a last incomplete batch (default false). */
  dropLast?: boolean;
  /** Also load masks ([N,1,H,W] 0/1). */
  masks?: boolean;
}

/** A batch on the GPU; the caller disposes `images` and `masks`. */
export interface Batch {
  images: Tensor;
  masks?: Tensor;
  /** Host labels (0/1), one per sample. */
  labels: Float32Array;
  ids: string[];
  /** Index of the batch in its epoch. */
  index: number;
}

/** Seeded batches over a list of patches. */
export class PatchLoader {
  readonly items: PatchItem[];
  readonly opts: Required<Omit<LoaderOptions, "size">> & { size?: number | [number, number] };

  constructor(items: PatchItem[], opts: LoaderOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) {
      throw new Error(`PatchLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    if (!items.length) throw new Error("PatchLoader: no patches");
    this.items = items;
    this.opts = { shuffle: true, seed: 0, balance: false, dropLast: false, masks: false, ...opts };
  }

  /**
   * The items of `epoch` in order. Depends only on (seed, epoch), so a resumed run sees the same
   * order as an uninterrupted one.
   */
  order(epoch: number): PatchItem[] {
    let list = this.items;
    if (this.opts.balance) {
      const pos = list.filter((i) => i.label === 1), neg = list.filter((i) => i.label === 0);
      const [small, big] = pos.length < neg.length ? [pos, neg] : [neg, pos];
      if (small.length && small.length < big.length) {
        const extra = big.length - small.length;
        const reps: PatchItem[] = [];
        for (let k = 0; k < Math.floor(extra / small.length); k++) reps.push(...small);
        const perm = new Rng(this.opts.seed, 2 * epoch + 1).permutationHost(small.length);
        for (let k = 0; k < extra % small.length; k++) reps.push(small[perm[k]]);
        list = [...list, ...reps];
      }
    }
    if (!this.opts.shuffle) return list.slice();
    const perm = new Rng(this.opts.seed, 2 * epoch).permutationHost(list.length);
    return perm.map((i) => list[i]);
  }

  /** Number of batches in `epoch`. */
  batchCount(epoch = 0): number {
    const n = this.order(epoch).length, b = this.opts.batchSize;
    return this.opts.dropLast ? Math.floor(n / b) : Math.ceil(n / b);
  }

  /** Batches of `epoch` from `start` on; the next batch's files are decoded while this one is used. */
  async *batches(epoch: number, start = 0): AsyncGenerator<Batch> {
    const list = this.order(epoch), b = this.opts.batchSize;
    const count = this.opts.dropLast ? Math.floor(list.length / b) : Math.ceil(list.length / b);
    const load = (k: number) => {
      const p = loadHostBatch(list.slice(k * b, (k + 1) * b), {
        size: this.opts.size,
        masks: this.opts.masks,
      });
      p.catch(() => {}); // rethrown where awaited; avoids an unhandled rejection while pending
      return p;
    };
    let next = start < count ? load(start) : null;
    for (let k = start; k < count; k++) {
      const host = await next!;
      next = k + 1 < count ? load(k + 1) : null;
      const n = host.labels.length;
      yield {
        images: tensor(host.images, [n, 3, host.height, host.width]),
        masks: host.masks ? tensor(host.masks, [n, 1, host.height, host.width]) : undefined,
        labels: host.labels,
        ids: host.ids,
        index: k,
      };
    }
  }
}
