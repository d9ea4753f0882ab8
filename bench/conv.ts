/**
 * Convolution benchmarks: forward, input-gradient and weight-gradient GFLOP/s of the conv2d
 * kernels on ResNet-50 layer shapes at a 512×512 input (output stride 16: layer4 stays at 32×32),
 * batch 1, plus ours against the peers on 1×64×128×128 3×3 64→64 (benchConv3x3).
 *
 * Run alone: `deno run -A bench/conv.ts --help` for the flags.
 */
import { gpu, initGpu } from "../engine/device.ts";
import { sync } from "../engine/dispatch.ts";
import { timeKernel, timeKernelsInterleaved } from "./timing.ts";
import { noGrad } from "../engine/autograd.ts";
import { type Tensor, tensor } from "../engine/tensor.ts";
import {
  conv2dBackwardDataRaw,
  conv2dBackwardWeightRaw,
  conv2dForwardRaw,
  type ConvGeometry,
} from "../engine/ops/conv.ts";
import { squareWindow, windowOutSize } from "../kernels/window.ts";
import { type BenchRow, loadavg, matchesFilter, median, processCpuMs } from "./registry.ts";
import { loadTf } from "./peers/tfjs.ts";
import { formatTable } from "./table.ts";
import { reportRefused, withinCeiling } from "./ceiling.ts";
import { numberFlag, runCommand } from "../pipeline/cli/args.ts";
import { compareOutputs } from "./peers/compare.ts";
import { convPath, setConvPath, setWinogradRule, setWinogradTile } from "../engine/routing.ts";
import { modelCases } from "./models.ts";
import { convTextureFits } from "../engine/ops/conv_texture.ts";
import type { WinogradTile } from "../kernels/conv/winograd.ts";
import { describePeers, onnxPeers, type Peers } from "./peers/onnx_peers.ts";

export type { BenchRow };

interface ConvCase {
  name: string;
  /** N, C, H, W, O, k, stride, padding, dilation */
  s: [number, number, number, number, number, number, number, number, number];
}

/**
 * ResNet-50-ADL (output stride 16: layer4 keeps stride 1 and dilation 1, model/resnet_adl.ts) layer
 * shapes at a 512×512 input, batch 1.
 */
const CONV_CASES: ConvCase[] = [
  { name: "conv1 7x7/2 4→64 @512²", s: [1, 4, 512, 512, 64, 7, 2, 3, 1] },
  { name: "layer1 3x3 64→64 @128²", s: [1, 64, 128, 128, 64, 3, 1, 1, 1] },
  { name: "layer1 1x1 64→256 @128²", s: [1, 64, 128, 128, 256, 1, 1, 0, 1] },
  { name: "layer1 1x1 256→64 @128²", s: [1, 256, 128, 128, 64, 1, 1, 0, 1] },
  { name: "layer2 3x3/2 128→128 @128²", s: [1, 128, 128, 128, 128, 3, 2, 1, 1] },
  { name: "layer2 3x3 128→128 @64²", s: [1, 128, 64, 64, 128, 3, 1, 1, 1] },
  { name: "layer2 1x1 128→512 @64²", s: [1, 128, 64, 64, 512, 1, 1, 0, 1] },
  { name: "layer3 3x3 256→256 @32²", s: [1, 256, 32, 32, 256, 3, 1, 1, 1] },
  { name: "layer3 1x1 256→1024 @32²", s: [1, 256, 32, 32, 1024, 1, 1, 0, 1] },
  { name: "layer4 3x3 512→512 @32²", s: [1, 512, 32, 32, 512, 3, 1, 1, 1] },
  { name: "layer4 1x1 512→2048 @32²", s: [1, 512, 32, 32, 2048, 1, 1, 0, 1] },
];

function geometryOf(c: ConvCase): ConvGeometry {
  const [N, C, H, W, O, k, s, p, d] = c.s;
  const OH = windowOutSize(H, k, s, p, d), OW = windowOutSize(W, k, s, p, d);
  return { N, C, H, W, O, OH, OW, ...squareWindow(k, s, p), dh: d, dw: d, groups: 1 };
}

function randomTensor(shape: number[], seed: number, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return tensor(a, shape);
}

