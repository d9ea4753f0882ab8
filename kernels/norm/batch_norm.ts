/**
 * BatchNorm2d over NCHW: per-channel statistics over (N, H, W) with a workgroup per channel, a
 * normalise kernel (a thread per element), and the backward pair (per-channel Σg and Σg·x̂, then
 * dx).
 *
 * Statistics are one pass of shifted sums: with K = the channel's first element,
 * mean = K + Σ(x−K)/n and var = Σ(x−K)²/n − (Σ(x−K)/n)², which keeps the cancellation of the
 * textbook sum/sum-of-squares formula away when |mean| ≫ std. In training the same kernel updates
 * the running statistics in place as PyTorch does (unbiased variance, momentum).
 *
 * A batch too large for one binding runs as several dispatches over runs of samples (offsets o0..o2
 * of the split operands in the uniform block). The two per-channel reductions then carry each
 * lane's running sums in a `state` buffer from one dispatch to the next, lanes rotated by `rot`
 * so that every lane sees the same elements in the same order as unsplit: the result is
 * bit-identical to one dispatch.
 */
import type { Kernel } from "../kernel.ts";
import { FLAT_INDEX } from "../common.ts";
import { uniforms } from "../uniforms.ts";
import { pairSum, pairSumScratch } from "./pair_sum.ts";

export const BN_WG = 256;

/**
 * Uniforms: N (samples in this dispatch), C, HW, eps, momentum, o0..o2 and o3 (element offsets
 * of the split operands in their bindings), total (values per channel over the whole batch), rot (first
 * value's index in this dispatch, mod BN_WG).
 */
export const BATCH_NORM_UNIFORMS = uniforms({
  N: "u32",
  C: "u32",
  HW: "u32",
  eps: "f32",
  momentum: "f32",
  o0: "u32",
  o1: "u32",
  o2: "u32",
  total: "u32",
  rot: "u32",
  o3: "u32",
  _pad1: "u32",
});
const PARAMS = `${BATCH_NORM_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;`;

const REDUCE2 = (w: number) =>
  `${pairSumScratch(w)}
fn red2(l: u32, a: f32, b: f32) -> vec2<f32> {
${pairSum(w, "a", "b")}
  return vec2<f32>(ra[0], rb[0]);
}`;

/**
 * A per-channel reduction kernel after its storage declarations: `red2`, and a workgroup of `w`
 * lanes `l` per channel `c` (past u.C: returns) whose carried state starts at `sb`; then `body`.
 */
function channelReduce(decls: string, w: number, stateSize: number, body: string): string {
  return `${PARAMS}
${decls}
${REDUCE2(w)}
${HSUM}
@compute @workgroup_size(${w})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
  let c = wid.x + wid.y * nwg.x;
  if (c >= u.C) { return; }
  let sb = c * ${stateSize}u;
${body}
}`;
}

/**
 * The per-channel reduction loop of lane `l`: the channel's units (values, or vec4s where `V` is
 * 4) j ≡ l − rot (mod w) of the flattened (sample, pixel) unit index in increasing order, as a loop
 * over samples and a strided loop over pixels so no value costs an integer division (scalarised on
 * CPU rasterisers). `body(idx)` reads unit `idx` (relative to the operand's offset in units).
 */
function laneLoop(w: number, V: number, body: (idx: string) => string): string {
  return `  let HWv = u.HW / ${V}u;
  for (var n = 0u; n < u.N; n++) {
    let base = (n * u.C + c) * HWv;
    for (var hw = (l + ${2 * w}u - u.rot - (n * HWv) % ${w}u) % ${w}u; hw < HWv; hw += ${w}u) {
${body("base + hw")}
    }
  }`;
}

/** The sum of a vec4's components in a fixed order (pairs first). */
const HSUM = `fn hsum(v: vec4<f32>) -> f32 { return (v.x + v.y) + (v.z + v.w); }`;

/** Floats of carried state per channel for `w` lanes: the statistics' shift, two sums per lane. */
export const bnStatsState = (w: number) => 2 * w + 1;
/** Floats of carried state per channel in the backward reduction for `w` lanes: two sums per lane. */
export const bnBwdState = (w: number) => 2 * w;

/** Stage of a per-channel reduction split over dispatches (both true: one dispatch). */
export interface BnStage {
  first: boolean;
  last: boolean;
}
const WHOLE: BnStage = { first: true, last: true };
const stageKey = (s: BnStage) =>
  s.first && s.last ? "" : `/${s.first ? "f" : ""}${s.last ? "l" : "m"}`;

/**
 * Batch statistics: bindings x, mean[C], invstd[C] (+ runningMean, runningVar when `update`).
 * Split over dispatches: x, state [C·BN_STATS_STATE], then the outputs in the last dispatch only.
 * Grid: C workgroups (folded into x/y). `vec`: x read as vec4s (H·W and the offset multiples of 4;
 * `rot` then counts vec4s), each lane adding a vec4's shifted values and squares in a fixed order:
 * a quarter of the loads, which bound this kernel on software adapters (a per-lane loop each).
 */
