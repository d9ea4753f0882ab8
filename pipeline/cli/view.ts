/**
 * `deno task view [--run D] [--slides FILE|DIR ...] [--annotations DIR] [--predictions DIR ...]
 *  [--sam-checkpoint X.pth] [--port 8765] [--host 127.0.0.1]`
 *
 * A local web viewer (pipeline/viewer/): deep-zoom slides with overlays, the run's patch gallery,
 * click-to-segment and the training dashboard. Serves only what is named here.
 */
import { numberFlag, runCommand, stringFlag, UsageError } from "./args.ts";
import { startViewer } from "../viewer/server.ts";

const USAGE = `usage: deno task view [--run D] [--slides FILE|DIR ...] [--annotations DIR]
                      [--predictions DIR ...] [--sam-checkpoint X.pth [--sam-model vit_b]]
                      [--port 8765] [--host 127.0.0.1]

  --run D             a run folder: gallery, dashboard, the final SAM, the run's slides
                      (its manifest's), the patch grid, and predictions in D/infer/<slide stem>/
  --slides P          a slide file or a folder of slides (repeatable; default: the run's slides)
  --annotations DIR   ASAP XML named <slide stem>.xml (default: the manifest's, or beside the slide)
  --predictions DIR   infer --slide output: DIR/<slide stem>/ or DIR itself when named like the
                      slide, holding probability.tif and tumour.geojson (repeatable)
  --sam-checkpoint X  segment with this SAM checkpoint instead of the run's final SAM
  --sam-model NAME    its config: vit_b (default), vit_l, vit_h, or a JSON file of one
  --port N            port (default 8765; 0 picks a free one)
  --host H            address to bind (default 127.0.0.1; anything else is reachable by others)`;

export async function main(argv: string[]): Promise<number> {
  return await runCommand(
    {
      name: "view",
      usage: USAGE,
      options: {
        run: { type: "string" },
        slides: { type: "string", multiple: true },
        annotations: { type: "string" },
        predictions: { type: "string", multiple: true },
        "sam-checkpoint": { type: "string" },
        "sam-model": { type: "string" },
        port: { type: "string" },
        host: { type: "string" },
      },
    },
    argv,
    async (flags) => {
      const slides = (flags.slides ?? []) as string[];
      const run = stringFlag(flags, "run");
      const samCheckpoint = stringFlag(flags, "sam-checkpoint");
      if (!run && !slides.length && !samCheckpoint) {
        throw new UsageError("give --run, --slides or --sam-checkpoint (nothing to show)");
      }
      const host = stringFlag(flags, "host") ?? "127.0.0.1";
      if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1") {
        console.error(
          `view: warning: binding ${host}: anyone who can reach this address can read the slides ` +
            `and the run named here (no authentication). Use the default 127.0.0.1 and an SSH ` +
            `tunnel on shared machines.`,
        );
      }
      const v = await startViewer({
        run,
        slides,
        annotations: stringFlag(flags, "annotations"),
        predictions: (flags.predictions ?? []) as string[],
        samCheckpoint,
        samModel: stringFlag(flags, "sam-model"),
        port: numberFlag(flags, "port", { def: 8765, min: 0, max: 65535, integer: true }),
        host,
      });
      const n = v.catalog.slides.size;
      console.log(
        `view: ${n} slide${n === 1 ? "" : "s"}${
          v.catalog.run ? `, run ${v.catalog.run.dir}` : ""
        }; open ${v.url}  (Ctrl-C to stop)`,
      );
      await new Promise<void>((resolve) => {
        Deno.addSignalListener("SIGINT", () => resolve());
      });
      await v.close();
      return 0;
    },
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
