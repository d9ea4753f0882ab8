/**
 * `deno task infer --run <run dir> [--data <patch dir>] [--slide <tif>] --out <dir>`
 *
 * Patches (`<dir>/image/<id>_<label>.png`, masks in `<dir>/mask/`; default: the run's test split):
 * the classifier's CAM prompts the final SAM (as `model_inference.py`); per-patch Dice and IoU as
 * the reference computes them (smooth 1e-3, logits > 0, averaged over tumour patches) and pooled
 * figures go to `<out>/metrics.json` (`dice`, `iou`, `n`, ...), masks to `<out>/masks/`, overlays to
 * `<out>/overlays/`. A slide gives `<out>/probability.tif` (gray pyramidal TIFF) and an overlay PNG.
 */
import { initGpu } from "../../engine/mod.ts";
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { type PipelineConfig, readRunConfig } from "../config.ts";
import { listSplit, positives } from "../data/patches.ts";
import { asStoredGray01, loadPatches, writeMask } from "../data/host_patches.ts";
import { CLASSIFIER_BEST, loadClassifier } from "../classifier/model.ts";
import { camOf } from "../classifier/cam.ts";
import { finalTag, loadStageSam, samBest } from "../sam/build.ts";
import { segmentAndScore } from "../sam/score.ts";
import { examplePanel } from "../example_panel.ts";
import { inferSlide } from "../infer/slide.ts";
import { inferSlides } from "../infer/slides.ts";
import { resolveShard } from "../shard/shard.ts";
import { type ParsedFlags, requiredFlag, runCommand, UsageError } from "./args.ts";

const USAGE =
  `usage: deno task infer --run <run dir> [--data <patch dir>] [--slide <tif>] --out <dir> [--quiet]
       deno task infer --run <run dir> --slides <dir> --out <dir> [--shard K/N] [--quiet]
  --slides: every slide under <dir>, each into <out>/<slide>/, listed in <out>/slides.json; with
  --shard K/N (K from 0; default from the Slurm array task) only shard K's slides (balanced by file
  size), recorded in <out>/shards/infer/; a run without --shard then checks the shards and writes
  slides.json.`;

const OPTIONS = {
  run: { type: "string" },
  data: { type: "string" },
  slide: { type: "string" },
  slides: { type: "string" },
  shard: { type: "string" },
  out: { type: "string" },
  quiet: { type: "boolean" },
} as const;

export function main(argv: string[]): Promise<number> {
  return runCommand({ name: "infer", usage: USAGE, options: OPTIONS }, argv, async (flags) => {
    const v = { ...flags, run: requiredFlag(flags, "run"), out: requiredFlag(flags, "out") };
    return await infer(v);
  });
}

async function infer(
  v: ParsedFlags<typeof OPTIONS> & { run: string; out: string },
): Promise<number> {
  const quiet = !!v.quiet;
  if (v.shard !== undefined && !v.slides) throw new UsageError("--shard goes with --slides");
  if (v.slides && (v.slide || v.data)) {
    throw new UsageError("--slides is used alone (not with --slide or --data)");
  }
  const cfg: PipelineConfig = await readRunConfig(v.run);
  const tag = finalTag(cfg.iterations);
  const samPath = `${v.run}/${samBest(tag)}`;
  try {
    await Deno.stat(samPath);
  } catch {
    throw new Error(`${v.run}: no final model (${samBest(tag)}); finish deno task train first`);
  }
  await initGpu();
  const cls = await loadClassifier(cfg, `${v.run}/${CLASSIFIER_BEST}`);
  const sam = await loadStageSam(cfg, samPath);
  await Deno.mkdir(v.out, { recursive: true });
  const S = cfg.patchSize;
  if (v.slide) {
    const r = await inferSlide(v.slide, cls, sam, cfg, v.out, {
      tile: cfg.data.synthetic.patch,
      quiet,
    });
    console.log(
      `slide ${v.slide}: ${r.tumourTiles}/${r.tiles} tissue tiles tumour; ${r.tiff} (${r.width}x${r.height}, downsample ${r.downsample}), ${r.overlay}`,
    );
  }
  if (v.slides) {
    const r = await inferSlides({
      dir: v.slides,
      out: v.out,
      shard: resolveShard(v.shard),
      infer: (path, outDir) =>
        Deno.mkdir(outDir, { recursive: true }).then(() =>
          inferSlide(path, cls, sam, cfg, outDir, { tile: cfg.data.synthetic.patch, quiet })
        ),
      log: (m) => console.error(m),
    });
    console.log(`${r.slides} slides${r.index ? `; ${r.index}` : " (this shard)"}`);
  } else if (v.data || !v.slide) {
    const dir = v.data ?? `${cfg.data.dir ?? `${v.run}/data`}/test`;
    const items = positives(await listSplit(dir));
    if (!items.length) throw new Error(`${dir}: no tumour patches (*_1.png) to evaluate`);
    const patches = await loadPatches(items, S);
    const cams = [];
    for (const p of patches) {
      // The 8-bit CAM weights the evaluate stage reads from cam/test/*_norm.png: with the float
      // map, prompt sampling can pick other points and the Dice drift from the run's summary.
      const c = await camOf(cls, cfg, p.rgb, S);
      cams.push({ ...c, norm: asStoredGray01(c.norm) });
    }
    const r = await segmentAndScore(sam, cfg, patches, cams, "infer", quiet);
    await Deno.mkdir(`${v.out}/masks`, { recursive: true });
    await Deno.mkdir(`${v.out}/overlays`, { recursive: true });
    for (let i = 0; i < patches.length; i++) {
      await writeMask(`${v.out}/masks/${items[i].id}_1.png`, r.preds[i], S);
      await writeFileAtomic(
        `${v.out}/overlays/${items[i].id}.png`,
        examplePanel(patches[i], cams[i], r.preds[i], undefined),
      );
    }
    const metrics = { ...r.final, cam: r.cam, data: dir, model: samPath };
    await writeFileAtomic(`${v.out}/metrics.json`, JSON.stringify(metrics, null, 2) + "\n");
    console.log(
      `${r.final.n} tumour patches: Dice ${r.final.dice.toFixed(4)}, IoU ${
        r.final.iou.toFixed(4)
      } ` +
        `(pooled ${r.final.pooledDice.toFixed(4)} / ${
          r.final.pooledIoU.toFixed(4)
        }); CAM masks Dice ${r.cam.dice.toFixed(4)}, IoU ${
          r.cam.iou.toFixed(4)
        } → ${v.out}/metrics.json`,
    );
  }
  sam.dispose();
  cls.dispose();
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
