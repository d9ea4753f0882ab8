/**
 * Convolution benchmarks: forward, input-gradient and weight-gradient GFLOP/s of the conv2d
 * kernels on ResNet-50 layer shapes at a 512×512 input (output stride 16: layer4 stays at 32×32),
 * batch 1, plus TF.js-WebGPU's conv2d on 1×64×128×128 3×3 64→64 (NHWC) for comparison.
 *
 * Run alone: `deno run -A bench/conv.ts` (prints a table).
 */
import { gpu, initGpu } from "../engine/device.ts";
import { sync, timeGpu } from "../engine/dispatch.ts";
import { noGrad } from "../engine/autograd.ts";
import { type Tensor, tensor } from "../engine/tensor.ts";
import {
  conv2dBackwardDataRaw,
  conv2dBackwardWeightRaw,
  conv2dForwardRaw,
  type ConvGeometry,
} from "../engine/ops/conv.ts";
import type { BenchRow } from "./registry.ts";

export type { BenchRow };

interface ConvCase {
  name: string;
  /** N, C, H, W, O, k, stride, padding, dilation */
  s: [number, number, number, number, number, number, number, number, number];
}

/** ResNet-50 (output stride 16) layer shapes at a 512×512 input, batch 1. */
export const CONV_CASES: ConvCase[] = [
  { name: "conv1 7x7/2 4→64 @512²", s: [1, 4, 512, 512, 64, 7, 2, 3, 1] },
  { name: "layer1 3x3 64→64 @128²", s: [1, 64, 128, 128, 64, 3, 1, 1, 1] },
  { name: "layer1 1x1 64→256 @128²", s: [1, 64, 128, 128, 256, 1, 1, 0, 1] },
  { name: "layer1 1x1 256→64 @128²", s: [1, 256, 128, 128, 64, 1, 1, 0, 1] },
  { name: "layer2 3x3/2 128→128 @128²", s: [1, 128, 128, 128, 128, 3, 2, 1, 1] },
  { name: "layer2 3x3 128→128 @64²", s: [1, 128, 64, 64, 128, 3, 1, 1, 1] },
  { name: "layer2 1x1 128→512 @64²", s: [1, 128, 64, 64, 512, 1, 1, 0, 1] },
  { name: "layer3 3x3 256→256 @32²", s: [1, 256, 32, 32, 256, 3, 1, 1, 1] },
  { name: "layer3 1x1 256→1024 @32²", s: [1, 256, 32, 32, 1024, 1, 1, 0, 1] },
  { name: "layer4 3x3 d2 512→512 @32²", s: [1, 512, 32, 32, 512, 3, 1, 2, 2] },
  { name: "layer4 1x1 512→2048 @32²", s: [1, 512, 32, 32, 2048, 1, 1, 0, 1] },
];

function geometryOf(c: ConvCase): ConvGeometry {
  const [N, C, H, W, O, k, s, p, d] = c.s;
  const OH = Math.floor((H + 2 * p - d * (k - 1) - 1) / s) + 1;
  const OW = Math.floor((W + 2 * p - d * (k - 1) - 1) / s) + 1;
  return {
    N,
    C,
    H,
    W,
    O,
    OH,
    OW,
    kh: k,
    kw: k,
    sh: s,
    sw: s,
    ph: p,
    pw: p,
    dh: d,
    dw: d,
    groups: 1,
  };
}

function randomTensor(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = (s / 4294967296) * 2 - 1;
  }
  return tensor(a, shape);
}

/** Best of `reps` GPU timings of `fn` (after one warm-up run that compiles the pipelines). */
async function best(fn: () => Tensor, reps: number): Promise<number> {
  fn().dispose();
  await sync();
  let ms = Infinity;
  for (let i = 0; i < reps; i++) {
    let out: Tensor | null = null;
    const t = await timeGpu(() => {
      out = fn();
    });
    (out as Tensor | null)?.dispose();
    ms = Math.min(ms, t.ms);
  }
  return ms;
}

