/** 2-D pooling over NCHW: maxPool2d (argmax saved for backward), avgPool2d, adaptiveAvgPool2d. */
import { dispatch, grid1d } from "../dispatch.ts";
import { disposeCopy, empty, type Shape, Tensor } from "../tensor.ts";
import { noGrad, record } from "../autograd.ts";
import {
  adaptiveAvgPool2dBackwardKernel,
  adaptiveAvgPool2dKernel,
  avgPool2dBackwardKernel,
  avgPool2dKernel,
  globalAvgPool2dBackwardKernel,
  maxPool2dBackwardBlockKernel,
  maxPool2dBackwardKernel,
  maxPool2dKernel,
  MAXPOOL_BLOCK_MAX_STRIDE,
  POOL_UNIFORMS,
  POOL_WG,
} from "../../kernels/pool.ts";
import { type Window2d, windowOutSize } from "../../kernels/window.ts";
import { dense } from "./view.ts";
import { splitBatch } from "../split.ts";
import type { Kernel } from "../dispatch.ts";
import { gpu } from "../device.ts";
import { assertLoopLimit, LOOP_BUDGET } from "../../kernels/common.ts";

const fmt = (s: Shape) => `[${s.join(", ")}]`;
type Pair = number | [number, number];
const pair = (v: Pair): [number, number] => (typeof v === "number" ? [v, v] : v);

export interface Pool2dOptions {
  kernel: Pair;
  /** Defaults to the kernel size (as PyTorch). */
  stride?: Pair;
  padding?: Pair;
}

function checkNchw(name: string, x: Tensor): [number, number, number, number] {
  x.assertAlive();
  if (x.dtype !== "f32") {
    throw new Error(`${name}: expected an f32 tensor, got ${x.dtype} ${fmt(x.shape)}`);
  }
  if (x.rank !== 4) throw new Error(`${name}: expected an NCHW input, got shape ${fmt(x.shape)}`);
  return x.shape as [number, number, number, number];
}

function windowGeometry(name: string, x: Tensor, o: Pool2dOptions) {
  const [N, C, H, W] = checkNchw(name, x);
  const [kh, kw] = pair(o.kernel);
  const [sh, sw] = pair(o.stride ?? o.kernel);
  const [ph, pw] = pair(o.padding ?? 0);
  const ints = [kh, kw, sh, sw, ph, pw];
  if (
    ints.some((v) => !Number.isInteger(v)) || kh < 1 || kw < 1 || sh < 1 || sw < 1 || ph < 0 ||
    pw < 0
  ) {
    throw new Error(
      `${name}: kernel/stride must be positive and padding non-negative integers, got ${ints}`,
    );
  }
  if (ph > kh / 2 || pw > kw / 2) {
    throw new Error(
      `${name}: padding (${ph}, ${pw}) should be at most half the kernel (${kh}, ${kw})`,
    );
  }
  const OH = windowOutSize(H, kh, sh, ph), OW = windowOutSize(W, kw, sw, pw);
  if (OH < 1 || OW < 1) {
    throw new Error(
      `${name}: input ${
        fmt(x.shape)
      } is too small for kernel (${kh}, ${kw}) with padding (${ph}, ${pw})`,
    );
  }
  const p: Window2d = { H, W, OH, OW, kh, kw, sh, sw, ph, pw };
  return { N, C, H, W, OH, OW, p };
}

/**
 * Dispatches a pooling kernel over the planes of `ts` (dense, batch-leading, bindings 1..n in
 * order); batches over the binding limit run as several dispatches over runs of samples, each
 * binding its ranges with their offsets in the uniform block; `perPlane`: threads per plane.
 */
function launchPlanes(
  name: string,
  kernel: Kernel,
  N: number,
  C: number,
  ts: Tensor[],
  geo: Window2d,
  perPlane: number,
): void {
  for (const ch of splitBatch(name, N, ts)) {
    const planes = (ch.n1 - ch.n0) * C;
    const o = ch.ranges.map((r) => r.off);
    const p = POOL_UNIFORMS.pack({ planes, ...geo, o0: o[0] ?? 0, o1: o[1] ?? 0, o2: o[2] ?? 0 });
    dispatch(kernel, ch.ranges.map((r) => r.binding), p, grid1d(planes * perPlane, POOL_WG));
  }
}

