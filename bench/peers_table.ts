/**
 * The peers table of BENCHMARKS.md from a `deno task bench --peers --json FILE` run: one line per
 * row that has peers, ours and each peer's time with the ratio ours ÷ peer, a wrong peer as
 * "wrong" with its first wrong index and largest error (never a time), the load when the row was
 * measured; under it, what each peer ran on (library, BLAS, threads, adapter) as the run recorded.
 */
import { runCommand, UsageError } from "../pipeline/cli/args.ts";
import type { BenchRow } from "./registry.ts";
import type { PeerResult } from "./peers/onnx_peers.ts";

const USAGE = `usage: deno run -A bench/peers_table.ts FILE.json
  FILE.json  rows written by deno task bench --peers --json FILE.json
Prints the Markdown table of the rows with peers and the runtimes the peers recorded.`;

/** Peer columns, in order, with their headings. */
const COLUMNS: [string, string][] = [
  ["pytorch-cpu", "PyTorch CPU"],
  ["ort-web-webgpu", "ORT-web WebGPU"],
  ["ort-web-webgpu-per-head", "ORT-web WebGPU, per-head export"],
  ["ort-cpu", "ORT CPU"],
  ["tfjs-webgpu", "TF.js WebGPU"],
];

const ms = (x: number) =>
  x >= 100 ? Math.round(x).toLocaleString("en").replace(/,/g, " ") : x.toPrecision(3);

/** One peer's cell: time and ratio, or why there is none. */
export function peerCell(p: PeerResult | undefined, ours: number): string {
  if (!p) return "—";
  if (p.ok && p.ms !== null) {
    const err = p.maxAbsErr !== undefined ? `, max err ${p.maxAbsErr.toExponential(1)}` : "";
    return `${ms(p.ms)} (${(ours / p.ms).toFixed(2)}×${err})`;
  }
  if (p.firstWrongIndex !== undefined && p.firstWrongIndex !== null) {
    return `**wrong**: first wrong at flat index ${p.firstWrongIndex}, max err ${
      (p.maxAbsErr ?? NaN).toPrecision(3)
    }`;
  }
  return `failed: ${(p.error ?? "no result").replace(/\|/g, "/").slice(0, 160)}`;
}

/** The Markdown table and the runtime lines for `rows`. */
export function peersTable(rows: BenchRow[]): string {
  const withPeers = rows.filter((r) => r.peers && Number.isFinite(r.ms));
  const cols = COLUMNS.filter(([k]) => withPeers.some((r) => r.peers![k]));
  const head = ["work (row name)", "ours ms", ...cols.map(([, h]) => h), "load"];
  const body = withPeers.map((r) => [
    `${r.name} [${r.shape.join(", ")}]`,
    ms(r.ms),
    ...cols.map(([k]) => peerCell(r.peers![k], r.ms)),
    r.load ?? "?",
  ]);
  const line = (c: string[]) => `| ${c.join(" | ")} |`;
  const runtimes = new Map<string, Set<string>>();
  for (const r of withPeers) {
    for (const [k, p] of Object.entries(r.peers!)) {
      if (!runtimes.has(k)) runtimes.set(k, new Set());
      runtimes.get(k)!.add(p.runtime);
    }
  }
  return [
    line(head),
    line(head.map(() => "---")),
    ...body.map(line),
    "",
    "Ratios are ours ÷ peer (below 1: ours is faster). Peers ran on:",
    ...[...runtimes].map(([k, s]) => `- ${k}: ${[...s].join("; ")}`),
  ].join("\n");
}

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      { name: "bench/peers_table.ts", usage: USAGE, positionals: true, options: {} },
      Deno.args,
      async (_flags, positionals) => {
        if (positionals.length !== 1) throw new UsageError("give one FILE.json");
        const file = positionals[0];
        let rows: BenchRow[];
        try {
          rows = JSON.parse(await Deno.readTextFile(file));
        } catch (e) {
          throw new UsageError(`${file}: not a bench JSON file (${(e as Error).message})`);
        }
        if (!Array.isArray(rows)) throw new UsageError(`${file}: expected an array of rows`);
        console.log(peersTable(rows));
      },
    ),
  );
}
