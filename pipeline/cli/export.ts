/**
 * `deno task export`: the predicted tumour regions of a slide as ASAP XML and/or QuPath GeoJSON
 * (see pipeline/export/export.ts for the geometry, the defaults and their reasons).
 */
import { numberFlag, requiredFlag, runCommand, stringFlag, UsageError } from "./args.ts";
import {
  DEFAULT_MIN_AREA_UM2,
  DEFAULT_THRESHOLD,
  mapDownsample,
  polygonsFromMap,
  type ProbabilityInfo,
  readProbabilityTiff,
  writePolygonExport,
} from "../export/export.ts";
import { MAX_TRACE_PIXELS } from "../export/trace.ts";
import { Progress } from "../progress.ts";

const USAGE = `usage: deno task export (--run <dir> | --probability <tif>) --slide <slide>
         --format asap|geojson|both --out <file> [options]
  --run <dir>          folder written by \`deno task infer --slide\` (its probability.tif)
  --probability <tif>  the probability map itself
  --slide <slide>      the slide the map was made from (size, microns per pixel)
  --format             asap (ASAP XML), geojson (QuPath GeoJSON) or both
  --out <file>         output file; with both: <file>.xml and <file>.geojson
  --threshold P        tumour where probability > P (default ${DEFAULT_THRESHOLD})
  --min-area A         drop regions and fill holes under A µm² (default ${DEFAULT_MIN_AREA_UM2})
  --min-area-px A      the same in level-0 pixels² (for slides without a resolution)
  --tolerance T        simplification tolerance, level-0 pixels (default: half a map pixel)
  --downsample D       level-0 pixels per map pixel (default: from probability.json)
  --max-pixels N       largest map accepted (default ${MAX_TRACE_PIXELS}: 5 bytes/pixel)
  --quiet              no progress lines`;

export function main(argv: string[]): Promise<number> {
  return runCommand(
    {
      name: "export",
      usage: USAGE,
      options: {
        run: { type: "string" },
        probability: { type: "string" },
        slide: { type: "string" },
        format: { type: "string" },
        out: { type: "string" },
        threshold: { type: "string" },
        "min-area": { type: "string" },
        "min-area-px": { type: "string" },
        tolerance: { type: "string" },
        downsample: { type: "string" },
        "max-pixels": { type: "string" },
        quiet: { type: "boolean" },
      },
    },
    argv,
    async (flags) => {
      const run = stringFlag(flags, "run"), prob = stringFlag(flags, "probability");
      if (!run === !prob) throw new UsageError("give one of --run or --probability");
      const slidePath = requiredFlag(flags, "slide");
      const format = requiredFlag(flags, "format");
      if (!["asap", "geojson", "both"].includes(format)) {
        throw new UsageError(`--format must be asap, geojson or both, got "${format}"`);
      }
      const out = requiredFlag(flags, "out");
      const threshold = numberFlag(flags, "threshold", {
        def: DEFAULT_THRESHOLD,
        min: 0,
        max: 0.999,
      })!;
      const minAreaUm2 = numberFlag(flags, "min-area", { min: 0 });
      const minAreaPx = numberFlag(flags, "min-area-px", { min: 0 });
      if (minAreaUm2 !== undefined && minAreaPx !== undefined) {
        throw new UsageError("give --min-area or --min-area-px, not both");
      }
      const tolerance = numberFlag(flags, "tolerance", { min: 0 });
      const downsample = numberFlag(flags, "downsample", { min: 1e-6 });
      const maxPixels = numberFlag(flags, "max-pixels", {
        def: MAX_TRACE_PIXELS,
        min: 1,
        integer: true,
      })!;
      const quiet = !!flags.quiet;
      const probPath = prob ?? `${run}/probability.tif`;
      try {
        await Deno.stat(probPath);
      } catch {
        throw new Error(
          run
            ? `${run}: no probability.tif (make it with deno task infer --run <run> --slide <slide> --out ${run})`
            : `${probPath}: not found`,
        );
      }
      let info: ProbabilityInfo | null = null;
      const infoPath = probPath.replace(/\.tiff?$/i, ".json");
      try {
        info = JSON.parse(await Deno.readTextFile(infoPath));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) {
          throw new Error(`${infoPath}: ${(e as Error).message}`);
        }
      }
      const { openSlide } = await import("../wsi/slide.ts");
      const s = await openSlide(slidePath);
      const slide = { width0: s.levels[0].width, height0: s.levels[0].height, mpp: s.mpp };
      await s.close();
      const prog = new Progress("export: read map", 0, { unit: "row", enabled: !quiet });
      const map = await readProbabilityTiff(probPath, maxPixels, (done, total) => {
        prog.total = total;
        prog.set(done);
      });
      prog.finish();
      const ds = mapDownsample(map.width, map.height, slide, info, downsample, probPath);
      const e = polygonsFromMap({ ...map, downsample: ds }, slide, {
        threshold,
        minAreaUm2,
        minAreaPx,
        tolerance,
        maxPixels,
      });
      const base = out.replace(/\.(xml|geojson|json)$/i, "");
      const files = format === "both"
        ? { xml: `${base}.xml`, geojson: `${base}.geojson` }
        : format === "asap"
        ? { xml: out }
        : { geojson: out };
      await writePolygonExport(e, slide, files);
      console.log(
        `${e.regions.length} tumour regions, ${e.holes} holes, ${e.vertices} vertices ` +
          `(threshold ${threshold}, min area ${e.minAreaNote}, tolerance ${e.tolerance} px) → ` +
          Object.values(files).join(", "),
      );
    },
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
