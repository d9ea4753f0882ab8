/**
 * Where the time of a model case goes: runs one `bench/models.ts` case once to compile, then once
 * under `profileGpu` and prints milliseconds per kernel key, largest first, with each share of the
 * wall time of that same pass and what the kernel times cannot account for. Where the adapter's
 * per-pass timestamps fail the start-up probe (lavapipe, once a texture kernel has run), each
 * dispatch is replayed alone by the wall clock. `deno run -A bench/profile.ts --help` for flags.
 */
import { initGpu, profileGpu, sync } from "../engine/mod.ts";
import { modelCases } from "./models.ts";
import { numberFlag, runCommand, UsageError } from "../pipeline/cli/args.ts";

const USAGE = `usage: deno run -A bench/profile.ts FILTER [--top N] [--batch B]
  FILTER   profile the model cases whose names contain it (bench/models.ts: e.g. sam-encoder,
           resnet50-train-step b2, sam-block global)
  --top N  kernel rows printed per case (default 25)
  --batch B  ResNet batch of the 512² cases (default 2)`;

Deno.exit(
  await runCommand(
    {
      name: "bench/profile.ts",
      usage: USAGE,
      positionals: true,
      options: { top: { type: "string" }, batch: { type: "string" } },
    },
    Deno.args,
    async (flags, positionals) => {
      const top = numberFlag(flags, "top", { def: 25, min: 1, integer: true })!;
      const batch = numberFlag(flags, "batch", { def: 2, min: 1, integer: true })!;
      if (positionals.length !== 1) throw new UsageError("give one FILTER");
      await initGpu();
      const cases = modelCases(batch).filter((c) => c.name.includes(positionals[0]));
      if (!cases.length) throw new UsageError(`no model case matches "${positionals[0]}"`);
      for (const c of cases) {
        const run = await c.setup();
        await run.step();
        await sync();
        const p = await profileGpu(() => run.step());
        run.done();
        const count = p.kernels.reduce((s, r) => s + r.count, 0);
        console.log(
          `\n${c.name}: wall ${(p.wallMs / 1000).toFixed(2)} s; kernels ${
            (p.kernelMs / 1000).toFixed(2)
          } s in ${count} dispatches (${p.method}); ${p.note}`,
        );
        for (const r of p.kernels.slice(0, top)) {
          console.log(
            `${(r.ms / 1000).toFixed(3).padStart(8)} s ${
              (100 * r.ms / p.wallMs).toFixed(1).padStart(5)
            }% ${String(r.count).padStart(5)}×  ${r.kernel}`,
          );
        }
        const rest = p.wallMs - p.kernelMs;
        const flag = p.accounted ? "" : ": NOT ACCOUNTED FOR";
        console.log(
          rest >= 0
            ? `${(rest / 1000).toFixed(3).padStart(8)} s ${
              (100 * rest / p.wallMs).toFixed(1).padStart(5)
            }%         not kernel time (encoding, uploads, copies, readbacks)${flag}`
            : `kernel times exceed the wall by ${(-rest / 1000).toFixed(3)} s (${
              (-100 * rest / p.wallMs).toFixed(1)
            } %: each replayed dispatch pays its own launch)${flag}`,
        );
      }
    },
  ),
);
