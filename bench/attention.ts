/**
 * Fused attention throughput at SAM ViT-B's shapes: 14×14 windowed attention (G = 12 heads × 25
 * windows, N = 196, d = 64) and 64×64 global attention (G = 12, N = 4096, d = 64), forward and
 * backward, timed by bench/timing.ts (timestamps checked against the wall clock). FLOPs count the two matmuls (4·G·N²·d) forward
 * and the five recomputed/gradient matmuls (10·G·N²·d) backward; bytes are the tensors read and
 * written once. The global forward also checks that peak memory stays a few times the inputs (the
 * score matrix would be 805 MB). Run: deno run -A bench/attention.ts [--quick]
 */
import {
  describeGpu,
  F,
  gpu,
  initGpu,
  memoryStats,
  pool,
  sync,
  type Tensor,
  tensor,
} from "../engine/mod.ts";
import { flashAttentionBackwardRaw, type FlashAttentionOptions } from "../engine/ops/attention.ts";

import { type BenchRow, registerBench } from "./registry.ts";
import { reportRefused, withinCeiling } from "./ceiling.ts";
import { timeKernel } from "./timing.ts";
import { runCommand } from "../pipeline/cli/args.ts";

export type { BenchRow };

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

async function benchShape(
  name: string,
  g: number,
  n: number,
  d: number,
  rows: BenchRow[],
  f16 = false,
): Promise<void> {
  const adapter = gpu().adapterName;
  const shape = [g, n, d];
  const [q, k, v] = [1, 2, 3].map((s) => tensor(rand(g * n * d, s), shape));
  const opts: FlashAttentionOptions = { scale: 1 / Math.sqrt(d), f16 };
  const io = g * n * d * 4;
  pool.resetPeak();
  const base = memoryStats().liveBytes;
  // Warm-up compiles the pipelines.
  let r = F.flashAttentionRaw(q, k, v, opts);
  await sync();
  const peak = memoryStats().peakBytes - base;
  r.out.dispose();
  r.lse.dispose();
  const fwd = await timeKernel(() => {
    const o = F.flashAttentionRaw(q, k, v, opts);
    return { dispose: () => (o.out.dispose(), o.lse.dispose()) };
  }, 3);
  r = F.flashAttentionRaw(q, k, v, opts);
  const flopF = 4 * g * n * n * d;
  rows.push({
    name: `${name} forward${f16 ? " f16-tiles" : ""}`,
    shape,
    ms: fwd.ms,
    gflops: flopF / fwd.ms / 1e6,
    gbps: (4 * io) / fwd.ms / 1e6,
    adapter,
    notes: `${fwd.note}; peak alloc ${(peak / io).toFixed(2)}× one input`,
  });
  if (!f16) {
    const dO = tensor(rand(g * n * d, 4), shape);
    const run = () => {
      const b = flashAttentionBackwardRaw(q, k, v, r.out, r.lse, dO, opts);
      return { dispose: () => [b.dq, b.dk!, b.dv!].forEach((t: Tensor) => t.dispose()) };
    };
    const bwd = await timeKernel(run, 3);
    rows.push({
      name: `${name} backward`,
      shape,
      ms: bwd.ms,
      gflops: (10 * g * n * n * d) / bwd.ms / 1e6,
      gbps: (8 * io) / bwd.ms / 1e6,
      adapter,
      notes: bwd.note,
    });
    dO.dispose();
  }
  for (const t of [q, k, v, r.out, r.lse]) t.dispose();
}

/** Forward and backward at SAM ViT-B's window and global shapes (and f16-staged forward when available). */
async function benchAttention(opts: { quick?: boolean } = {}): Promise<BenchRow[]> {
  await initGpu();
  const rows: BenchRow[] = [];
  await benchShape("attention window 14x14", 12 * 25, 196, 64, rows);
  if (gpu().features.f16) await benchShape("attention window 14x14", 12 * 25, 196, 64, rows, true);
  if (!opts.quick) await benchShape("attention global 64x64", 12, 4096, 64, rows);
  return rows;
}

registerBench({ name: "attention", run: () => benchAttention() });

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/attention.ts",
        usage: "usage: deno run -A bench/attention.ts [--quick]\n" +
          "  --quick  the windowed shape only (the global 64×64 one takes minutes on a CPU)",
        options: { quick: { type: "boolean" } },
      },
      Deno.args,
      async (flags) => {
        await initGpu();
        console.log(describeGpu());
        const { rows, refused } = await withinCeiling(
          await benchAttention({ quick: !!flags.quick }),
        );
        for (const r of rows) {
          console.log(
            `${r.name.padEnd(64)} [${r.shape}] ${r.ms.toFixed(1).padStart(9)} ms ${
              r.gflops!.toFixed(2).padStart(8)
            } GFLOP/s ${r.gbps!.toFixed(2).padStart(7)} GB/s  ${r.notes ?? ""}`,
          );
        }
        return reportRefused(refused);
      },
    ),
  );
}