export function batchNormStatsKernel(
  update: boolean,
  stage: BnStage = WHOLE,
  vec = false,
  w = BN_WG,
): Kernel {
  const V = vec ? 4 : 1;
  const T = vec ? "vec4<f32>" : "f32";
  const sum = (e: string) => vec ? `hsum(${e})` : e;
  const { first, last } = stage;
  const split = !(first && last);
  const ob = split ? 3 : 2;
  return {
    key: `batchnorm-stats/${w}/${update ? "update" : "-"}${stageKey(stage)}${vec ? "/v4" : ""}`,
    wgsl: () =>
      channelReduce(
        `@group(0) @binding(1) var<storage, read> x: array<${T}>;
${split ? "@group(0) @binding(2) var<storage, read_write> state: array<f32>;" : ""}
${
          last
            ? `@group(0) @binding(${ob}) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(${ob + 1}) var<storage, read_write> invstd_out: array<f32>;`
            : ""
        }
${
          last && update
            ? `@group(0) @binding(${ob + 2}) var<storage, read_write> rmean: array<f32>;
@group(0) @binding(${ob + 3}) var<storage, read_write> rvar: array<f32>;`
            : ""
        }`,
        w,
        bnStatsState(w),
        `  let shift = ${first ? `x[(u.o0 + c * u.HW) / ${V}u]${vec ? ".x" : ""}` : "state[sb]"};
  ${first && split ? "if (l == 0u) { state[sb] = shift; }" : ""}
  var s1 = ${first ? "0.0" : "state[sb + 1u + l]"};
  var s2 = ${first ? "0.0" : `state[sb + ${1 + w}u + l]`};
${
          laneLoop(w, V, (idx) =>
            `    let d = x[u.o0 / ${V}u + ${idx}] - ${T}(shift);
    s1 += ${sum("d")};
    s2 += ${sum("d * d")};`)
        }
${
          last
            ? `  let r = red2(l, s1, s2);
  if (l == 0u) {
    let n = f32(u.total);
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
  }`
            : `  state[sb + 1u + l] = s1;
  state[sb + ${1 + w}u + l] = s2;`
        }`,
      ),
  };
}

export const BN_EW_WG = 256;

/**
 * A kernel with a thread per element (of `V` floats: vec4 or f32) after its storage declarations:
 * thread `i` past the end returns; `c` is its channel; then `body`.
 */
function perElement(decls: string, V: number, body: string): string {
  return `${PARAMS}
${decls}
${FLAT_INDEX}
@compute @workgroup_size(${BN_EW_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${BN_EW_WG}u);
  if (i >= u.N * u.C * u.HW / ${V}u) { return; }
  let c = (i * ${V}u / u.HW) % u.C;
${body}
}`;
}

/**
 * y = (x − mean[c]) · invstd[c] · w[c] + b[c], then + r (`residual`: a tensor of x's shape, at
 * offset o2), then max(y, 0) with `relu` (F.add's and F.relu's formulas, in the same pass).
 * Bindings: x, mean, invstd, [w], [b], y, [r].
 */
export function batchNormApplyKernel(
  hasW: boolean,
  hasB: boolean,
  vec = false,
  relu = false,
  residual = false,
): Kernel {
  const T = vec ? "vec4<f32>" : "f32";
  const V = vec ? 4 : 1;
  const sum = (e: string) => residual ? `(${e}) + res[u.o2 / ${V}u + i]` : e;
  const out = (e: string) => relu ? `max(${sum(e)}, ${T}(0.0))` : sum(e);
  return {
    key: `batchnorm-apply/${hasW ? "w" : "-"}${hasB ? "b" : "-"}${vec ? "/v4" : ""}${
      relu ? "/relu" : ""
    }${residual ? "/res" : ""}`,
    wgsl: () => {
      let b = 4;
      const wDecl = hasW ? `@group(0) @binding(${b++}) var<storage, read> w: array<f32>;` : "";
      const bDecl = hasB ? `@group(0) @binding(${b++}) var<storage, read> bias: array<f32>;` : "";
      return perElement(
        `@group(0) @binding(1) var<storage, read> x: array<${T}>;
@group(0) @binding(2) var<storage, read> mean_in: array<f32>;
@group(0) @binding(3) var<storage, read> invstd_in: array<f32>;
${wDecl}
${bDecl}
@group(0) @binding(${b}) var<storage, read_write> y: array<${T}>;
${residual ? `@group(0) @binding(${b + 1}) var<storage, read> res: array<${T}>;` : ""}`,
        V,
        `  let scale = invstd_in[c]${hasW ? " * w[c]" : ""};
  y[u.o1 / ${V}u + i] = ${
          out(
            `(x[u.o0 / ${V}u + i] - ${T}(mean_in[c])) * ${T}(scale)${
              hasB ? ` + ${T}(bias[c])` : ""
            }`,
          )
        };`,
      );
    },
  };
}