/** Times the three conv kernels on each case. `filter` keeps cases whose name contains it. */
export async function benchConv(
  opts: { reps?: number; filter?: string; tfjs?: boolean; onnx?: boolean } = {},
): Promise<BenchRow[]> {
  await initGpu();
  const reps = opts.reps ?? 2;
  const adapter = gpu().adapterName;
  const rows: BenchRow[] = [];
  const cases = CONV_CASES.filter((c) => matchesFilter(c.name, opts.filter));
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
        const t = await timeKernel(fn, reps);
        const ms = t.ms;
        rows.push({
          name: `conv2d ${kind} ${c.name}`,
          shape,
          ms,
          gflops: flops / ms / 1e6,
          gbps: bytes / ms / 1e6,
          adapter,
          notes: t.note,
        });
      }
    });
    x.dispose();
    w.dispose();
    dy.dispose();
  }
  // Winograd's comparison only when asked for by name (it runs every shape three ways).
  if (opts.filter?.includes("winograd")) {
    rows.push(...await benchWinograd(opts), ...await benchWinogradModels(opts));
  }
  if ((opts.tfjs ?? true) && matchesFilter(CONV3X3_ROW, opts.filter)) {
    rows.push(await benchConv3x3(reps, opts.onnx ?? false));
  }
  return rows;
}

/** Name of the row comparing ours with the peers on one 3×3 conv. */
const CONV3X3_ROW = "conv3x3 fwd 1x64x128² 64→64";

/**
 * Ours against the peers on 1×64×128×128 3×3 64→64, pad 1: TF.js-WebGPU (NHWC, the same input and
 * weights as ours, its output checked against ours), and with `onnx` PyTorch CPU, ONNX Runtime Web
 * (WebGPU) and ONNX Runtime CPU (checked against PyTorch; bench/peers/onnx_peers.ts). Ours and
 * TF.js are timed the same way: wall clock including the readback of the result, runs alternated so
 * that load from other processes hits both; median of `reps + 1` after a warm-up.
 */
async function benchConv3x3(reps: number, onnx: boolean): Promise<BenchRow> {
  const g = geometryOf({ name: "", s: [1, 64, 128, 128, 64, 3, 1, 1, 1] });
  const ox = randomTensor([1, 64, 128, 128], 1), ow = randomTensor([64, 64, 3, 3], 2);
  const runOurs = async () => {
    await sync();
    const t0 = performance.now();
    const y = noGrad(() => conv2dForwardRaw(ox, ow, null, g));
    const data = await y.data() as Float32Array;
    y.dispose();
    return { ms: performance.now() - t0, data };
  };
  const peers: Peers = {};
  const ourRuns: number[] = [];
  const first = await runOurs();
  try {
    const tf = await loadTf();
    const x = tf.transpose(tf.tensor(await ox.data() as Float32Array, [1, 64, 128, 128]), [
      0,
      2,
      3,
      1,
    ]) as import("@tensorflow/tfjs-core").Tensor4D;
    const f = tf.transpose(tf.tensor(await ow.data() as Float32Array, [64, 64, 3, 3]), [
      2,
      3,
      1,
      0,
    ]) as import("@tensorflow/tfjs-core").Tensor4D;
    const runTf = async () => {
      const t0 = performance.now();
      const y = tf.conv2d(x, f, 1, "same");
      const data = await y.data() as Float32Array;
      y.dispose();
      return { ms: performance.now() - t0, data };
    };
    const tfFirst = await runTf();
    // TF.js's output is NHWC: back to NCHW to compare with ours.
    const nchw = new Float32Array(tfFirst.data.length);
    for (let c = 0; c < 64; c++) {
      for (let i = 0; i < 128 * 128; i++) nchw[c * 128 * 128 + i] = tfFirst.data[i * 64 + c];
    }
    const check = compareOutputs(nchw, first.data);
    const tfRuns: number[] = [];
    for (let i = 0; i < reps + 1 && check.ok; i++) {
      tfRuns.push((await runTf()).ms);
      ourRuns.push((await runOurs()).ms);
    }
    x.dispose();
    f.dispose();
    peers["tfjs-webgpu"] = {
      ms: check.ok ? median(tfRuns) : null,
      ok: check.ok,
      maxAbsErr: check.maxAbsErr,
      ...(check.ok ? {} : { error: `${check.error} (against ours)` }),
      runtime: `TF.js 4.22 webgpu backend on ${gpu().adapterName}, output checked against ours`,
    };
  } catch (e) {
    peers["tfjs-webgpu"] = {
      ms: null,
      ok: false,
      error: (e as Error).message,
      runtime: "TF.js 4.22 webgpu backend",
    };
  }
  for (let i = ourRuns.length; i < reps + 1; i++) ourRuns.push((await runOurs()).ms);
  ox.dispose();
  ow.dispose();
  if (onnx) Object.assign(peers, (await onnxPeers(["onnx:conv3x3"], reps + 1)).get("onnx:conv3x3"));
  const ms = median(ourRuns);
  const flops = 2 * 128 * 128 * 64 * 64 * 9;
  return {
    name: CONV3X3_ROW,
    shape: [1, 64, 128, 128, 64, 3, 3],
    ms,
    gflops: flops / ms / 1e6,
    gbps: null,
    adapter: gpu().adapterName,
    load: loadavg(),
    peers,
    notes: `wall clock incl. readback, median of ${ourRuns.length}; peers: ${
      describePeers(peers, ms)
    }`,
  };
}

