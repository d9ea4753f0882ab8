/**
 * Fused inference conv + BatchNorm (+ residual) (+ ReLU) (engine/ops/conv_fused.ts) against the
 * unfused chain, A/B interleaved in one process (fused, unfused, fused, ... median of each) so
 * that the load of a shared machine hits both alike:
 *
 * - `fused A/B: ResNet-50 forward b2 @256 (no grad, eval)`: ResNet-50-ADL logits, the
 *   bench/models.ts case;
 * - `fused A/B: ResNet-50 CAM b4 @256 (no grad, eval)`: the CAM stage's work per patch (camRaw of
 *   the four rotations, model/cam.ts `generateCamMasks`);
 * - `bn-fold x53`: what folding every BatchNorm of ResNet-50 costs on its own (one small dispatch
 *   per BN, run at every fused forward instead of caching folded weights).
 *
 * The fused and unfused outputs are compared (largest difference relative to the largest value).
 * Run: `deno task bench --filter fused` or `deno run -A bench/conv_fused.ts [--runs N]`.
 */
import {
  describeGpu,
  gpu,
  initGpu,
  noGrad,
  sync,
  type Tensor,
  tensor,
  tidy,
} from "../engine/mod.ts";
import { setConvBnFusion } from "../engine/routing.ts";
import { foldBatchNorm } from "../engine/ops/conv_fused.ts";
import { BatchNorm2d } from "../engine/nn/norm.ts";
import { RESNET50_ADL, ResNetAdl } from "../model/resnet_adl.ts";
import { type BenchRow, loadavg, matchesFilter, median, registerBench } from "./registry.ts";
import { numberFlag, runCommand, stringFlag } from "../pipeline/cli/args.ts";

function randomData(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32;
  }
  return a;
}

async function timeRun(step: () => Tensor): Promise<{ ms: number; out: Tensor }> {
  await sync();
  const t0 = performance.now();
  const out = step();
  await sync();
  return { ms: performance.now() - t0, out };
}

/** Largest |a − b| over the largest |b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / (m || 1);
}

/** Fused vs unfused `run`, interleaved, one warm-up of each; two rows. */
async function abRows(
  name: string,
  shape: number[],
  runs: number,
  run: () => Tensor,
): Promise<BenchRow[]> {
  const time = async (fuse: boolean) => {
    setConvBnFusion(fuse);
    try {
      return await timeRun(() => tidy(() => noGrad(run)));
    } finally {
      setConvBnFusion(null);
    }
  };
  const wf = await time(true), wu = await time(false);
  const diff = relDiff(await wf.out.data() as Float32Array, await wu.out.data() as Float32Array);
  wf.out.dispose();
  wu.out.dispose();
  const fused: number[] = [], unfused: number[] = [];
  for (let i = 0; i < runs; i++) {
    for (const fuse of [true, false]) {
      const r = await time(fuse);
      r.out.dispose();
      (fuse ? fused : unfused).push(r.ms);
    }
    console.error(
      `${name}: run ${i + 1}/${runs}: fused ${fused[i].toFixed(0)} ms, unfused ${
        unfused[i].toFixed(0)
      } ms (load ${loadavg()})`,
    );
  }
  const f = median(fused), u = median(unfused);
  // Under load the minimum is the least disturbed run of each: both ratios are reported.
  const minRatio = Math.min(...unfused) / Math.min(...fused);
  // Each pair ran back to back, under about the same load: the median of their ratios.
  const pairRatio = median(unfused.map((x, i) => x / fused[i]));
  const load = loadavg();
  const adapter = gpu().adapterName;
  return [
    {
      name: `${name} fused`,
      shape,
      ms: f,
      gflops: null,
      gbps: null,
      adapter,
      notes: `unfused/fused ${(u / f).toFixed(2)}x by medians, ${minRatio.toFixed(2)}x by minima, ${
        pairRatio.toFixed(2)
      }x median of pairs (interleaved, ${runs} each); max diff ${
        diff.toExponential(1)
      } of max |out|`,
      load,
    },
    { name: `${name} unfused`, shape, ms: u, gflops: null, gbps: null, adapter, load },
  ];
}

export interface ConvFusedBenchOptions {
  filter?: string;
  runs?: number;
  /** Forward batch and image size (default 2 @256; the CAM rows take 4 rotations at `size`). */
  batch?: number;
  size?: number;
}

