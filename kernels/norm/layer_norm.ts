/**
 * Layer normalisation over rows (see kernels/softmax.ts for the row addressing): torch's
 * layer_norm is rows of the trailing `normalized_shape` elements (inner = 1); SAM's LayerNorm2d is
 * rows of the C channels of one pixel (inner = H·W). Statistics are two-pass within the row
 * (mean, then mean of squared deviations), so large offsets do not cancel.
 *
 * Forward saves per-row mean and rstd = 1/sqrt(var + eps). Backward for x is fused per row:
 *   ĝ = g·w, dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)),
 * and the parameter gradients dw[k] = Σ_rows g·x̂, db[k] = Σ_rows g take a workgroup per column.
 */
import type { Kernel } from "../kernel.ts";
import { type RowMode, rowModeKey, rowPrelude } from "../softmax.ts";
import { uniforms } from "../uniforms.ts";
import { pairSum, pairSumScratch } from "./pair_sum.ts";

/** Rows as in softmax (kernels/softmax.ts), and the variance epsilon. */
export const LAYER_NORM_UNIFORMS = uniforms({ rows: "u32", L: "u32", inner: "u32", eps: "f32" });
const PARAMS = `${LAYER_NORM_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;`;

const ROW_BASE = `  let base = (row / u.inner) * u.L * u.inner + row % u.inner;
  let st = u.inner;`;

/**
 * The forward's uniform block and bindings: x, y (items of type `e`), mean, rstd (f32 per row),
 * then weight and bias (`e`) where present, numbered in that order.
 */
function forwardBindings(e: string, hasW: boolean, hasB: boolean): string {
  let b = 5;
  const wDecl = hasW ? `@group(0) @binding(${b++}) var<storage, read> w: array<${e}>;` : "";
  const bDecl = hasB ? `@group(0) @binding(${b++}) var<storage, read> bias: array<${e}>;` : "";
  return `${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<${e}>;
@group(0) @binding(2) var<storage, read_write> y: array<${e}>;
@group(0) @binding(3) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd_out: array<f32>;
${wDecl}
${bDecl}`;
}

/**
 * Bindings: x, y, mean, rstd, [weight], [bias]. `vec4`: a thread per row reading and writing
 * vec4s (thread row mode, inner = 1, L a multiple of 4; {@link layerNormVec4}): a quarter of the
 * loads, each a per-lane loop on software adapters (ViT-B's 4096 rows of 768: BENCHMARKS.md).
 */
export function layerNormKernel(
  m: RowMode,
  hasW: boolean,
  hasB: boolean,
  vec4 = false,
): Kernel {
  if (vec4) {
    if (m.wg !== 0) throw new Error("layerNormKernel: vec4 rows need the thread row mode");
    return layerNormVec4Kernel(hasW, hasB);
  }
  return {
    key: `layernorm/${rowModeKey(m)}/${hasW ? "w" : "-"}${hasB ? "b" : "-"}`,
    wgsl: () => {
      const { decls, head } = rowPrelude(m);
      return `${forwardBindings("f32", hasW, hasB)}
${decls}
${head}
${ROW_BASE}
  let n = f32(u.L);
  var s = 0.0;
  for (var k = l; k < u.L; k += W) { s += x[base + k * st]; }
  let mu = red_sum(l, s) / n;
  var q = 0.0;
  for (var k = l; k < u.L; k += W) { let d = x[base + k * st] - mu; q += d * d; }
  let rstd = inverseSqrt(red_sum(l, q) / n + u.eps);
  for (var k = l; k < u.L; k += W) {
    let idx = base + k * st;
    y[idx] = (x[idx] - mu) * rstd${hasW ? " * w[k]" : ""}${hasB ? " + bias[k]" : ""};
  }
  if (l == 0u) { mean_out[row] = mu; rstd_out[row] = rstd; }
}`;
    },
  };
}

let vec4Rows = true;

/** Turns the vec4 rows off (false) or on; returns the old setting (A/B benchmarks, tests). */
export function setLayerNormVec4Rows(on: boolean): boolean {
  const old = vec4Rows;
  vec4Rows = on;
  return old;
}

