/**
 * `deno task fuzz --parser P --runs N [--seed S]`: fuzzes one parser (or `all`) with N generated
 * and mutated inputs, each in a child process bounded in time and memory (see runner.ts), and
 * reports inputs tried, accepted, refused by the parser's own error (by kind), crashes, hangs,
 * memory blow-ups, worst time and worst memory. Offending inputs are saved under --out.
 * `--replay FILE` parses one saved input in this process and prints the outcome.
 */
import { type Flags, numberFlag, runCommand, UsageError } from "../../pipeline/cli/args.ts";
import type { FuzzTarget } from "./target.ts";
import {
  discoverTargets,
  formatMarkdown,
  formatReport,
  type FuzzReport,
  fuzzTarget,
} from "./runner.ts";

const USAGE = `usage: deno task fuzz --parser P|all --runs N [--seed S] [--time-ms T] [--mem-mib M]
                      [--out DIR] [--json FILE] [--markdown FILE]
       deno task fuzz --parser P --replay FILE

  --parser   a target in tests/fuzz/targets/ (by its name), or all
  --runs     inputs per parser (default 10000)
  --seed     fast-check seed (default 20261125)
  --time-ms  per-input time bound; past it the input is a hang (default 5000)
  --mem-mib  child's resident-memory bound; past it the input is a blow-up (default 1024)
  --out      where hang/crash/blow-up inputs are saved (default runs/fuzz)
  --json     also write the reports as JSON
  --markdown also write them as the Markdown tables of RELIABILITY.md
  --replay   parse one saved input here and print what the parser did`;

/** A whole-number flag of at least `min` (a usage error naming the flag otherwise). */
const intFlag = (f: Flags, name: string, min: number, def: number): number =>
  numberFlag(f, name, { def, min, integer: true })!;

Deno.exit(
  await runCommand(
    {
      name: "fuzz",
      usage: USAGE,
      options: {
        parser: { type: "string" },
        runs: { type: "string" },
        seed: { type: "string" },
        "time-ms": { type: "string" },
        "mem-mib": { type: "string" },
        out: { type: "string" },
        json: { type: "string" },
        markdown: { type: "string" },
        replay: { type: "string" },
      },
    },
    Deno.args,
    async (f) => {
      const targets = await discoverTargets();
      const parser = f.parser as string | undefined;
      if (!parser) {
        throw new UsageError(
          `--parser is required (one of ${[...targets.keys()].join(", ")}, all)`,
        );
      }
      if (parser !== "all" && !targets.has(parser)) {
        throw new UsageError(
          `--parser: no target "${parser}" (have ${[...targets.keys()].join(", ")}, all)`,
        );
      }
      if (f.replay) {
        if (parser === "all") throw new UsageError("--replay needs one --parser");
        const t = (await import(`file://${targets.get(parser)}`)).default as FuzzTarget;
        const input = await Deno.readFile(f.replay as string);
        const t0 = performance.now();
        try {
          await t.parse(input);
          console.log(`accepted (${(performance.now() - t0).toFixed(1)} ms)`);
        } catch (e) {
          console.log(`${t.isParserError(e) ? "refused" : "CRASH"}: ${(e as Error)?.stack ?? e}`);
        }
        return;
      }
      const opts = {
        runs: intFlag(f, "runs", 1, 10_000),
        seed: intFlag(f, "seed", 0, 20261125),
        timeMs: intFlag(f, "time-ms", 1, 5000),
        memMiB: intFlag(f, "mem-mib", 128, 1024),
        outDir: (f.out as string | undefined) ?? "runs/fuzz",
      };
      const names = parser === "all" ? [...targets.keys()] : [parser];
      const reports: FuzzReport[] = [];
      let bad = 0;
      for (const name of names) {
        const t0 = performance.now();
        const r = await fuzzTarget(targets.get(name)!, {
          ...opts,
          onProgress: (done) => {
            const s = (performance.now() - t0) / 1000;
            const eta = (s / done) * (opts.runs - done);
            console.error(
              `fuzz ${name}: ${done}/${opts.runs} inputs, ${(done / s).toFixed(0)}/s, ETA ${
                eta.toFixed(0)
              } s`,
            );
          },
        });
        reports.push(r);
        bad += r.findings.length;
        console.log(formatReport(r));
      }
      if (f.json) {
        await Deno.writeTextFile(f.json as string, JSON.stringify(reports, null, 2) + "\n");
      }
      if (f.markdown) await Deno.writeTextFile(f.markdown as string, formatMarkdown(reports));
      return bad ? 1 : 0;
    },
  ),
);
