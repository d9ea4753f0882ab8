/**
 * Stage 0 of the pipeline: the patch dataset. Without `data.dir`, synthetic slides are generated
 * into `<run>/data/slides` and prepared into `<run>/data` on first use (both resumable); then the
 * splits are listed and negatives capped (seeded), giving every later stage the same item lists.
 * Also: the run context shared by the stages, and host helpers to load patches and masks.
 */
import { readPng, toRgb, writePng } from "../../engine/io/png.ts";
import { Rng } from "../../engine/rng.ts";
import { listSplit, loadHostBatch, type PatchItem } from "../data/patches.ts";
import type { PipelineConfig } from "../config.ts";
import type { RunDir } from "../run_dir.ts";
import { assignBalanced, type Shard } from "../shard/shard.ts";
import { isSharded } from "../shard/manifest.ts";

export type SplitName = "train" | "val" | "test";

/** Everything a stage needs. */
export interface StageContext {
  cfg: PipelineConfig;
  run: RunDir;
  /** Root of the prepared dataset. */
  dataDir: string;
  splits: Record<SplitName, PatchItem[]>;
  log: (msg: string) => void;
  quiet: boolean;
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Generates and prepares the synthetic dataset under `dir` unless its manifest exists. */
export async function ensureSyntheticData(
  dir: string,
  cfg: PipelineConfig,
  log: (m: string) => void,
  quiet: boolean,
): Promise<void> {
  if (await exists(`${dir}/manifest.json`)) return;
  const { generateSyntheticSlide } = await import("../wsi/synthetic.ts");
  const { prepareDataset, PREPARE_PASSES } = await import("../wsi/extract.ts");
  const s = cfg.data.synthetic;
  const slides = `${dir}/slides`;
  await Deno.mkdir(slides, { recursive: true });
  // Made by shards: the merge in prepareDataset checks them (a missing slide is named there).
  const sharded = await isSharded(dir, PREPARE_PASSES.candidates);
  for (let i = 0; i < s.count && !sharded; i++) {
    const base = `${slides}/synthetic_${String(i).padStart(3, "0")}`;
    if (await exists(`${base}.xml`)) continue; // the XML is written after the TIFF
    const t0 = performance.now();
    await generateSyntheticSlide(
      { seed: cfg.seed * 100 + i, width: s.size, height: s.size, tumours: 2 },
      `${base}.tif`,
      `${base}.xml`,
    );
    log(`dataset: generated ${base}.tif (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  const { defaultSplit, slideKey } = await import("../wsi/splits.ts");
  const keys = Array.from(
    { length: s.count },
    (_, i) => slideKey("synthetic", `${slides}/synthetic_${String(i).padStart(3, "0")}.tif`)!,
  );
  await prepareDataset({
    dataset: "synthetic",
    slides,
    annotations: slides,
    out: dir,
    patch: s.patch,
    seed: cfg.seed,
    progress: !quiet,
    log: quiet ? () => {} : log,
    // Shards made the slides: every planned one must be there (the split is the one they used).
    ...(sharded ? { split: defaultSplit("synthetic", keys), slideKeys: keys } : {}),
  });
}

/** Shard pass names of the synthetic dataset's two phases. */
export const DATASET_PASSES = ["dataset_candidates", "dataset_patches"] as const;

/**
 * One shard of the synthetic dataset (`train --pass dataset_candidates|dataset_patches --shard
 * K/N`): the candidates phase makes this shard's slides and their candidate patches, the patches
 * phase extracts this shard's patches (it needs every shard's candidates). Slides go to shards by
 * the balanced assignment of `prepare --shard` with equal weights over the planned slide names,
 * so the shard that makes a slide is the one that reads it. The unsharded stage merges.
 */
export async function syntheticDataShard(
  dir: string,
  cfg: PipelineConfig,
  pass: (typeof DATASET_PASSES)[number],
  shard: Shard,
  log: (m: string) => void,
  quiet: boolean,
): Promise<void> {
  const { generateSyntheticSlide } = await import("../wsi/synthetic.ts");
  const { prepareDataset } = await import("../wsi/extract.ts");
  const { defaultSplit, slideKey } = await import("../wsi/splits.ts");
  const s = cfg.data.synthetic;
  const slides = `${dir}/slides`;
  await Deno.mkdir(slides, { recursive: true });
  const bases = Array.from(
    { length: s.count },
    (_, i) => `${slides}/synthetic_${String(i).padStart(3, "0")}`,
  );
  const keys = bases.map((b) => slideKey("synthetic", `${b}.tif`)!);
  const owner = assignBalanced(keys.map((id) => ({ id, weight: 1 })), shard.count);
  if (pass === "dataset_candidates") {
    for (const [i, base] of bases.entries()) {
      if (owner[i] !== shard.index || await exists(`${base}.xml`)) continue;
      const t0 = performance.now();
      await generateSyntheticSlide(
        { seed: cfg.seed * 100 + i, width: s.size, height: s.size, tumours: 2 },
        `${base}.tif`,
        `${base}.xml`,
      );
      log(`dataset: generated ${base}.tif (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
  }
  await prepareDataset({
    dataset: "synthetic",
    slides,
    annotations: slides,
    out: dir,
    patch: s.patch,
    seed: cfg.seed,
    progress: !quiet,
    log: quiet ? () => {} : log,
    // The same split and assignment whichever slides exist yet.
    split: defaultSplit("synthetic", keys),
    slideKeys: keys,
    slideWeight: () => Promise.resolve(1),
    shard: { shard, phase: pass === "dataset_candidates" ? "candidates" : "patches" },
  });
}

/** Lists the splits and caps negatives per positive (seeded, so every run sees the same lists). */
export async function loadSplits(
  dataDir: string,
  cfg: PipelineConfig,
): Promise<Record<SplitName, PatchItem[]>> {
  const out = {} as Record<SplitName, PatchItem[]>;
  for (const s of ["train", "val", "test"] as const) {
    const dir = `${dataDir}/${s}`;
    if (!(await exists(`${dir}/image`))) {
      throw new Error(
        `${dataDir}: no ${s}/image folder (expected a dataset from deno task prepare)`,
      );
    }
    let items = await listSplit(dir);
    const k = cfg.data.negativesPerPositive;
    if (k > 0 && s !== "test") {
      const pos = items.filter((i) => i.label === 1), neg = items.filter((i) => i.label === 0);
      const keep = Math.min(neg.length, Math.max(k, k * pos.length));
      const perm = new Rng(cfg.seed, s === "train" ? 11 : 12).permutationHost(neg.length);
      const chosen = new Set(perm.slice(0, keep).map((i) => neg[i]));
      items = items.filter((it) => it.label === 1 || chosen.has(it));
    }
    out[s] = items;
  }
  if (!out.train.some((i) => i.label === 1)) throw new Error(`${dataDir}/train: no tumour patches`);
  if (!out.train.some((i) => i.label === 0)) throw new Error(`${dataDir}/train: no normal patches`);
  return out;
}

export const positives = (items: PatchItem[]): PatchItem[] => items.filter((i) => i.label === 1);

/** One patch at `size`: RGB uint8 HWC, and its ground-truth mask (0/1) when it has one. */
export interface HostPatch {
  item: PatchItem;
  rgb: Uint8Array;
  gt: Uint8Array | null;
  size: number;
}

/** Loads patches resized to size×size (bilinear, antialiased; masks nearest). */
export async function loadPatches(items: PatchItem[], size: number): Promise<HostPatch[]> {
  const out: HostPatch[] = [];
  for (const it of items) {
    const b = await loadHostBatch([it], { size, masks: it.mask !== null });
    const hw = size * size;
    const rgb = new Uint8Array(hw * 3);
    for (let i = 0; i < hw; i++) {
      for (let c = 0; c < 3; c++) {
        rgb[i * 3 + c] = Math.max(0, Math.min(255, Math.round(b.images[c * hw + i] * 255)));
      }
    }
    const gt = b.masks ? Uint8Array.from(b.masks, (v) => (v !== 0 ? 1 : 0)) : null;
    out.push({ item: it, rgb, gt, size });
  }
  return out;
}

/** Reads a 0/255 (or 0/1) mask PNG as 0/1, resized (nearest) to size×size. */
export async function readMask(path: string, size: number): Promise<Uint8Array> {
  const m = await readPng(path);
  const out = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    const sy = Math.min(m.height - 1, Math.floor(((y + 0.5) * m.height) / size));
    for (let x = 0; x < size; x++) {
      const sx = Math.min(m.width - 1, Math.floor(((x + 0.5) * m.width) / size));
      out[y * size + x] = m.data[(sy * m.width + sx) * m.channels] !== 0 ? 1 : 0;
    }
  }
  return out;
}

/** Writes a 0/1 mask as a 0/255 gray PNG (atomically). */
export async function writeMask(path: string, mask: Uint8Array, size: number): Promise<void> {
  await writePng(path, {
    data: Uint8Array.from(mask, (v) => (v ? 255 : 0)),
    width: size,
    height: size,
    channels: 1,
  });
}

/** Reads a gray PNG as values in [0, 1]. */
export async function readGray01(path: string): Promise<Float32Array> {
  const m = await readPng(path);
  const out = new Float32Array(m.width * m.height);
  for (let i = 0; i < out.length; i++) out[i] = m.data[i * m.channels] / 255;
  return out;
}

/** Writes values in [0, 1] as an 8-bit gray PNG. */
export async function writeGray01(path: string, v: Float32Array, size: number): Promise<void> {
  await writePng(path, {
    data: Uint8Array.from(v, (x) => Math.max(0, Math.min(255, Math.round(x * 255)))),
    width: size,
    height: size,
    channels: 1,
  });
}

export { exists, readPng, toRgb };
