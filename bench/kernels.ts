/**
 * Kernel benches: matmul (square and batched) for each kernel variant, with TF.js-WebGPU and
 * PyTorch-CPU peers on the same shapes when `--peers` is given.
 */
import { F, gpu, initGpu } from "../engine/mod.ts";
import type { MatmulVariant } from "../engine/ops/matmul.ts";
import { matmulVariantFromEnv } from "../engine/routing.ts";
import { randTensor } from "../tests/util/gpu.ts";
import {
  type BenchContext,
  type BenchRow,
  loadavg,
  matchesFilter,
  registerBench,
} from "./registry.ts";
import { describePeers, onnxPeers } from "./peers/onnx_peers.ts";
import { timeKernel } from "./timing.ts";
import { tfMatmul } from "./peers/tfjs.ts";
import { torchAvailable, torchMatmul } from "./peers/torch.ts";
import { describeTorch } from "./peers/launcher.ts";

/** [batch, M, N, K]. */
const MATMUL_SHAPES: number[][] = [
  [1, 256, 256, 256],
  [1, 512, 512, 512],
  [1, 1024, 1024, 1024],
  [1, 2048, 2048, 2048],
  [8, 256, 256, 256],
  [64, 64, 64, 64],
  [1, 4096, 256, 1024], // a linear layer: 4096 rows, 1024 → 256
];

function label(b: number): string {
  return b > 1 ? `/batch${b}` : "";
}

function flops(s: number[]): number {
  const [b, m, n, k] = s;
  return 2 * b * m * n * k;
}

function bytes(s: number[]): number {
  const [b, m, n, k] = s;
  return 4 * b * (m * k + k * n + m * n);
}

function row(name: string, s: number[], ms: number, adapter: string, notes?: string): BenchRow {
  return {
    name,
    shape: s.slice(1),
    ms,
    gflops: flops(s) / ms / 1e6,
    gbps: bytes(s) / ms / 1e6,
    adapter,
    notes,
  };
}

/** Median time of one matmul of shape s with the given variant (bench/timing.ts). */
async function timeMatmul(
  s: number[],
  variant: MatmulVariant,
  runs: number,
): Promise<{ ms: number; method: string; note: string }> {
  await initGpu();
  const [b, m, n, k] = s;
  const a = randTensor(b > 1 ? [b, m, k] : [m, k], 1),
    w = randTensor(b > 1 ? [b, k, n] : [k, n], 2);
  try {
    const t = await timeKernel(() => F.matmulRaw(a, w, { variant }), runs);
    return { ms: t.ms, method: t.method, note: t.note };
  } finally {
    a.dispose();
    w.dispose();
  }
}

function variants(): MatmulVariant[] {
  const env = matmulVariantFromEnv();
  if (env) return [env];
  // The texture-staged variant is the software adapters' default.
  return gpu().isSoftware ? ["register", "tiled", "texture"] : ["register", "tiled"];
}

async function benchMatmul(ctx: BenchContext): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const alts = ctx.filter.split("|");
  // "matmul-peers" alone needs only the 1024³ rows that give its "ours".
  const peersOnly = (s: number[]) =>
    matchesFilter("matmul-peers", ctx.filter) && s.join(",") === "1,1024,1024,1024";
  const want = (name: string, s: number[]) =>
    matchesFilter(name, ctx.filter) || alts.some((a) => a !== "" && "matmul".includes(a)) ||
    peersOnly(s);
  const shapes = MATMUL_SHAPES.filter((s) =>
    variants().some((v) => want(`matmul/${v}${label(s[0])}`, s))
  );
  const best = new Map<string, number>();
  let tfOk = true;
  for (const s of shapes) {
    for (const v of variants()) {
      const name = `matmul/${v}${label(s[0])}`;
      if (!want(name, s)) continue;
      // Workgroup tiling is ~10x slower on CPU rasterisers: keep its rows to the small shapes
      // there unless it was asked for (ENGINE_MATMUL=tiled).
      if (v === "tiled" && gpu().isSoftware && variants().length > 1 && flops(s) > 3e8) continue;
      // Fewer runs for the big shapes on a software adapter (seconds each).
      const runs = flops(s) > 4e9 ? Math.min(ctx.runs, 3) : ctx.runs;
      const t = await timeMatmul(s, v, runs);
      const r = row(name, s, t.ms, ctx.adapter, t.note);
      rows.push(r);
      const key = s.join(",");
      best.set(key, Math.min(best.get(key) ?? Infinity, t.ms));
      console.error(`  ${name} [${s.slice(1)}]: ${t.ms.toFixed(1)} ms`);
    }
    // The TF.js peer right after ours on the same shape, so both see the same machine load.
    if (ctx.peers && tfOk) {
      const [b, m, n, k] = s;
      const runs = flops(s) > 4e9 ? Math.min(ctx.runs, 3) : ctx.runs;
      try {
        const ms = await tfMatmul(b, m, n, k, runs);
        const ours = best.get(s.join(","))!;
        rows.push(
          row(
            `tfjs-webgpu/matmul${label(b)}`,
            s,
            ms,
            ctx.adapter,
            `wall incl. readback; ours ${(ms / ours).toFixed(1)}x faster`,
          ),
        );
        console.error(`  tfjs [${s.slice(1)}]: ${ms.toFixed(1)} ms`);
      } catch (e) {
        console.error(`  tfjs peer skipped: ${(e as Error).message}`);
        tfOk = false;
      }
    }
  }
  if (!ctx.peers) return rows;
  const sq = [1, 1024, 1024, 1024];
  const ours1024 = best.get(sq.join(","));
  if (ours1024 !== undefined) {
    const peers = (await onnxPeers(["onnx:matmul:1024:1024:1024"], Math.min(ctx.runs, 5)))
      .get("onnx:matmul:1024:1024:1024")!;
    rows.push({
      ...row("matmul-peers", sq, ours1024, ctx.adapter),
      peers,
      load: loadavg(),
      notes: `ours: best variant, kernel time; peers: wall clock of a run incl. upload/readback: ${
        describePeers(peers, ours1024)
      }`,
    });
  }
  if (await torchAvailable()) {
    try {
      const t = await torchMatmul(shapes, Math.min(ctx.runs, 5));
      for (const s of shapes) {
        const ms = t.ms.get(s.join(","));
        if (ms === undefined) continue;
        const ours = best.get(s.join(","))!;
        rows.push(
          row(
            `torch-cpu/matmul${label(s[0])}`,
            s,
            ms,
            `CPU, ${describeTorch(t.info)}`,
            `ours ${(ms / ours).toFixed(2)}x`,
          ),
        );
      }
    } catch (e) {
      console.error(`  torch peer failed: ${(e as Error).message}`);
    }
  } else {
    console.error(
      "  torch peer skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)",
    );
  }
  return rows;
}

registerBench({ name: "matmul", filterable: true, run: benchMatmul });
