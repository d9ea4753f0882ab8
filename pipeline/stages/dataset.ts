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

/** Generates and prepares the synthetic dataset under `dir` unless its manifest exists. */
export async function ensureSyntheticData(
  dir: string,
  cfg: PipelineConfig,
  log: (m: string) => void,
  quiet: boolean,
): Promise<void> {
  if (await exists(`${dir}/manifest.json`)) return;
  const { generateSyntheticSlide } = await import("../wsi/synthetic.ts");
  const { prepareDataset } = await import("../wsi/extract.ts");
  const s = cfg.data.synthetic;
  const slides = `${dir}/slides`;
  await Deno.mkdir(slides, { recursive: true });
  for (let i = 0; i < s.count; i++) {
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
  await prepareDataset({
    dataset: "synthetic",
    slides,
    annotations: slides,
    out: dir,
    patch: s.patch,
    seed: cfg.seed,
    progress: !quiet,
    log: quiet ? () => {} : log,
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