/** ResNet-50-ADL's 3×3 stride-1 convs (layer4 at stride 1: output stride 16), 256² b2 and 512² b1. */
export const WINOGRAD_CASES: ConvCase[] = [
  { name: "layer1 3x3 64→64 @64² b2", s: [2, 64, 64, 64, 64, 3, 1, 1, 1] },
  { name: "layer2 3x3 128→128 @32² b2", s: [2, 128, 32, 32, 128, 3, 1, 1, 1] },
  { name: "layer3 3x3 256→256 @16² b2", s: [2, 256, 16, 16, 256, 3, 1, 1, 1] },
  { name: "layer4 3x3 512→512 @16² b2", s: [2, 512, 16, 16, 512, 3, 1, 1, 1] },
  { name: "layer1 3x3 64→64 @128² b1", s: [1, 64, 128, 128, 64, 3, 1, 1, 1] },
  { name: "layer2 3x3 128→128 @64² b1", s: [1, 128, 64, 64, 128, 3, 1, 1, 1] },
  { name: "layer3 3x3 256→256 @32² b1", s: [1, 256, 32, 32, 256, 3, 1, 1, 1] },
  { name: "layer4 3x3 512→512 @32² b1", s: [1, 512, 32, 32, 512, 3, 1, 1, 1] },
];

/**
 * Winograd F(2,3) and F(4,3) against the path the routing rule gives without Winograd (texture
 * GEMMs or conv kernels), per {@link WINOGRAD_CASES} shape, forward, input and weight gradient: the three
 * run interleaved in one process (GPU timestamps, `reps` rounds, medians), and each Winograd
 * output is compared with the other path's. Rows are named `conv-winograd <pass> <shape>`.
 */
export async function benchWinograd(
  opts: { reps?: number; filter?: string } = {},
): Promise<BenchRow[]> {
  await initGpu();
  const reps = opts.reps ?? 3;
  const adapter = gpu().adapterName;
  const rows: BenchRow[] = [];
  for (const c of WINOGRAD_CASES) {
    const g = geometryOf(c);
    const x = randomTensor([g.N, g.C, g.H, g.W], 1);
    // Filters at He-init magnitude, as in a trained ResNet.
    const w = randomTensor([g.O, g.C, 3, 3], 2, Math.sqrt(6 / (9 * g.C)));
    const dy = randomTensor([g.N, g.O, g.OH, g.OW], 3);
    for (const pass of ["forward", "input", "weight"] as const) {
      const kind = { forward: "fwd", input: "dgrad", weight: "wgrad" }[pass];
      const name = `conv-winograd ${kind} ${c.name}`;
      if (!matchesFilter(name, opts.filter)) continue;
      const base = convPath(g, pass, false, () => convTextureFits(g));
      const run = () =>
        pass === "forward"
          ? conv2dForwardRaw(x, w, null, g)
          : pass === "input"
          ? conv2dBackwardDataRaw(dy, w, null, g)
          : conv2dBackwardWeightRaw(x, dy, g);
      const variants: [string, "texture" | "kernel" | "winograd", WinogradTile | null][] = [
        [base, base, null],
        ["F(2,3)", "winograd", 2],
        ["F(4,3)", "winograd", 4],
      ];
      const outs: Float32Array[] = [];
      const timed = await noGrad(async () => {
        // Compiles each variant and keeps its output for the comparison.
        for (const [, path, m] of variants) {
          setConvPath(path);
          setWinogradTile(m);
          const y = run();
          outs.push(await y.data() as Float32Array);
          y.dispose();
        }
        // Timed like every other kernel row (bench/timing.ts), the variants interleaved.
        return await timeKernelsInterleaved(
          variants.map(([, path, m]) => () => {
            setConvPath(path);
            setWinogradTile(m);
            return run();
          }),
          reps,
        );
      });
      setConvPath(null);
      setWinogradTile(null);
      const ms = timed.map((t) => t.ms);
      const err = (o: Float32Array) => {
        let e = 0, mag = 0;
        for (let i = 0; i < o.length; i++) {
          e = Math.max(e, Math.abs(o[i] - outs[0][i]));
          mag = Math.max(mag, Math.abs(outs[0][i]));
        }
        return `${e.toExponential(1)} (max |y| ${mag.toPrecision(3)})`;
      };
      rows.push({
        name,
        shape: [g.N, g.C, g.H, g.W, g.O, 3, 3],
        ms: ms[0],
        gflops: 2 * g.N * g.OH * g.OW * g.O * g.C * 9 / ms[0] / 1e6,
        gbps: null,
        adapter,
        load: loadavg(),
        notes: `${base} ${ms[0].toFixed(1)} ms [${timed[0].note}]; F(2,3) ${ms[1].toFixed(1)} ms (${
          (ms[0] / ms[1]).toFixed(2)
        }×, max diff ${err(outs[1])}) [${timed[1].note}]; F(4,3) ${ms[2].toFixed(1)} ms (${
          (ms[0] / ms[2]).toFixed(2)
        }×, max diff ${err(outs[2])}) [${timed[2].note}]; variants interleaved`,
      });
    }
    x.dispose();
    w.dispose();
    dy.dispose();
  }
  return rows;
}

