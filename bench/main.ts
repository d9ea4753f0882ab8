/**
 * Benchmark runner: `deno task bench [--filter SUBSTRING] [--json FILE] [--peers] [--runs N]`.
 * Runs every registered group (matmul, attention, conv, models, wsi), prints a table
 * with the adapter, and optionally writes the rows as JSON.
 */
import { describeGpu, initGpu } from "../engine/mod.ts";
import { type BenchContext, benchGroups, type BenchRow, registerBench } from "./registry.ts";
import { formatTable } from "./table.ts";
import "./kernels.ts";
import "./attention.ts";
import { benchWsi } from "./wsi.ts";
import { benchConv } from "./conv.ts";
import { benchModels } from "./models.ts";

function parseArgs(
  args: string[],
): { filter: string; json: string | null; peers: boolean; runs: number } {
  const out = { filter: "", json: null as string | null, peers: false, runs: 5 };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const val = () => {
      const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : args[++i];
      if (v === undefined) throw new Error(`bench: ${a} needs a value`);
      return v;
    };
    if (a.startsWith("--filter")) out.filter = val();
    else if (a.startsWith("--json")) out.json = val();
    else if (a === "--peers") out.peers = true;
    else if (a.startsWith("--runs")) out.runs = Math.max(1, Number(val()) | 0);
    else {throw new Error(
        `bench: unknown argument ${a} (use --filter S, --json FILE, --peers, --runs N)`,
      );}
  }
  return out;
}

// Groups: matmul (kernels.ts) and attention register themselves; the others are registered here.
registerBench({ name: "wsi", run: () => benchWsi() });
registerBench({
  name: "conv",
  filterable: true,
  run: (c: BenchContext) => benchConv({ filter: c.filter, tfjs: c.peers }),
});
registerBench({
  name: "models",
  filterable: true,
  run: (c: BenchContext) => benchModels({ filter: c.filter, peers: c.peers, runs: c.runs }),
});

if (import.meta.main) {
  const opts = parseArgs(Deno.args);
  const g = await initGpu();
  const adapter = g.adapterName;
  console.log(`adapter: ${describeGpu()}`);
  console.log(
    `date: ${new Date().toISOString().slice(0, 10)}  runs: ${opts.runs}  peers: ${opts.peers}`,
  );
  const rows: BenchRow[] = [];
  for (const group of benchGroups()) {
    const named = !opts.filter || group.name.includes(opts.filter);
    if (!named && !group.filterable) continue;
    console.error(`[${group.name}]`);
    const got = await group.run({
      filter: named ? "" : opts.filter,
      peers: opts.peers,
      runs: opts.runs,
      adapter,
    });
    rows.push(...(named ? got : got.filter((r) => r.name.includes(opts.filter))));
  }
  console.log(formatTable(rows));
  if (opts.json) {
    const plain = rows.map(({ name, shape, ms, gflops, gbps, adapter }) => ({
      name,
      shape,
      ms,
      gflops,
      gbps,
      adapter,
    }));
    await Deno.writeTextFile(opts.json, JSON.stringify(plain, null, 2) + "\n");
    console.log(`wrote ${rows.length} rows to ${opts.json}`);
  }
}