/** Times the three conv kernels on each case. `filter` keeps cases whose name contains it. */
export async function benchConv(
  opts: { reps?: number; filter?: string; tfjs?: boolean } = {},
): Promise<BenchRow[]> {
  await initGpu();
  const reps = opts.reps ?? 2;
  const adapter = gpu().adapterName;
  const rows: BenchRow[] = [];
  const cases = CONV_CASES.filter((c) => !opts.filter || c.name.includes(opts.filter));
  for (const c of cases) {
    const g = geometryOf(c);
    const x = randomTensor([g.N, g.C, g.H, g.W], 1);
    const w = randomTensor([g.O, g.C / g.groups, g.kh, g.kw], 2);
    const dy = randomTensor([g.N, g.O, g.OH, g.OW], 3);
    const flops = 2 * g.N * g.OH * g.OW * g.O * (g.C / g.groups) * g.kh * g.kw;
    const xBytes = 4 * g.N * g.C * g.H * g.W, wBytes = 4 * w.size, yBytes = 4 * dy.size;
    const shape = [g.N, g.C, g.H, g.W, g.O, g.kh, g.kw];
    await noGrad(async () => {
      const runs: [string, () => Tensor, number][] = [
        ["fwd", () => conv2dForwardRaw(x, w, null, g), xBytes + wBytes + yBytes],
        ["dgrad", () => conv2dBackwardDataRaw(dy, w, null, g), xBytes + wBytes + yBytes],
        ["wgrad", () => conv2dBackwardWeightRaw(x, dy, g), xBytes + wBytes + yBytes],
      ];
      for (const [kind, fn, bytes] of runs) {
        const ms = await best(fn, reps);
        rows.push({
          name: `conv2d ${kind} ${c.name}`,
          shape,
          ms,
          gflops: flops / ms / 1e6,
          gbps: bytes / ms / 1e6,
          adapter,
        });
      }
    });
    x.dispose();
    w.dispose();
    dy.dispose();
  }
  if (opts.tfjs ?? true) {
    const tf = await benchTfjs(reps).catch((e) => {
      console.error(`TF.js-WebGPU conv2d did not run: ${(e as Error).message}`);
      return [];
    });
    rows.push(...tf);
  }
  return rows;
}

/**
 * TF.js-WebGPU conv2d on 1×128×128×64 (NHWC) 3×3 64→64, same padding, against ours on the same
 * problem (NCHW), both timed the same way: wall clock including the readback of the result, runs
 * alternated so that load from other processes hits both; best of `reps + 1`.
 */
async function benchTfjs(reps: number): Promise<BenchRow[]> {
  const tf = await import("@tensorflow/tfjs-core");
  await import("@tensorflow/tfjs-backend-webgpu");
  if (!(await tf.setBackend("webgpu"))) throw new Error("tf.setBackend('webgpu') failed");
  await tf.ready();
  const x = tf.randomUniform([1, 128, 128, 64], -1, 1) as import("@tensorflow/tfjs-core").Tensor4D;
  const f = tf.randomUniform([3, 3, 64, 64], -1, 1) as import("@tensorflow/tfjs-core").Tensor4D;
  const g = geometryOf({ name: "", s: [1, 64, 128, 128, 64, 3, 1, 1, 1] });
  const ox = randomTensor([1, 64, 128, 128], 1), ow = randomTensor([64, 64, 3, 3], 2);
  const runTf = async () => {
    const t0 = performance.now();
    const y = tf.conv2d(x, f, 1, "same");
    await y.data();
    y.dispose();
    return performance.now() - t0;
  };
  const runOurs = async () => {
    await sync();
    const t0 = performance.now();
    const y = noGrad(() => conv2dForwardRaw(ox, ow, null, g));
    await y.data();
    y.dispose();
    return performance.now() - t0;
  };
  await runTf();
  await runOurs();
  let tfMs = Infinity, ourMs = Infinity;
  for (let i = 0; i < reps + 1; i++) {
    tfMs = Math.min(tfMs, await runTf());
    ourMs = Math.min(ourMs, await runOurs());
  }
  x.dispose();
  f.dispose();
  ox.dispose();
  ow.dispose();
  const flops = 2 * 128 * 128 * 64 * 64 * 9;
  const shape = [1, 64, 128, 128, 64, 3, 3];
  return [
    {
      name: "tfjs-webgpu conv2d fwd 3x3 64→64 @128² (NHWC, wall incl. readback)",
      shape,
      ms: tfMs,
      gflops: flops / tfMs / 1e6,
      gbps: null,
      adapter: `TF.js webgpu backend on ${gpu().adapterName}`,
    },
    {
      name: "conv2d fwd 3x3 64→64 @128² (NCHW, wall incl. readback, vs TF.js)",
      shape,
      ms: ourMs,
      gflops: flops / ourMs / 1e6,
      gbps: null,
      adapter: gpu().adapterName,
    },
  ];
}

if (import.meta.main) {
  const filter = Deno.args[0];
  const rows = await benchConv({ filter, reps: 2 });
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(48)} ${r.ms.toFixed(1).padStart(9)} ms ${
        (r.gflops ?? 0).toFixed(2).padStart(8)
      } GFLOP/s`,
    );
  }
  const tf = rows.find((r) => r.name.startsWith("tfjs"));
  const ours = rows.find((r) => r.name.includes("vs TF.js"));
  if (tf && ours) {
    console.log(
      `ours vs TF.js-WebGPU (same timing method): ${(tf.ms / ours.ms).toFixed(2)}x faster`,
    );
  }
  console.log(`adapter: ${rows[0]?.adapter}`);
}