export async function benchConvFused(o: ConvFusedBenchOptions = {}): Promise<BenchRow[]> {
  await initGpu();
  const runs = o.runs ?? 5;
  const b = o.batch ?? 2, S = o.size ?? 256;
  const rows: BenchRow[] = [];
  const m = new ResNetAdl(RESNET50_ADL).eval();
  // Trained-looking BatchNorms (fresh ones are the identity up to eps, where both chains round
  // alike): running statistics and affine parameters drawn around their usual values.
  let seed = 10;
  for (const [name, t] of m.stateDict()) {
    const [lo, hi] = name.endsWith("running_var")
      ? [0.5, 2]
      : name.endsWith("running_mean") || /(bn\d|downsample\.1)\.bias$/.test(name)
      ? [-0.2, 0.2]
      : /(bn\d|downsample\.1)\.weight$/.test(name)
      ? [0.5, 1.5]
      : [0, 0];
    if (hi > lo) {
      const d = randomData(t.size, seed++).map((v) => lo + (hi - lo) * v);
      m.assignParameter(name, tensor(d, t.shape.slice()));
    }
  }
  // Named apart from bench/models.ts's rows: no --filter for one matches the other.
  const fwdName = `fused A/B: ResNet-50 forward b${b} @${S} (no grad, eval)`;
  if (matchesFilter(fwdName, o.filter) || matchesFilter("fused", o.filter)) {
    const x = tensor(randomData(b * 3 * S * S, 1), [b, 3, S, S]);
    rows.push(...await abRows(fwdName, [b, 3, S, S], runs, () => m.forward(x)));
    x.dispose();
  }
  const camName = `fused A/B: ResNet-50 CAM b4 @${S} (no grad, eval)`;
  if (matchesFilter(camName, o.filter) || matchesFilter("fused", o.filter)) {
    const x = tensor(randomData(4 * 3 * S * S, 2), [4, 3, S, S]);
    rows.push(...await abRows(camName, [4, 3, S, S], runs, () => m.camRaw(x)));
    x.dispose();
  }
  const foldName = "bn-fold x53 (ResNet-50's BatchNorms)";
  if (matchesFilter(foldName, o.filter) || matchesFilter("fused", o.filter)) {
    const bns = m.namedModules().map(([, b]) => b).filter((b) => b instanceof BatchNorm2d);
    const foldAll = () => {
      for (const b of bns as BatchNorm2d[]) {
        const f = foldBatchNorm({
          weight: b.weight,
          bias: b.bias,
          runningMean: b.runningMean,
          runningVar: b.runningVar,
          eps: 1e-5,
        }, b.channels);
        f.scale.dispose();
        f.shift.dispose();
      }
      return tensor(new Float32Array(1), [1]);
    };
    (await timeRun(foldAll)).out.dispose();
    const all: number[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await timeRun(foldAll);
      r.out.dispose();
      all.push(r.ms);
    }
    rows.push({
      name: foldName.replace("x53", `x${bns.length}`),
      shape: [bns.length],
      ms: median(all),
      gflops: null,
      gbps: null,
      adapter: gpu().adapterName,
      notes: "the fold each fused forward runs (one dispatch per BN)",
      load: loadavg(),
    });
  }
  m.dispose();
  return rows;
}

registerBench({
  name: "fused",
  filterable: true,
  run: (c) => benchConvFused({ filter: c.filter, runs: c.runs }),
});

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/conv_fused.ts",
        usage:
          "usage: deno run -A bench/conv_fused.ts [--runs N] [--batch B] [--size S] [--filter F]\n" +
          "  --runs N    timed runs of each variant, interleaved (default 5)\n" +
          "  --batch B   forward batch (default 2)\n" +
          "  --size S    image size (default 256)\n" +
          "  --filter F  rows whose names contain F (forward, CAM, bn-fold)",
        options: {
          runs: { type: "string" },
          batch: { type: "string" },
          size: { type: "string" },
          filter: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const runs = numberFlag(flags, "runs", { def: 5, min: 1, integer: true })!;
        const batch = numberFlag(flags, "batch", { def: 2, min: 1, integer: true })!;
        const size = numberFlag(flags, "size", { def: 256, min: 32, integer: true })!;
        const filter = stringFlag(flags, "filter");
        await initGpu();
        console.log(describeGpu());
        for (const r of await benchConvFused({ runs, batch, size, filter })) {
          console.log(
            `${r.name.padEnd(48)} ${r.ms.toFixed(1).padStart(9)} ms  load ${r.load}  ${
              r.notes ?? ""
            }`,
          );
        }
      },
    ),
  );
}
