/**
 * Fused attention backward, FlashAttention-2 style: probabilities are recomputed from q, k and the
 * forward's log-sum-exp instead of stored, and every output has one owner so no float atomics are
 * needed.
 *
 * - `attentionBackwardQKernel`: a workgroup per query block loops over key tiles; it writes dQ,
 *   D_i = Σ dO_i·O_i (read by the second pass) and the bias gradients dRelH, dRelW (row i is
 *   owned by query i's thread).
 * - `attentionBackwardKVKernel`: a workgroup per key block loops over query tiles and writes dK
 *   and dV.
 *
 * With P = softmax(S) and dS = P ∘ (dO·Vᵀ − D): dV = Pᵀ·dO, dQ = scale·dS·K, dK = scale·dSᵀ·Q.
 * Like the forward, one dispatch covers a chunk [c0, c1) of the looped-over axis (see forward.ts);
 * partial sums are carried in the outputs between chunks and scaled by the last one.
 */
import type { Kernel } from "../kernel.ts";
import { ATTN_PARAMS, ATTN_WG, attnTile, biasExpr, QUERY_ROW } from "./forward.ts";
import { storageDecls } from "../common.ts";

/** Storage bindings of the dQ pass (the op checks the adapter allows them). */
export function attentionBackwardQBindings(bias: boolean): number {
  return bias ? 12 : 9;
}

/** dQ / D / dRelH / dRelW pass for head dimension `d`. */
export function attentionBackwardQKernel(d: number, bias: boolean): Kernel {
  const bk = attnTile(d);
  const decls = storageDecls([
    "read> q",
    "read> k",
    "read> v",
    "read> dout",
    "read> o",
    "read> lse",
    ...(bias ? ["read> relH", "read> relW"] : []),
    "read_write> dq",
    "read_write> dd",
    ...(bias ? ["read_write> dRelH", "read_write> dRelW"] : []),
  ]);
  // Keys are visited in order, so j / kw only grows: dRelH accumulates in a register and is
  // stored when the grid row changes; dRelW's first grid row stores, later rows add.
  // Keys are visited in order, so j / kw only grows: dRelH accumulates in a register and is
  // stored when the grid row changes (a row split by a chunk boundary is reloaded); dRelW's first
  // grid row stores, later rows add.
  const biasGrad = bias
    ? /* wgsl */ `
      let a = j / u.kw;
      let bw = rb * u.kw + j % u.kw;
      if (a != curA) { if (valid) { dRelH[rb * u.kh + curA] = hAcc; } curA = a; hAcc = 0.0; }
      hAcc += ds;
      if (valid) { if (a == 0u) { dRelW[bw] = ds; } else { dRelW[bw] += ds; } }`
    : "";
  return {
    key: `attention/backward-q/d${d}/bk${bk}/wg${ATTN_WG}/${bias ? "bias" : "plain"}`,
    wgsl: () => /* wgsl */ `
${ATTN_PARAMS}
${decls}
const D = ${d}u;
const BK = ${bk}u;
const WG = ${ATTN_WG}u;
var<workgroup> ks: array<f32, ${bk * d}>;
var<workgroup> vs: array<f32, ${bk * d}>;

@compute @workgroup_size(${ATTN_WG})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
${QUERY_ROW}
  let first = u.c0 == 0u;
  var qr: array<f32, ${d}>;
  var dor: array<f32, ${d}>;
  var acc: array<f32, ${d}>;
  var di = 0.0;
  for (var c = 0u; c < D; c++) {
    qr[c] = q[rb * D + c] * u.scale;
    dor[c] = dout[rb * D + c];
    di += dor[c] * o[rb * D + c];
    acc[c] = select(dq[rb * D + c], 0.0, first);
  }
  let li = lse[rb];
  var curA = u.c0 / u.kw;
  var hAcc = 0.0;${bias ? "\n  if (u.c0 % u.kw != 0u) { hAcc = dRelH[rb * u.kh + curA]; }" : ""}
  let kb = g * u.nk * D;
  for (var k0 = u.c0; k0 < u.c1; k0 += BK) {
    let cnt = min(BK, u.c1 - k0);
    workgroupBarrier();
    for (var e = t; e < cnt * D; e += WG) {
      ks[e] = k[kb + k0 * D + e];
      vs[e] = v[kb + k0 * D + e];
    }
    workgroupBarrier();
    for (var jj = 0u; jj < cnt; jj++) {
      let j = k0 + jj;
      var sd = 0.0;
      var dp = 0.0;
      for (var c = 0u; c < D; c++) {
        sd += qr[c] * ks[jj * D + c];
        dp += dor[c] * vs[jj * D + c];
      }
      let p = exp(sd${biasExpr(bias, "j")} - li);
      let ds = p * (dp - di);
      for (var c = 0u; c < D; c++) { acc[c] += ds * ks[jj * D + c]; }${biasGrad}
    }
  }
  if (valid) {
    let f = select(1.0, u.scale, u.c1 == u.nk);
    for (var c = 0u; c < D; c++) { dq[rb * D + c] = acc[c] * f; }
    dd[rb] = di;${bias ? "\n    dRelH[rb * u.kh + curA] = hAcc;" : ""}
  }
}`,
  };
}

