/** Plain-text table of bench rows. */
import type { BenchRow } from "./registry.ts";

const fmt = (x: number | null, d = 1) => x === null || !Number.isFinite(x) ? "-" : x.toFixed(d);

export function formatTable(rows: BenchRow[]): string {
  const head = ["name", "shape", "ms", "GFLOP/s", "GB/s", "notes"];
  const body = rows.map((
    r,
  ) => [
    r.name,
    `[${r.shape.join(", ")}]`,
    fmt(r.ms),
    fmt(r.gflops, 2),
    fmt(r.gbps, 2),
    r.notes ?? "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i >= 2 && i <= 4 ? c.padStart(widths[i]) : c.padEnd(widths[i])).join("  ")
      .trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}
