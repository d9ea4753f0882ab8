/**
 * BatchNorm2d over NCHW: per-channel statistics over (N, H, W) with a workgroup per channel, a
 * normalise kernel (a thread per element), and the backward pair (per-channel Σg and Σg·x̂, then
 * dx).
 *
 * Statistics are one pass of shifted sums: with K = the channel's first element,
 * mean = K + Σ(x−K)/n and var = Σ(x−K)²/n − (Σ(x−K)/n)², which keeps the cancellation of the
 * textbook sum/sum-of-squares formula away when |mean| ≫ std. In training the same kernel updates
 * the running statistics in place as PyTorch does (unbiased variance, momentum).
 */
import type { Kernel } from "../../engine/dispatch.ts";
import { FLAT_INDEX } from "../common.ts";

export const BN_WG = 256;

/** Uniforms: N, C, HW, eps, momentum, pads. */
const PARAMS =
  `struct P { N: u32, C: u32, HW: u32, eps: f32, momentum: f32, p0: u32, p1: u32, p2: u32 }
@group(0) @binding(0) var<uniform> u: P;`;

const REDUCE2 = (w: number) =>
  `var<workgroup> ra: array<f32, ${w}>;
var<workgroup> rb: array<f32, ${w}>;
fn red2(l: u32, a: f32, b: f32) -> vec2<f32> {
  ra[l] = a;
  rb[l] = b;
  workgroupBarrier();
  for (var s = ${w / 2}u; s > 0u; s = s >> 1u) {
    if (l < s) { ra[l] = ra[l] + ra[l + s]; rb[l] = rb[l] + rb[l + s]; }
    workgroupBarrier();
  }
  return vec2<f32>(ra[0], rb[0]);
}`;

/**
 * Batch statistics: bindings x, mean[C], invstd[C] (+ runningMean, runningVar when `update`).
 * Grid: C workgroups (folded into x/y).
 */
export function batchNormStatsKernel(update: boolean): Kernel {
  const w = BN_WG;
  return {
    key: `batchnorm-stats/${w}/${update ? "update" : "-"}`,
    wgsl: () =>
      `${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> invstd_out: array<f32>;
${
        update
          ? `@group(0) @binding(4) var<storage, read_write> rmean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rvar: array<f32>;`
          : ""
      }
${REDUCE2(w)}
@compute @workgroup_size(${w})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
  let c = wid.x + wid.y * nwg.x;
  if (c >= u.C) { return; }
  let count = u.N * u.HW;
  let shift = x[c * u.HW];
  var s1 = 0.0;
  var s2 = 0.0;
  for (var j = l; j < count; j += ${w}u) {
    let d = x[((j / u.HW) * u.C + c) * u.HW + j % u.HW] - shift;
    s1 += d;
    s2 += d * d;
  }
  let r = red2(l, s1, s2);
  if (l == 0u) {
    let n = f32(count);
    let dm = r.x / n;
    let v = max(r.y / n - dm * dm, 0.0);
    let mu = shift + dm;
    mean_out[c] = mu;
    invstd_out[c] = inverseSqrt(v + u.eps);
    ${
        update
          ? `rmean[c] = (1.0 - u.momentum) * rmean[c] + u.momentum * mu;
    rvar[c] = (1.0 - u.momentum) * rvar[c] + u.momentum * v * n / max(n - 1.0, 1.0);`
          : ""
      }
  }
}`,
  };
}

export const BN_EW_WG = 256;

/** y = (x − mean[c]) · invstd[c] · w[c] + b[c]. Bindings: x, mean, invstd, [w], [b], y. */
export function batchNormApplyKernel(hasW: boolean, hasB: boolean): Kernel {
  return {
    key: `batchnorm-apply/${hasW ? "w" : "-"}${hasB ? "b" : "-"}`,
    wgsl: () => {
      let b = 4;
      const wDecl = hasW ? `@group(0) @binding(${b++}) var<storage, read> w: array<f32>;` : "";
      const bDecl = hasB ? `@group(0) @binding(${b++}) var<storage, read> bias: array<f32>;` : "";
      return `${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean_in: array<f32>;
@group(0) @binding(3) var<storage, read> invstd_in: array<f32>;
${wDecl}
${bDecl}
@group(0) @binding(${b}) var<storage, read_write> y: array<f32>;
${FLAT_INDEX}
@compute @workgroup_size(${BN_EW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${BN_EW_WG}u);
  if (i >= u.N * u.C * u.HW) { return; }
  let c = (i / u.HW) % u.C;
  y[i] = (x[i] - mean_in[c]) * invstd_in[c]${hasW ? " * w[c]" : ""}${hasB ? " + bias[c]" : ""};
}`;
    },
  };
}

/** Per-channel Σg and Σg·x̂. Bindings: x, g, mean, invstd, sumG[C], sumGXhat[C]. Grid: C. */
export function batchNormBackwardReduceKernel(): Kernel {
  const w = BN_WG;
  return {
    key: `batchnorm-bwd-reduce/${w}`,
    wgsl: () =>
      `${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> mean_in: array<f32>;
@group(0) @binding(4) var<storage, read> invstd_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> sum_g: array<f32>;
@group(0) @binding(6) var<storage, read_write> sum_gx: array<f32>;
${REDUCE2(w)}
@compute @workgroup_size(${w})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
  let c = wid.x + wid.y * nwg.x;
  if (c >= u.C) { return; }
  let count = u.N * u.HW;
  let mu = mean_in[c];
  let is = invstd_in[c];
  var a = 0.0;
  var b = 0.0;
  for (var j = l; j < count; j += ${w}u) {
    let idx = ((j / u.HW) * u.C + c) * u.HW + j % u.HW;
    let gv = g[idx];
    a += gv;
    b += gv * (x[idx] - mu) * is;
  }
  let r = red2(l, a, b);
  if (l == 0u) { sum_g[c] = r.x; sum_gx[c] = r.y; }
}`,
  };
}

/**
 * Training-mode dx = w·invstd·(g − Σg/n − x̂·Σg·x̂/n) (eval mode's dx = w·invstd·g is a broadcast
 * multiply). Bindings: x, g, mean, invstd, [w], sumG, sumGXhat, dx.
 */
export function batchNormBackwardDxKernel(hasW: boolean): Kernel {
  return {
    key: `batchnorm-bwd-dx/${hasW ? "w" : "-"}`,
    wgsl: () => {
      const b = hasW ? 6 : 5;
      return `${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> mean_in: array<f32>;
@group(0) @binding(4) var<storage, read> invstd_in: array<f32>;
${hasW ? "@group(0) @binding(5) var<storage, read> w: array<f32>;" : ""}
@group(0) @binding(${b}) var<storage, read> sum_g: array<f32>;
@group(0) @binding(${b + 1}) var<storage, read> sum_gx: array<f32>;
@group(0) @binding(${b + 2}) var<storage, read_write> dx: array<f32>;
${FLAT_INDEX}
@compute @workgroup_size(${BN_EW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${BN_EW_WG}u);
  if (i >= u.N * u.C * u.HW) { return; }
  let c = (i / u.HW) % u.C;
  let n = f32(u.N * u.HW);
  let xh = (x[i] - mean_in[c]) * invstd_in[c];
  dx[i] = invstd_in[c]${hasW ? " * w[c]" : ""} * (g[i] - sum_g[c] / n - xh * sum_gx[c] / n);
}`;
    },
  };
}