/** The model cases {@link benchWinogradModels} runs with the Winograd rule on and off. */
const WINOGRAD_MODEL_CASES = ["resnet50-train-step b2 @256", "resnet50-forward b2 @256"];

/**
 * ResNet-50-ADL's training step and forward (bench/models.ts) with the Winograd rule off and on
 * (`setWinogradRule`), alternated in one process on one model after a warm-up of each: medians of
 * the wall time (step + sync) and of this process's CPU time (the host and the rasteriser's
 * threads: less disturbed by other processes), the ratio, the load before and after. Rows are
 * named `conv-winograd on/off <case>`.
 */
export async function benchWinogradModels(
  opts: { reps?: number; filter?: string } = {},
): Promise<BenchRow[]> {
  await initGpu();
  const reps = opts.reps ?? 3;
  const rows: BenchRow[] = [];
  for (const c of modelCases(2).filter((k) => WINOGRAD_MODEL_CASES.includes(k.name))) {
    const name = `conv-winograd on/off ${c.name}`;
    if (!matchesFilter(name, opts.filter)) continue;
    const load0 = loadavg();
    const run = await c.setup();
    const wall: number[][] = [[], []], cpu: number[][] = [[], []];
    try {
      for (let r = -1; r < reps; r++) {
        for (const on of [false, true]) {
          setWinogradRule(on);
          await sync();
          const c0 = processCpuMs(), t0 = performance.now();
          await run.step();
          await sync();
          if (r < 0) continue; // warm-up: compiles each path's kernels
          wall[+on].push(performance.now() - t0);
          cpu[+on].push(processCpuMs() - c0);
        }
      }
    } finally {
      setWinogradRule(null);
      run.done();
    }
    const [off, on] = wall.map(median), [cOff, cOn] = cpu.map(median);
    rows.push({
      name,
      shape: c.shape,
      ms: on,
      gflops: c.flops ? c.flops / on / 1e6 : null,
      gbps: null,
      adapter: gpu().adapterName,
      load: loadavg(),
      notes: `wall clock (step + sync), as the model rows; Winograd off ${off.toFixed(0)} ms, on ${
        on.toFixed(0)
      } ms (${(off / on).toFixed(2)}×); CPU time off ${cOff.toFixed(0)} ms, on ${
        cOn.toFixed(0)
      } ms (${
        (cOff / cOn).toFixed(2)
      }×); medians of ${reps}, alternated in one process; load ${load0} → ${loadavg()}`,
    });
  }
  return rows;
}

const USAGE = `usage: deno run -A bench/conv.ts [FILTER] [--reps N] [--peers]
  FILTER   the cases whose names contain it (all when absent); "winograd" (or e.g.
           "conv-winograd fwd layer1"): Winograd F(2,3)/F(4,3) against the routed path on
           ResNet-50's 3×3 stride-1 shapes, interleaved; "winograd on/off": ResNet-50-ADL's
           training step and forward (b2 @256) with the Winograd rule off and on, alternated
  --reps N timed batches per kernel, median reported (default 2)
  --peers  also PyTorch CPU, ONNX Runtime Web (WebGPU) and ONNX Runtime CPU on the 3×3 conv`;

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/conv.ts",
        usage: USAGE,
        positionals: true,
        options: { reps: { type: "string" }, peers: { type: "boolean" } },
      },
      Deno.args,
      async (flags, positionals) => {
        const { rows, refused } = await withinCeiling(
          await benchConv({
            filter: positionals[0],
            reps: numberFlag(flags, "reps", { def: 2, min: 1, integer: true }),
            onnx: !!flags.peers,
          }),
        );
        console.log(formatTable(rows));
        console.log(`adapter: ${rows[0]?.adapter}`);
        return reportRefused(refused);
      },
    ),
  );
}