/** dK / dV pass for head dimension `d` (reads D from the dQ pass). */
export function attentionBackwardKVKernel(d: number, bias: boolean): Kernel {
  const bq = attnTile(d);
  const decls = storageDecls([
    "read> q",
    "read> k",
    "read> v",
    "read> dout",
    "read> lse",
    "read> dd",
    ...(bias ? ["read> relH", "read> relW"] : []),
    "read_write> dk",
    "read_write> dv",
  ]);
  return {
    key: `attention/backward-kv/d${d}/bq${bq}/wg${ATTN_WG}/${bias ? "bias" : "plain"}`,
    wgsl: () => /* wgsl */ `
${ATTN_PARAMS}
${decls}
const D = ${d}u;
const BQ = ${bq}u;
const WG = ${ATTN_WG}u;
var<workgroup> qs: array<f32, ${bq * d}>;
var<workgroup> dos: array<f32, ${bq * d}>;
var<workgroup> ls: array<f32, ${bq}>;
var<workgroup> dds: array<f32, ${bq}>;

@compute @workgroup_size(${ATTN_WG})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let g = wid.y;
  let j = min(wid.x * WG + t, u.nk - 1u);
  let valid = wid.x * WG + t < u.nk;
  let first = u.c0 == 0u;
  let kr0 = (g * u.nk + j) * D;
  var kr: array<f32, ${d}>;
  var vr: array<f32, ${d}>;
  var ak: array<f32, ${d}>;
  var av: array<f32, ${d}>;
  for (var c = 0u; c < D; c++) {
    kr[c] = k[kr0 + c] * u.scale;
    vr[c] = v[kr0 + c];
    ak[c] = select(dk[kr0 + c], 0.0, first);
    av[c] = select(dv[kr0 + c], 0.0, first);
  }
  let qb = g * u.nq;
  for (var q0 = u.c0; q0 < u.c1; q0 += BQ) {
    let cnt = min(BQ, u.c1 - q0);
    workgroupBarrier();
    for (var e = t; e < cnt * D; e += WG) {
      qs[e] = q[(qb + q0) * D + e];
      dos[e] = dout[(qb + q0) * D + e];
    }
    if (t < cnt) { ls[t] = lse[qb + q0 + t]; dds[t] = dd[qb + q0 + t]; }
    workgroupBarrier();
    for (var ii = 0u; ii < cnt; ii++) {
      let rb = qb + q0 + ii;
      var sd = 0.0;
      var dp = 0.0;
      for (var c = 0u; c < D; c++) {
        sd += qs[ii * D + c] * kr[c];
        dp += dos[ii * D + c] * vr[c];
      }
      let p = exp(sd${biasExpr(bias, "j")} - ls[ii]);
      let dsv = p * (dp - dds[ii]);
      for (var c = 0u; c < D; c++) {
        av[c] += p * dos[ii * D + c];
        ak[c] += dsv * qs[ii * D + c];
      }
    }
  }
  if (valid) {
    let f = select(1.0, u.scale, u.c1 == u.nq);
    for (var c = 0u; c < D; c++) { dk[kr0 + c] = ak[c] * f; dv[kr0 + c] = av[c]; }
  }
}`,
  };
}