/** max_pool2d (no dilation, floor mode), padding with −inf; gradients go to each window's argmax. */
export function maxPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  const { N, C, H, W, OH, OW, p } = windowGeometry("maxPool2d", x, opts);
  const xd = noGrad(() => dense(x));
  const y = empty([N, C, OH, OW]);
  const arg = empty([N, C, OH, OW], "i32");
  if (y.size > 0) launchPlanes("maxPool2d", maxPool2dKernel(), N, C, [xd, y, arg], p, OH * OW);
  disposeCopy(xd, x);
  const out = record("maxPool2d", [x], y, (g) => {
    const gd = dense(g);
    const dx = empty(x.shape);
    if (dx.size > 0 && p.sh <= MAXPOOL_BLOCK_MAX_STRIDE && p.sw <= MAXPOOL_BLOCK_MAX_STRIDE) {
      // A thread per sh×sw block of input pixels: the covering windows read once per block.
      const blocks = Math.ceil(H / p.sh) * Math.ceil(W / p.sw);
      const k = maxPool2dBackwardBlockKernel(p.sh, p.sw);
      launchPlanes("maxPool2d backward", k, N, C, [gd, arg, dx], p, blocks);
    } else if (dx.size > 0) {
      launchPlanes("maxPool2d backward", maxPool2dBackwardKernel(), N, C, [gd, arg, dx], p, H * W);
    }
    return [dx];
  }, [arg]);
  arg.dispose();
  return out;
}

/** avg_pool2d with zero padding counted in the divisor (PyTorch's count_include_pad=True). */
export function avgPool2d(x: Tensor, opts: Pool2dOptions): Tensor {
  const { N, C, H, W, OH, OW, p } = windowGeometry("avgPool2d", x, opts);
  const xd = noGrad(() => dense(x));
  const y = empty([N, C, OH, OW]);
  if (y.size > 0) launchPlanes("avgPool2d", avgPool2dKernel(), N, C, [xd, y], p, OH * OW);
  disposeCopy(xd, x);
  return record("avgPool2d", [x], y, (g) => {
    const gd = dense(g);
    const dx = empty(x.shape);
    if (dx.size > 0) {
      launchPlanes("avgPool2d backward", avgPool2dBackwardKernel(), N, C, [gd, dx], p, H * W);
    }
    return [dx];
  });
}

/** adaptive_avg_pool2d to `[outH, outW]` with PyTorch's bins (e.g. [1, 1]: global average). */
export function adaptiveAvgPool2d(x: Tensor, outSize: [number, number] | number): Tensor {
  const name = "adaptiveAvgPool2d";
  const [N, C, H, W] = checkNchw(name, x);
  const [OH, OW] = pair(outSize);
  if (!Number.isInteger(OH) || !Number.isInteger(OW) || OH < 1 || OW < 1) {
    throw new Error(`${name}: output size must be positive integers, got [${OH}, ${OW}]`);
  }
  if (H === 0 || W === 0) throw new Error(`${name}: input ${fmt(x.shape)} has an empty plane`);
  const params = (H: number, W: number, OH: number, OW: number): Window2d => ({
    H,
    W,
    OH,
    OW,
    kh: 0,
    kw: 0,
    sh: 0,
    sw: 0,
    ph: 0,
    pw: 0,
  });
  const p = params(H, W, OH, OW);
  // Loop trips of one output (bins span at most ceil(In/Out) + 1 inputs) and of one input in
  // backward (at most ceil(Out/In) + 1 bins per axis hold it).
  const bin = (i: number, o: number) => Math.ceil(i / o) + 1;
  if (gpu().isSoftware) {
    assertLoopLimit(
      name,
      (bin(OH, H) + 1) * (bin(OW, W) + 1),
      `backward of ${fmt(x.shape)} → [${OH}, ${OW}]`,
    );
  }
  const xd = noGrad(() => dense(x));
  const y = empty([N, C, OH, OW]);
  const pool = (src: Tensor, dst: Tensor, q: Window2d) =>
    launchPlanes(name, adaptiveAvgPool2dKernel(), N, C, [src, dst], q, q.OH * q.OW);
  if (y.size > 0 && (bin(H, OH) + 1) * (bin(W, OW) + 1) <= LOOP_BUDGET) pool(xd, y, p);
  else if (y.size > 0) {
    // Bins too large for one invocation's loop budget (kernels/common.ts): average along W, then
    // along H (exact: every row of a bin has the bin's width).
    const rows = empty([N, C, H, OW]);
    pool(xd, rows, params(H, W, H, OW));
    pool(rows, y, params(H, OW, OH, OW));
    rows.dispose();
  }
  disposeCopy(xd, x);
  return record(name, [x], y, (g) => {
    const gd = dense(g);
    const dx = empty(x.shape);
    if (dx.size > 0) {
      // dx is fresh (offset 0) and its samples whole vec4s, so every chunk's dx offset is one.
      const global = OH === 1 && OW === 1 && (H * W) % 4 === 0;
      launchPlanes(
        `${name} backward`,
        global ? globalAvgPool2dBackwardKernel() : adaptiveAvgPool2dBackwardKernel(),
        N,
        C,
        [gd, dx],
        p,
        global ? H * W / 4 : H * W,
      );
    }
    return [dx];
  });
}
