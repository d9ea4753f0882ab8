/**
 * Benchmark runner: `deno task bench [--filter SUBSTRING] [--json FILE] [--peers] [--runs N]`.
 * Runs every registered group (bench/kernels.ts, and bench/wsi.ts when present), prints a table
 * with the adapter, and optionally writes the rows as JSON.
 */
import { describeGpu, initGpu } from "../engine/mod.ts";
import { type BenchContext, benchGroups, type BenchRow, registerBench } from "./registry.ts";
import { formatTable } from "./table.ts";
import "./kernels.ts";

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

/**
 * Bench modules written alongside this runner, loaded when present: file, export, whether it
 * filters its own rows, and how to call it.
 */
const OPTIONAL: {
  file: string;
  fn: string;
  filterable: boolean;
  call: (f: (...a: unknown[]) => Promise<BenchRow[]>, ctx: BenchContext) => Promise<BenchRow[]>;
}[] = [
  { file: "wsi.ts", fn: "benchWsi", filterable: false, call: (f) => f() },
  {
    file: "conv.ts",
    fn: "benchConv",
    filterable: true,
    call: (f, c) => f({ filter: c.filter, tfjs: c.peers }),
  },
];

async function loadOptional(): Promise<void> {
  for (const o of OPTIONAL) {
    const url = new URL(`./${o.file}`, import.meta.url);
    try {
      await Deno.stat(url);
    } catch {
      console.error(`bench/${o.file} not present: skipping it`);
      continue;
    }
    const mod = await import(url.href);
    const f = mod[o.fn];
    if (typeof f !== "function") {
      console.error(`bench/${o.file} has no ${o.fn} export: skipping it`);
      continue;
    }
    registerBench({
      name: o.file.replace(/\.ts$/, ""),
      filterable: o.filterable,
      run: (ctx) => o.call(f, ctx),
    });
  }
}

if (import.meta.main) {
  const opts = parseArgs(Deno.args);
  const g = await initGpu();
  const adapter = g.adapterName;
  await loadOptional();
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
