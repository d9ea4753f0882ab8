/**
 * Stage 0 of the pipeline: the patch dataset. Without `data.dir`, synthetic slides are generated
 * into `<run>/data/slides` and prepared into `<run>/data` on first use (both resumable); then the
 * splits are listed and negatives capped (seeded), giving every later stage the same item lists.
 */
import { Rng } from "../../engine/rng.ts";
import { listSplit, type PatchItem } from "../data/patches.ts";
import type { PipelineConfig } from "../config.ts";
import { exists } from "../fs.ts";
import type { SplitName } from "../stage_context.ts";
import { assignBalanced, type Shard } from "../shard/shard.ts";
import { isSharded } from "../shard/manifest.ts";

/** Path stems (no extension) of the `count` planned synthetic slides under `slides`. */
function syntheticBases(slides: string, count: number): string[] {
  return Array.from(
    { length: count },
    (_, i) => `${slides}/synthetic_${String(i).padStart(3, "0")}`,
  );
}

/** Generates synthetic slide `i` as `<base>.tif`, then `<base>.xml` (whose presence marks it done). */
async function generateSlide(
  base: string,
  i: number,
  cfg: PipelineConfig,
  log: (m: string) => void,
): Promise<void> {
  const { generateSyntheticSlide } = await import("../wsi/synthetic.ts");
  const s = cfg.data.synthetic;
  const t0 = performance.now();
  await generateSyntheticSlide(
    { seed: cfg.seed * 100 + i, width: s.size, height: s.size, tumours: 2 },
    `${base}.tif`,
    `${base}.xml`,
  );
  log(`dataset: generated ${base}.tif (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}

/** The `prepareDataset` options of the synthetic dataset under `dir`, sharded or not. */
function syntheticPrepare(
  dir: string,
  cfg: PipelineConfig,
  log: (m: string) => void,
  quiet: boolean,
) {
  return {
    dataset: "synthetic",
    slides: `${dir}/slides`,
    annotations: `${dir}/slides`,
    out: dir,
    patch: cfg.data.synthetic.patch,
    seed: cfg.seed,
    progress: !quiet,
    log: quiet ? () => {} : log,
  };
}

/** Generates and prepares the synthetic dataset under `dir` unless its manifest exists. */
export async function ensureSyntheticData(
  dir: string,
  cfg: PipelineConfig,
  log: (m: string) => void,
  quiet: boolean,
): Promise<void> {
  if (await exists(`${dir}/manifest.json`)) return;
  const { prepareDataset, PREPARE_PASSES } = await import("../wsi/extract.ts");
  const slides = `${dir}/slides`;
  await Deno.mkdir(slides, { recursive: true });
  const bases = syntheticBases(slides, cfg.data.synthetic.count);
  // Made by shards: the merge in prepareDataset checks them (a missing slide is named there).
  const sharded = await isSharded(dir, PREPARE_PASSES.candidates);
  for (const [i, base] of bases.entries()) {
    if (sharded) break;
    if (await exists(`${base}.xml`)) continue; // the XML is written after the TIFF
    await generateSlide(base, i, cfg, log);
  }
  const { defaultSplit, slideKey } = await import("../wsi/splits.ts");
  const keys = bases.map((b) => slideKey("synthetic", `${b}.tif`)!);
  await prepareDataset({
    ...syntheticPrepare(dir, cfg, log, quiet),
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
  const { prepareDataset } = await import("../wsi/extract.ts");
  const { defaultSplit, slideKey } = await import("../wsi/splits.ts");
  const slides = `${dir}/slides`;
  await Deno.mkdir(slides, { recursive: true });
  const bases = syntheticBases(slides, cfg.data.synthetic.count);
  const keys = bases.map((b) => slideKey("synthetic", `${b}.tif`)!);
  const owner = assignBalanced(keys.map((id) => ({ id, weight: 1 })), shard.count);
  if (pass === "dataset_candidates") {
    for (const [i, base] of bases.entries()) {
      if (owner[i] !== shard.index || await exists(`${base}.xml`)) continue;
      await generateSlide(base, i, cfg, log);
    }
  }
  await prepareDataset({
    ...syntheticPrepare(dir, cfg, log, quiet),
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
