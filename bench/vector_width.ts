/**
 * LP_NATIVE_VECTOR_WIDTH study: runs bench/main.ts rows (every kernel group by default) once per
 * round at llvmpipe's 256-bit default and at 512 bits (AVX-512 CPUs), alternating the two so load
 * drifts over both alike, and prints per row the best time at each width and their ratio, with
 * the geometric mean per group. Each width reads its own autotune cache (the adapter description
 * names the width), so a tuned run compares each width's best tiles: run `deno task tune` once
 * per width first (`LP_NATIVE_VECTOR_WIDTH=512 deno task tune`).
 *
 *   deno run -A bench/vector_width.ts [--filter S] [--runs N] [--rounds R]
 */
import { numberFlag, runCommand, stringFlag } from "../pipeline/cli/args.ts";
import { type BenchRow, loadavg } from "./registry.ts";

const USAGE = `usage: deno run -A bench/vector_width.ts [--filter S] [--runs N] [--rounds R]
  --filter S   bench/main.ts rows (default "matmul|conv|softmax|attention")
  --runs N     timed runs per figure in each bench run (default 3)
  --rounds R   bench runs per width, alternating 256, 512, 256, ... (default 2)`;

const WIDTHS = [256, 512] as const;

async function benchOnce(width: number, filter: string, runs: number): Promise<BenchRow[]> {
  const json = await Deno.makeTempFile({ prefix: `vw${width}-`, suffix: ".json" });
  try {
    const cmd = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "bench/main.ts",
        "--filter",
        filter,
        "--runs",
        String(runs),
        "--json",
        json,
      ],
      env: { LP_NATIVE_VECTOR_WIDTH: String(width) },
      stdout: "inherit",
      stderr: "inherit",
      cwd: new URL("..", import.meta.url).pathname,
    });
    const { code } = await cmd.output();
    const text = await Deno.readTextFile(json);
    if (!text.trim()) throw new Error(`bench/main.ts at ${width} bits exited ${code}, no rows`);
    return JSON.parse(text) as BenchRow[];
  } finally {
    await Deno.remove(json).catch(() => {});
  }
}

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "vector_width",
        usage: USAGE,
        options: {
          filter: { type: "string" },
          runs: { type: "string" },
          rounds: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const filter = stringFlag(flags, "filter") ?? "matmul|conv|softmax|attention";
        const runs = numberFlag(flags, "runs", { def: 3, min: 1, integer: true })!;
        const rounds = numberFlag(flags, "rounds", { def: 2, min: 1, integer: true })!;
        const best = new Map<string, Map<number, number>>();
        const loads: string[] = [];
        for (let r = 0; r < rounds; r++) {
          for (const w of WIDTHS) {
            console.error(`== round ${r + 1}/${rounds}, ${w} bits, load ${loadavg()}`);
            loads.push(loadavg());
            for (const row of await benchOnce(w, filter, runs)) {
              if (row.name.startsWith("tfjs") || row.name.startsWith("torch")) continue;
              const key = `${row.name} [${row.shape.join(", ")}]`;
              const m = best.get(key) ?? new Map<number, number>();
              m.set(w, Math.min(m.get(w) ?? Infinity, row.ms));
              best.set(key, m);
            }
          }
        }
        console.log(
          `\nbest of ${rounds} bench runs per width; load at each start: ${loads.join(" | ")}`,
        );
        console.log("| row | 256 bits ms | 512 bits ms | 512 ÷ 256 |");
        console.log("| --- | --- | --- | --- |");
        const byGroup = new Map<string, number[]>();
        for (const [key, m] of best) {
          const a = m.get(256), b = m.get(512);
          const ratio = a && b ? b / a : NaN;
          if (Number.isFinite(ratio)) {
            const g = key.split(/[/ ]/)[0];
            byGroup.set(g, [...(byGroup.get(g) ?? []), ratio]);
          }
          console.log(
            `| ${key} | ${a?.toFixed(1) ?? "—"} | ${b?.toFixed(1) ?? "—"} | ${
              Number.isFinite(ratio) ? ratio.toFixed(2) : "—"
            } |`,
          );
        }
        for (const [g, rs] of byGroup) {
          const gm = Math.exp(rs.reduce((s, x) => s + Math.log(x), 0) / rs.length);
          console.log(`${g}: geometric mean 512 ÷ 256 = ${gm.toFixed(2)} over ${rs.length} rows`);
        }
        return 0;
      },
    ),
  );
}
