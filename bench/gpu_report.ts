/**
 * The adapter report of bench/gpu_check.sh: adapter, backend, features and limits, what the timing
 * probe found about its timestamps, and the physical ceiling bench rows are held to. Exits 3 on a
 * software adapter when `--require-gpu` is given. `deno run -A bench/gpu_report.ts --help`.
 */
import { describeGpu, gpu, initGpu, timestampProbe } from "../engine/mod.ts";
import { adapterCeiling } from "./ceiling.ts";
import { runCommand } from "../pipeline/cli/args.ts";

Deno.exit(
  await runCommand(
    {
      name: "bench/gpu_report.ts",
      usage: "usage: deno run -A bench/gpu_report.ts [--require-gpu]\n" +
        "  --require-gpu  exit 3 when the adapter is a software one (llvmpipe, SwiftShader)",
      options: { "require-gpu": { type: "boolean" } },
    },
    Deno.args,
    async (flags) => {
      await initGpu();
      const g = gpu();
      const probe = await timestampProbe();
      const ceiling = await adapterCeiling();
      console.log(`adapter: ${describeGpu()}`);
      console.log(`software: ${g.isSoftware}  backend: ${g.backend}  fallback: ${g.isFallback}`);
      console.log(`features: ${JSON.stringify(g.features)}`);
      console.log(`limits: ${JSON.stringify(g.limits)}`);
      console.log(
        `timestamps: bracketing ${probe.bracket ? "reliable" : "UNRELIABLE"}, per pass ${
          probe.perPass ? "reliable" : "UNRELIABLE"
        } (${probe.detail})`,
      );
      console.log(`probe FMA kernel: ${probe.fmaGflops.toFixed(1)} GFLOP/s (wall clock)`);
      console.log(`ceiling: ${ceiling.gflops.toFixed(0)} GFLOP/s (${ceiling.source})`);
      if (flags["require-gpu"] && g.isSoftware) {
        console.error("gpu_report: this is a software adapter, not a GPU");
        return 3;
      }
      return 0;
    },
  ),
);
