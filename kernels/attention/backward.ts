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
 * Head-dimension loops are unrolled for the reason given in forward.ts.
 */
import type { Kernel } from "../../engine/dispatch.ts";
import { ATTN_PARAMS, ATTN_WG, attnTile, biasExpr, dotExpr, storageDecls, tileLoad, unroll } from "./forward.ts";

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
  let g = wid.y;
  let i = wid.x * WG + t;
  let valid = i < u.nq;
  let rb = g * u.nq + min(i, u.nq - 1u);
  var qr: array<f32, ${d}>;
  var dor: array<f32, ${d}>;
  var acc: array<f32, ${d}>;
  ${unroll(d, (c) => `qr[${c}] = q[rb * D + ${c}u] * u.scale; dor[${c}] = dout[rb * D + ${c}u]; acc[${c}] = 0.0;`, "\n  ")}
  let di = ${dotExpr(d, (c) => `dor[${c}]`, (c) => `o[rb * D + ${c}u]`)};
  let li = lse[rb];
  var curA = 0u;
  var hAcc = 0.0;
  let kb = g * u.nk * D;
  for (var k0 = 0u; k0 < u.nk; k0 += BK) {
    let cnt = min(BK, u.nk - k0);
    workgroupBarrier();
    ${tileLoad(bk * d, ATTN_WG, "cnt * D", "kb + k0 * D", [["ks", "k"], ["vs", "v"]])}
    workgroupBarrier();
    for (var jj = 0u; jj < cnt; jj++) {
      let j = k0 + jj;
      let b = jj * D;
      let sd = ${dotExpr(d, (c) => `qr[${c}]`, (c) => `ks[b + ${c}u]`)};
      let dp = ${dotExpr(d, (c) => `dor[${c}]`, (c) => `vs[b + ${c}u]`)};
      let p = exp(sd${biasExpr(bias, "j")} - li);
      let ds = p * (dp - di);
      ${unroll(d, (c) => `acc[${c}] += ds * ks[b + ${c}u];`, "\n      ")}${biasGrad}
    }
  }
  if (valid) {
    ${unroll(d, (c) => `dq[rb * D + ${c}u] = acc[${c}] * u.scale;`)}
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
  let kr0 = (g * u.nk + j) * D;
  var kr: array<f32, ${d}>;
  var vr: array<f32, ${d}>;
  var ak: array<f32, ${d}>;
  var av: array<f32, ${d}>;
  ${unroll(d, (c) => `kr[${c}] = k[kr0 + ${c}u] * u.scale; vr[${c}] = v[kr0 + ${c}u]; ak[${c}] = 0.0; av[${c}] = 0.0;`, "\n  ")}
  let qb = g * u.nq;
  for (var q0 = 0u; q0 < u.nq; q0 += BQ) {
    let cnt = min(BQ, u.nq - q0);
    workgroupBarrier();
    ${tileLoad(bq * d, ATTN_WG, "cnt * D", "(qb + q0) * D", [["qs", "q"], ["dos", "dout"]])}
    ${tileLoad(bq, ATTN_WG, "cnt", "qb + q0", [["ls", "lse"], ["dds", "dd"]])}
    workgroupBarrier();
    for (var ii = 0u; ii < cnt; ii++) {
      let rb = qb + q0 + ii;
      let b = ii * D;
      let sd = ${dotExpr(d, (c) => `qs[b + ${c}u]`, (c) => `kr[${c}]`)};
      let dp = ${dotExpr(d, (c) => `dos[b + ${c}u]`, (c) => `vr[${c}]`)};
      let p = exp(sd${biasExpr(bias, "j")} - ls[ii]);
      let dsv = p * (dp - dds[ii]);
      ${unroll(d, (c) => `av[${c}] += p * dos[b + ${c}u]; ak[${c}] += dsv * qs[b + ${c}u];`, "\n      ")}
    }
  }
  if (valid) {
    ${unroll(d, (c) => `dk[kr0 + ${c}u] = ak[${c}] * u.scale; dv[kr0 + ${c}u] = av[${c}];`)}
  }
}`,
  };
}