/**
 * Per-channel Σg and Σg·x̂. Bindings: x, g, mean, invstd, sumG[C], sumGXhat[C]. Split over
 * dispatches: x, g, mean, invstd, state [C·BN_BWD_STATE], then the sums in the last dispatch only.
 * Grid: C. `vec`: x and g read as vec4s, as {@link batchNormStatsKernel}. `relu`: g is the gradient
 * of max(y, 0), masked here as relu's backward does (where the output y > 0); y bound last, at
 * offset o3.
 */
export function batchNormBackwardReduceKernel(
  stage: BnStage = WHOLE,
  vec = false,
  w = BN_WG,
  relu = false,
): Kernel {
  const V = vec ? 4 : 1;
  const T = vec ? "vec4<f32>" : "f32";
  const sum = (e: string) => vec ? `hsum(${e})` : e;
  const { first, last } = stage;
  const split = !(first && last);
  const ob = split ? 6 : 5;
  const yb = last ? ob + 2 : ob;
  return {
    key: `batchnorm-bwd-reduce/${w}${stageKey(stage)}${vec ? "/v4" : ""}${relu ? "/relu" : ""}`,
    wgsl: () =>
      channelReduce(
        `@group(0) @binding(1) var<storage, read> x: array<${T}>;
@group(0) @binding(2) var<storage, read> g: array<${T}>;
@group(0) @binding(3) var<storage, read> mean_in: array<f32>;
@group(0) @binding(4) var<storage, read> invstd_in: array<f32>;
${split ? "@group(0) @binding(5) var<storage, read_write> state: array<f32>;" : ""}
${
          last
            ? `@group(0) @binding(${ob}) var<storage, read_write> sum_g: array<f32>;
@group(0) @binding(${ob + 1}) var<storage, read_write> sum_gx: array<f32>;`
            : ""
        }
${relu ? `@group(0) @binding(${yb}) var<storage, read> ym: array<${T}>;` : ""}`,
        w,
        bnBwdState(w),
        `  let mu = mean_in[c];
  let is = invstd_in[c];
  var a = ${first ? "0.0" : "state[sb + l]"};
  var b = ${first ? "0.0" : `state[sb + ${w}u + l]`};
${
          laneLoop(w, V, (idx) =>
            `    let gv = ${
              relu
                ? `select(${T}(0.0), g[u.o1 / ${V}u + ${idx}], ym[u.o3 / ${V}u + ${idx}] > ${T}(0.0))`
                : `g[u.o1 / ${V}u + ${idx}]`
            };
    a += ${sum("gv")};
    b += ${sum(`gv * (x[u.o0 / ${V}u + ${idx}] - ${T}(mu)) * is`)};`)
        }
${
          last
            ? `  let r = red2(l, a, b);
  if (l == 0u) { sum_g[c] = r.x; sum_gx[c] = r.y; }`
            : `  state[sb + l] = a;
  state[sb + ${w}u + l] = b;`
        }`,
      ),
  };
}

/**
 * Training-mode dx = w·invstd·(g − Σg/n − x̂·Σg·x̂/n) (eval mode's dx = w·invstd·g is a broadcast
 * multiply). Bindings: x, g, mean, invstd, [w], sumG, sumGXhat, dx, then with `relu` the output y
 * (at offset o3) that masks g as in {@link batchNormBackwardReduceKernel}.
 */
export function batchNormBackwardDxKernel(hasW: boolean, vec = false, relu = false): Kernel {
  const T = vec ? "vec4<f32>" : "f32";
  const V = vec ? 4 : 1;
  const gv = relu
    ? `select(${T}(0.0), g[u.o1 / ${V}u + i], ym[u.o3 / ${V}u + i] > ${T}(0.0))`
    : `g[u.o1 / ${V}u + i]`;
  return {
    key: `batchnorm-bwd-dx/${hasW ? "w" : "-"}${vec ? "/v4" : ""}${relu ? "/relu" : ""}`,
    wgsl: () => {
      const b = hasW ? 6 : 5;
      return perElement(
        `@group(0) @binding(1) var<storage, read> x: array<${T}>;
@group(0) @binding(2) var<storage, read> g: array<${T}>;
@group(0) @binding(3) var<storage, read> mean_in: array<f32>;
@group(0) @binding(4) var<storage, read> invstd_in: array<f32>;
${hasW ? "@group(0) @binding(5) var<storage, read> w: array<f32>;" : ""}
@group(0) @binding(${b}) var<storage, read> sum_g: array<f32>;
@group(0) @binding(${b + 1}) var<storage, read> sum_gx: array<f32>;
@group(0) @binding(${b + 2}) var<storage, read_write> dx: array<${T}>;
${relu ? `@group(0) @binding(${b + 3}) var<storage, read> ym: array<${T}>;` : ""}`,
        V,
        `  let n = f32(u.total);
  let is = invstd_in[c];
  let xh = (x[u.o0 / ${V}u + i] - ${T}(mean_in[c])) * ${T}(is);
  dx[u.o2 / ${V}u + i] = ${T}(is${
          hasW ? " * w[c]" : ""
        }) * (${gv} - ${T}(sum_g[c] / n) - xh * ${T}(sum_gx[c] / n));`,
      );
    },
  };
}
