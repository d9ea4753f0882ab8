/**
 * Before/after of a model case in ONE process, interleaved: this checkout's `bench/models.ts` case
 * (B) against the same case of another checkout (A, `--base DIR`, e.g. `git archive <commit>`
 * unpacked), each with its own engine and device, alternating A, B, A, B, ... after one warm-up
 * step each; medians of the wall time and of this process's CPU time (all threads: the host side
 * and the software rasteriser's workers; far less disturbed by other processes than the wall
 * clock), the ratios and the load average before and after. On a shared machine the interleaving
 * is what makes the ratio mean something (both sides see the same load).
 *
 *   mkdir -p /tmp/base && git archive main | tar -x -C /tmp/base
 *   deno run -A bench/train_step_ab.ts --base /tmp/base [--case "resnet50-train-step b2 @256"]
 *     [--runs 5]
 */
import { numberFlag, requiredFlag, runCommand, stringFlag } from "../pipeline/cli/args.ts";
import { loadavg, processCpuMs } from "./registry.ts";
import { importFromCheckout } from "./checkout.ts";

const USAGE = `usage: deno run -A bench/train_step_ab.ts --base DIR [--case NAME] [--runs N]
  --base DIR   another checkout of this repository (the "before"; its bench/models.ts is loaded)
  --case NAME  model case (bench/models.ts), default "resnet50-train-step b2 @256"
  --runs N     timed steps per side, interleaved (default 5)`;

interface Side {
  name: string;
  step: () => void | Promise<void>;
  sync: () => Promise<void>;
  done: () => void;
  ms: number[];
  cpu: number[];
}

async function side(name: string, root: string, caseName: string): Promise<Side> {
  const engine = await importFromCheckout(root, "engine/mod.ts");
  const models = await importFromCheckout(root, "bench/models.ts");
  await engine.initGpu();
  const c = models.modelCases(2).find((k: { name: string }) => k.name === caseName);
  if (!c) throw new Error(`${name}: no model case named "${caseName}" in ${root}`);
  const run = await c.setup();
  return { name, step: run.step, sync: engine.sync, done: run.done, ms: [], cpu: [] };
}

async function timed(s: Side): Promise<void> {
  const c0 = processCpuMs(), t0 = performance.now();
  await s.step();
  await s.sync();
  s.ms.push(performance.now() - t0);
  s.cpu.push(processCpuMs() - c0);
}

const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

Deno.exit(
  await runCommand(
    {
      name: "bench/train_step_ab.ts",
      usage: USAGE,
      options: { base: { type: "string" }, case: { type: "string" }, runs: { type: "string" } },
    },
    Deno.args,
    async (flags) => {
      const base = requiredFlag(flags, "base");
      const caseName = stringFlag(flags, "case") ?? "resnet50-train-step b2 @256";
      const runs = numberFlag(flags, "runs", { def: 5, min: 1, integer: true })!;
      const here = new URL("..", import.meta.url).pathname;
      const load0 = loadavg();
      const a = await side("before", base, caseName);
      const b = await side("after", here, caseName);
      for (const s of [a, b]) await timed(s); // warm-up: pipelines compiled
      for (const s of [a, b]) s.ms.length = s.cpu.length = 0;
      for (let r = 0; r < runs; r++) {
        for (const s of [a, b]) {
          await timed(s);
          console.log(
            `${s.name} run ${r + 1}/${runs}: wall ${s.ms.at(-1)!.toFixed(0)} ms, cpu ${
              s.cpu.at(-1)!.toFixed(0)
            } ms (load ${loadavg()})`,
          );
        }
      }
      a.done();
      b.done();
      const ma = median(a.ms), mb = median(b.ms), ca = median(a.cpu), cb = median(b.cpu);
      console.log(
        `${caseName} (medians of ${runs}, interleaved; load ${load0} → ${loadavg()}):\n` +
          `  wall: before ${ma.toFixed(0)} ms, after ${mb.toFixed(0)} ms: ${
            (ma / mb).toFixed(2)
          }×\n` +
          `  cpu:  before ${ca.toFixed(0)} ms, after ${cb.toFixed(0)} ms: ${(ca / cb).toFixed(2)}×`,
      );
    },
  ),
);