/** Whether {@link layerNormKernel} takes vec4 rows for this row layout and mode. */
export function layerNormVec4(m: RowMode, L: number, inner: number): boolean {
  return vec4Rows && m.wg === 0 && inner === 1 && L % 4 === 0 && L > 0;
}

function layerNormVec4Kernel(hasW: boolean, hasB: boolean): Kernel {
  return {
    key: `layernorm/thread-v4/${hasW ? "w" : "-"}${hasB ? "b" : "-"}`,
    wgsl: () => {
      const { decls, head } = rowPrelude({ wg: 0 });
      const V = "vec4<f32>";
      return `${forwardBindings(V, hasW, hasB)}
${decls}
${head}
  let L4 = u.L / 4u;
  let base = row * L4;
  let n = f32(u.L);
  var s = vec4<f32>(0.0);
  for (var k = 0u; k < L4; k++) { s += x[base + k]; }
  let mu = (s.x + s.y + s.z + s.w) / n;
  var q = vec4<f32>(0.0);
  for (var k = 0u; k < L4; k++) { let d = x[base + k] - ${V}(mu); q += d * d; }
  let rstd = inverseSqrt((q.x + q.y + q.z + q.w) / n + u.eps);
  for (var k = 0u; k < L4; k++) {
    y[base + k] = (x[base + k] - ${V}(mu)) * rstd${hasW ? " * w[k]" : ""}${
        hasB ? " + bias[k]" : ""
      };
  }
  mean_out[row] = mu;
  rstd_out[row] = rstd;
}`;
    },
  };
}

/** Bindings: x, g, mean, rstd, [weight], dx. */
export function layerNormBackwardKernel(m: RowMode, hasW: boolean): Kernel {
  return {
    key: `layernorm-bwd/${rowModeKey(m)}/${hasW ? "w" : "-"}`,
    wgsl: () => {
      const { decls, head } = rowPrelude(m);
      const gw = hasW ? "g[idx] * w[k]" : "g[idx]";
      return `${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> mean_in: array<f32>;
@group(0) @binding(4) var<storage, read> rstd_in: array<f32>;
${hasW ? "@group(0) @binding(5) var<storage, read> w: array<f32>;" : ""}
@group(0) @binding(${hasW ? 6 : 5}) var<storage, read_write> dx: array<f32>;
${decls}
${head}
${ROW_BASE}
  let n = f32(u.L);
  let mu = mean_in[row];
  let rstd = rstd_in[row];
  var a = 0.0;
  var b = 0.0;
  for (var k = l; k < u.L; k += W) {
    let idx = base + k * st;
    let gh = ${gw};
    a += gh;
    b += gh * (x[idx] - mu) * rstd;
  }
  a = red_sum(l, a) / n;
  b = red_sum(l, b) / n;
  for (var k = l; k < u.L; k += W) {
    let idx = base + k * st;
    let gh = ${gw};
    dx[idx] = rstd * (gh - a - (x[idx] - mu) * rstd * b);
  }
}`;
    },
  };
}

const LN_PARAM_WG = 256;

/**
 * Parameter gradients: a workgroup per column k sums over the rows. Bindings: x, g, mean, rstd,
 * dw, db. Grid: L workgroups (folded into x/y).
 */
export function layerNormParamGradKernel(): Kernel {
  const w = LN_PARAM_WG;
  return {
    key: `layernorm-bwd-params/${w}`,
    wgsl: () =>
      `${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> mean_in: array<f32>;
@group(0) @binding(4) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> dw: array<f32>;
@group(0) @binding(6) var<storage, read_write> db: array<f32>;
${pairSumScratch(w)}
@compute @workgroup_size(${w})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
  let k = wid.x + wid.y * nwg.x;
  if (k >= u.L) { return; }
  var a = 0.0;
  var b = 0.0;
  for (var r = l; r < u.rows; r += ${w}u) {
    let idx = (r / u.inner) * u.L * u.inner + k * u.inner + r % u.inner;
    let gv = g[idx];
    a += gv * (x[idx] - mean_in[r]) * rstd_in[r];
    b += gv;
  }
${pairSum(w, "a", "b")}
  if (l == 0u) { dw[k] = ra[0]; db[k] = rb[0]; }
}`,
  };
}
