/**
 * Benchmark runner: every registered group (matmul, attention, conv, models, wsi), a table with
 * the adapter, the timing method and the physical ceiling, optionally the rows as JSON.
 * `deno task bench --help` lists the flags. A row above the adapter's physical ceiling
 * (bench/ceiling.ts) is refused: it is left out, its kernel named on stderr, and the run exits 1.
 */
import { describeGpu, initGpu, timestampProbe } from "../engine/mod.ts";
import {
  type BenchContext,
  benchGroups,
  type BenchRow,
  loadavg,
  matchesFilter,
  registerBench,
} from "./registry.ts";
import { formatTable } from "./table.ts";
import "./kernels.ts";
import "./attention.ts";
import "./softmax.ts";
import "./conv_fused.ts";
import { benchWsi } from "./wsi.ts";
import { benchConv } from "./conv.ts";
import { benchModels } from "./models.ts";
import { adapterCeiling, withinCeiling } from "./ceiling.ts";
import { describeTorch, torchInfo } from "./peers/launcher.ts";
import { numberFlag, runCommand, stringFlag } from "../pipeline/cli/args.ts";
import { writeFileAtomic } from "../engine/io/atomic.ts";

const USAGE = `usage: deno task bench [--filter S] [--peers] [--json FILE] [--runs N]
  --filter S   only rows whose names contain S, or one of A|B|... (groups: matmul, attention,
               softmax, conv, models, fused, wsi; rows: e.g. sam-encoder, resnet50-forward b2,
               resnet50-train-step b2, conv3x3, softmax-past-binding-limit, matmul-peers)
  --peers      run the peers on the same work in the same run, outputs checked: PyTorch CPU
               (BLAS and threads named; a reference-BLAS torch is refused), ONNX Runtime Web with
               its WebGPU EP, ONNX Runtime's CPU EP, TF.js-WebGPU
  --json FILE  write the rows (with their peers, timing notes and load) as a JSON array
  --runs N     timed runs per figure, median reported (default 5)
Environment for --peers: EPSAM_CODE (where segment_anything_modeling is, default /tmp/epsam_code),
  PEER_TIMEOUT_MIN (an ONNX Runtime peer process is killed past it, default 30),
  PEER_MAX_RSS_MIB (or past this resident memory, default 8192).
Timing: GPU timestamps only where a start-up probe finds them reliable and they agree with the
wall clock of the same batch within 2x; otherwise the wall clock (rows say which).`;

// Groups: matmul (kernels.ts) and attention register themselves; the others are registered here.
registerBench({ name: "wsi", run: () => benchWsi() });
registerBench({
  name: "conv",
  filterable: true,
  run: (c: BenchContext) => benchConv({ filter: c.filter, tfjs: c.peers, onnx: c.peers }),
});
registerBench({
  name: "models",
  filterable: true,
  run: (c: BenchContext) => benchModels({ filter: c.filter, peers: c.peers, runs: c.runs }),
});

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench",
        usage: USAGE,
        options: {
          filter: { type: "string" },
          peers: { type: "boolean" },
          json: { type: "string" },
          runs: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const filter = stringFlag(flags, "filter") ?? "";
        const json = stringFlag(flags, "json");
        const peers = !!flags.peers;
        const runs = numberFlag(flags, "runs", { def: 5, min: 1, integer: true })!;
        const started = performance.now();
        const g = await initGpu();
        const adapter = g.adapterName;
        const probe = await timestampProbe();
        const ceiling = await adapterCeiling();
        console.log(`adapter: ${describeGpu()}`);
        console.log(
          `timestamps: ${
            probe.bracket ? "reliable around batches" : "unreliable: wall clock throughout"
          }, ${probe.perPass ? "reliable" : "unreliable"} per pass (${probe.detail})`,
        );
        console.log(`ceiling: ${ceiling.gflops.toFixed(0)} GFLOP/s (${ceiling.source})`);
        if (peers) {
          const t = await torchInfo();
          console.log(
            `pytorch peer: ${
              t
                ? `${describeTorch(t)} (${t.blasLibs.join(", ")})${
                  t.refused ? `: ${t.refused}` : ""
                }`
                : "not available"
            }`,
          );
        }
        console.log(
          `date: ${new Date().toISOString()}  runs: ${runs}  peers: ${peers}  load: ${loadavg()}`,
        );
        const rows: BenchRow[] = [];
        const refused: string[] = [];
        for (const group of benchGroups()) {
          const named = matchesFilter(group.name, filter);
          if (!named && !group.filterable) continue;
          console.error(`[${group.name}]`);
          const got = await group.run({ filter: named ? "" : filter, peers, runs, adapter });
          const checked = await withinCeiling(
            named ? got : got.filter((r) => matchesFilter(r.name, filter)),
          );
          rows.push(...checked.rows);
          refused.push(...checked.refused);
          for (const m of checked.refused) console.error(m);
        }
        console.log(formatTable(rows));
        const seconds = (performance.now() - started) / 1000;
        console.log(`run time ${seconds.toFixed(0)} s; load at the end ${loadavg()}`);
        if (json) {
          await writeFileAtomic(json, JSON.stringify(rows, null, 2) + "\n");
          console.log(`wrote ${rows.length} rows to ${json}`);
        }
        if (refused.length) {
          console.error(`bench: ${refused.length} row(s) refused as impossible (see above)`);
          return 1;
        }
        return 0;
      },
    ),
  );
}
