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
import { parseArgs } from "node:util";
import { prepareDataset } from "../wsi/extract.ts";
import { parseSplit } from "../wsi/splits.ts";
import { generateSyntheticSlide } from "../wsi/synthetic.ts";
import { resolveShard } from "../shard/shard.ts";

const USAGE = `usage: deno task prepare --dataset camelyon16|camelyon17|synthetic --out <dir>
    [--slides <dir>] [--annotations <dir>] [--patch 512] [--seed 42] [--level L]
    [--grid-side N] [--stats-size N] [--split <json {train,val,test}>]
    [--count 4] [--size 4096]   (synthetic: slides generated into <out>/slides when needed)
    [--shard K/N --phase candidates|patches] [--quiet]
  --shard K/N (K from 0; default from SLURM_ARRAY_TASK_ID/COUNT in an array job) does shard K's
  slides only (balanced by file size): first every shard's --phase candidates, then every shard's
  --phase patches; then one run without --shard checks the shards' manifests and writes
  manifest.json.`;

function int(v: string | undefined, name: string, def?: number): number | undefined {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
  return n;
}

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

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
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
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`prepare: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const dataset = values.dataset;
  if (!dataset || !["camelyon16", "camelyon17", "synthetic"].includes(dataset) || !values.out) {
    console.error(USAGE);
    return 2;
  }
  try {
    const seed = int(values.seed, "seed", 42)!;
    const shard = resolveShard(values.shard);
    if (values.phase !== undefined && !["candidates", "patches"].includes(values.phase)) {
      console.error(`prepare: --phase must be candidates or patches\n${USAGE}`);
      return 2;
    }
    if (shard && !values.phase) {
      console.error(
        `prepare: shard ${shard.index}/${shard.count} (${
          values.shard ? "--shard" : "Slurm array task"
        }) needs --phase candidates|patches\n${USAGE}`,
      );
      return 2;
    }
    if (!shard && values.phase) {
      console.error(`prepare: --phase goes with --shard K/N\n${USAGE}`);
      return 2;
    }
    let slides = values.slides, annotations = values.annotations;
    if (dataset === "synthetic") {
      slides ??= `${values.out}/slides`;
      annotations ??= slides;
      if (shard && await isEmptyDir(slides)) {
        throw new Error(
          `${slides}: no slides; generate them before a sharded run (prepare without --shard)`,
        );
      }
      if (await isEmptyDir(slides)) {
        await makeSynthetic(
          slides,
          int(values.count, "count", 4)!,
          int(values.size, "size", 4096)!,
          seed,
        );
      }
    }
    if (!slides || !annotations) throw new Error("--slides and --annotations are required");
    const split = values.split
      ? parseSplit(await Deno.readTextFile(values.split), values.split)
      : undefined;
    const r = await prepareDataset({
      dataset,
      slides,
      annotations,
      out: values.out,
      patch: int(values.patch, "patch"),
      seed,
      level: int(values.level, "level"),
      gridSide: int(values["grid-side"], "grid-side"),
      statsSize: int(values["stats-size"], "stats-size"),
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
  } catch (e) {
    console.error(`prepare: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
