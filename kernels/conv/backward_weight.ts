/**
 * conv2d weight gradient as a GEMM over K = N·OH·OW with split-K:
 * dW[o, c, ky, kx] = Σ_{n,oy,ox} dy[n, o, oy, ox] · x[n, g·Cg + c, oy·sh - ph + ky·dh, ox·sw - pw + kx·dw].
 *
 * Rows are output channels o (RO per workgroup), columns j = (c, ky, kx) (RJ per workgroup). Grid z
 * splits the K range into slices; inside a workgroup the invocations stride over the slice's
 * pixels (neighbouring invocations read neighbouring pixels: coalesced), each accumulating the
 * whole RO × RJ block in registers, and the workgroup sums its invocations' blocks through
 * workgroup memory. Each slice writes a partial block to a scratch buffer [S, O, J]; the small
 * `splitKSumKernel` adds the S partials (skipped when S = 1).
 *
 * Layout: x [N, C, H, W], dy [N, O, OH, OW], dW [O, C/groups, kh, kw].
 */
import type { Kernel } from "../kernel.ts";
import { FLAT_INDEX } from "../common.ts";
import { CONV_PARAMS, unroll } from "./forward.ts";
import { uniforms } from "../uniforms.ts";

export interface WeightGradTile {
  /** Invocations per workgroup. */
  wg: number;
  /** Output channels per workgroup. */
  ro: number;
  /** (c, ky, kx) columns per workgroup. */
  rj: number;
}

/**
 * Grid: [ceil(J / rj), groups·ceil(Og / ro), S]; `blocks` = ceil(Og / ro), `M` = N·OH·OW,
 * `chunk` = pixels per slice, `J` = Cg·kh·kw. Writes part[(zb + z)·O·J + o·J + j].
 */
export function conv2dBackwardWeightKernel(tile: WeightGradTile): Kernel {
  const { wg, ro, rj } = tile;
  const B = ro * rj;
  // The workgroup sums its invocations' blocks in rounds of CH accumulators (CH·wg floats of
  // workgroup memory, within the portable 16 KiB).
  const CH = Math.min(B, wg, Math.floor(4096 / wg));
  if (CH < 1) throw new Error(`conv2d weight-gradient tile: workgroup size ${wg} is over 4096`);
  let reduction = "";
  for (let q = 0; q * CH < B; q++) {
    const cnt = Math.min(CH, B - q * CH);
    reduction += unroll(cnt, (i) => `  red[${i * wg}u + lid] = a${q * CH + i};`) + `
  workgroupBarrier();
  if (lid < ${cnt}u) {
    var s: f32 = 0.0;
    let base = lid * ${wg}u;
    for (var l = 0u; l < ${wg}u; l++) { s += red[base + l]; }
    let col = ${q * CH}u + lid;
    let o = o0 + col / ${rj}u;
    let j = j0 + col % ${rj}u;
    if (o < u.Og && j < u.J) { part[(u.zb + wid.z) * u.O * u.J + (g * u.Og + o) * u.J + j] = s; }
  }
  workgroupBarrier();
`;
  }
  return {
    key: `conv2d/bwd_weight/wg${wg}/ro${ro}/rj${rj}`,
    wgsl: () =>
      `${CONV_PARAMS}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
var<workgroup> red: array<f32, ${CH * wg}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y / u.blocks;
  let o0 = (wid.y % u.blocks) * ${ro}u;
  let j0 = wid.x * ${rj}u;
  let HW = u.H * u.W;
  let OHW = u.OH * u.OW;
  let KK = u.kh * u.kw;
${
        unroll(rj, (j) =>
          `  let jj${j} = min(j0 + ${j}u, u.J - 1u);
  let xc${j} = i32((g * u.Cg + jj${j} / KK) * HW);
  let dyy${j} = i32((jj${j} % KK) / u.kw * u.dh) - i32(u.ph);
  let dxx${j} = i32((jj${j} % KK) % u.kw * u.dw) - i32(u.pw);`)
      }
${unroll(ro, (r) => `  let dyo${r} = (g * u.Og + min(o0 + ${r}u, u.Og - 1u)) * OHW;`)}
${unroll(B, (i) => `  var a${i}: f32 = 0.0;`)}
  let kStart = wid.z * u.chunk;
  let kEnd = min(u.M, kStart + u.chunk);
  for (var k = kStart + lid; k < kEnd; k += ${wg}u) {
    let n = k / OHW;
    let p = k - n * OHW;
    let oy = p / u.OW;
    let ox = p - oy * u.OW;
    let iy = i32(oy * u.sh);
    let ix = i32(ox * u.sw);
    let dyb = u.a1 + n * u.O * OHW + p;
    let xb = i32(u.a0 + n * u.C * HW);
${unroll(ro, (r) => `    let dv${r} = dy[dyb + dyo${r}];`)}
${
        unroll(rj, (j) =>
          `    let yy${j} = iy + dyy${j};
    let xx${j} = ix + dxx${j};
    let ok${j} = yy${j} >= 0 && yy${j} < i32(u.H) && xx${j} >= 0 && xx${j} < i32(u.W);
    let xv${j} = select(0.0, x[u32(select(0, xb + xc${j} + yy${j} * i32(u.W) + xx${j}, ok${j}))], ok${j});`)
      }
${unroll(B, (i) => `    a${i} = fma(dv${Math.floor(i / rj)}, xv${i % rj}, a${i});`)}
  }
${reduction}
}`,
  };
}

export const SPLITK_SUM_WG = 256;

/** n weights, S split-K slices to add up. */
export const SPLITK_SUM_UNIFORMS = uniforms({ n: "u32", S: "u32" });

/**
 * out[i] = Σ_{s < S} part[s·n + i], added in slice order; `accumulate`: onto out[i] (the same
 * sums, bit for bit, as adding each slice into out in turn). Uniform: n, S. Grid: grid1d(n,
 * SPLITK_SUM_WG).
 */
export function splitKSumKernel(accumulate = false, vec4 = false): Kernel {
  if (vec4) return splitKSum4Kernel(accumulate);
  return {
    key: `conv2d/splitk_sum${accumulate ? "/acc" : ""}`,
    wgsl: () =>
      `${SPLITK_SUM_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${FLAT_INDEX}
@compute @workgroup_size(${SPLITK_SUM_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${SPLITK_SUM_WG}u);
  if (i >= u.n) { return; }
  var s: f32 = ${accumulate ? "out[i]" : "0.0"};
  for (var k = 0u; k < u.S; k++) { s += part[k * u.n + i]; }
  out[i] = s;
}`,
  };
}

/**
 * {@link splitKSumKernel} four weights a thread (vec4 loads: a storage load is a per-lane loop on
 * CPU rasterisers); the same sums. n counts vec4s; part's slices and out are whole vec4s.
 */
function splitKSum4Kernel(accumulate: boolean): Kernel {
  return {
    key: `conv2d/splitk_sum4${accumulate ? "/acc" : ""}`,
    wgsl: () =>
      `${SPLITK_SUM_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;
${FLAT_INDEX}
@compute @workgroup_size(${SPLITK_SUM_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${SPLITK_SUM_WG}u);
  if (i >= u.n) { return; }
  var s = ${accumulate ? "out[i]" : "vec4<f32>(0.0)"};
  for (var k = 0u; k < u.S; k++) { s += part[k * u.n + i]; }
  out[i] = s;
}`,
  };
}
