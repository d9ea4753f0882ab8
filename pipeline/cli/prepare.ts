/**
 * `deno task prepare`: patches for classifier and SAM training from whole-slide images
 * (EP-SAM `0_data_preprocess.py`). See `pipeline/wsi/extract.ts` for the output layout.
 *
 *   deno task prepare --dataset camelyon16|camelyon17|synthetic --slides <dir>
 *     --annotations <dir> --out <dir> [--patch 512] [--seed 42] [--level L]
 *     [--grid-side N] [--stats-size N] [--split split.json]
 *     synthetic only: [--count 4] [--size 4096]  (slides are generated when --slides is absent
 *     or empty)
 *     [--shard K/N --phase candidates|patches]  (one shard's slides; see SCALE.md)
 */
import { prepareDataset } from "../wsi/extract.ts";
import { parseSplit } from "../wsi/splits.ts";
import { generateSyntheticSlide } from "../wsi/synthetic.ts";
import { resolveShard } from "../shard/shard.ts";
import {
  type Flags,
  numberFlag,
  type ParsedFlags,
  requiredFlag,
  runCommand,
  UsageError,
} from "./args.ts";

const USAGE = `usage: deno task prepare --dataset camelyon16|camelyon17|synthetic --out <dir>
    [--slides <dir>] [--annotations <dir>] [--patch 512] [--seed 42] [--level L]
    [--grid-side N] [--stats-size N] [--split <json {train,val,test}>]
    [--count 4] [--size 4096]   (synthetic: slides generated into <out>/slides when needed)
    [--shard K/N --phase candidates|patches] [--quiet]
  --shard K/N (K from 0; default from SLURM_ARRAY_TASK_ID/COUNT in an array job) does shard K's
  slides only (balanced by file size): first every shard's --phase candidates, then every shard's
  --phase patches; then one run without --shard checks the shards' manifests and writes
  manifest.json.`;

async function isEmptyDir(dir: string): Promise<boolean> {
  try {
    for await (const e of Deno.readDir(dir)) if (/\.tiff?$/i.test(e.name)) return false;
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
}

/** Generates `count` synthetic slides (the last one without tumour) with their XML. */
async function makeSynthetic(dir: string, count: number, size: number, seed: number) {
  await Deno.mkdir(dir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const base = `${dir}/synthetic_${String(i).padStart(3, "0")}`;
    const tumours = i === 0 && count > 3 ? 0 : 2; // one all-normal slide (train)
    const t0 = performance.now();
    await generateSyntheticSlide(
      { seed: seed + i, width: size, height: size, tumours },
      `${base}.tif`,
      `${base}.xml`,
    );
    console.error(`generated ${base}.tif (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
}

const OPTIONS = {
  dataset: { type: "string" },
  slides: { type: "string" },
  annotations: { type: "string" },
  out: { type: "string" },
  patch: { type: "string" },
  seed: { type: "string" },
  level: { type: "string" },
  "grid-side": { type: "string" },
  "stats-size": { type: "string" },
  split: { type: "string" },
  count: { type: "string" },
  size: { type: "string" },
  shard: { type: "string" },
  phase: { type: "string" },
  quiet: { type: "boolean" },
} as const;

const DATASETS = ["camelyon16", "camelyon17", "synthetic"];

/** A non-negative integer flag (absent: `def`). */
const int = (flags: Flags, name: string, def?: number) =>
  numberFlag(flags, name, { def, min: 0, integer: true });

export function main(argv: string[]): Promise<number> {
  return runCommand({ name: "prepare", usage: USAGE, options: OPTIONS }, argv, (v) => prepare(v));
}

async function prepare(values: ParsedFlags<typeof OPTIONS>): Promise<number> {
  const dataset = requiredFlag(values, "dataset");
  if (!DATASETS.includes(dataset)) {
    throw new UsageError(`--dataset must be one of ${DATASETS.join(", ")}, got "${dataset}"`);
  }
  const out = requiredFlag(values, "out");
  const seed = int(values, "seed", 42)!;
  const shard = resolveShard(values.shard);
  if (values.phase !== undefined && !["candidates", "patches"].includes(values.phase)) {
    throw new UsageError("--phase must be candidates or patches");
  }
  if (shard && !values.phase) {
    throw new UsageError(
      `shard ${shard.index}/${shard.count} (${
        values.shard ? "--shard" : "Slurm array task"
      }) needs --phase candidates|patches`,
    );
  }
  if (!shard && values.phase) {
    throw new UsageError("--phase goes with --shard K/N");
  }
  let slides = values.slides, annotations = values.annotations;
  if (dataset === "synthetic") {
    slides ??= `${out}/slides`;
    annotations ??= slides;
    if (shard && await isEmptyDir(slides)) {
      throw new Error(
        `${slides}: no slides; generate them before a sharded run (prepare without --shard)`,
      );
    }
    if (await isEmptyDir(slides)) {
      await makeSynthetic(
        slides,
        int(values, "count", 4)!,
        int(values, "size", 4096)!,
        seed,
      );
    }
  }
  if (!slides || !annotations) throw new UsageError("--slides and --annotations are required");
  const split = values.split
    ? parseSplit(await Deno.readTextFile(values.split), values.split)
    : undefined;
  const r = await prepareDataset({
    dataset,
    slides,
    annotations,
    out,
    patch: int(values, "patch"),
    seed,
    level: int(values, "level"),
    gridSide: int(values, "grid-side"),
    statsSize: int(values, "stats-size"),
    split,
    progress: !values.quiet,
    shard: shard ? { shard, phase: values.phase as "candidates" | "patches" } : undefined,
  });
  if (shard) {
    console.log(
      `shard ${shard.index}/${shard.count} (${values.phase}): ${r.written} files written; ${r.manifestPath}`,
    );
    return 0;
  }
  for (const rep of r.manifest.reports) {
    console.log(
      `${rep.split}: ${rep.positives} tumour + ${rep.negatives} normal patches ` +
        `from ${rep.candidates} candidates`,
    );
  }
  console.log(`${r.written} files written, ${r.skipped} patches already done; ${r.manifestPath}`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
