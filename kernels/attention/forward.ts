/**
 * Fused ("flash") attention forward: out = softmax(scale·q·kᵀ + bias)·v without ever forming the
 * score matrix. A workgroup owns a block of queries of one slice g (a thread per query, its q row
 * and output accumulator in registers); K/V tiles are staged in workgroup memory and every thread
 * folds them in with an online softmax (running max and sum, f32). The optional bias is SAM's
 * decomposed relative position: relH[g,i,j / kw] + relW[g,i,j % kw]. The log-sum-exp of each row
 * is written for the backward pass.
 *
 * One dispatch covers keys [c0, c1). llvmpipe/lavapipe ends every loop of an invocation after
 * 65535 back-edges in total (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS) and silently returns wrong
 * results, so there the op splits the keys over several dispatches: between them the unnormalised
 * accumulator lives in `o`, the running max in `lse` and the running sum in `lsum`.
 */
import type { Kernel } from "../kernel.ts";
import { uniforms } from "../uniforms.ts";
import { storageDecls } from "../common.ts";

/** Threads (queries, or keys in the dK/dV pass) per workgroup. */
export const ATTN_WG = 64;

/** Largest head dimension the kernels specialise for (ViT-H uses 80, the mask decoder 16). */
export const ATTN_MAX_D = 128;

/** Uniform block shared by the attention kernels: lengths, key grid, scale and the chunk. */
export const ATTN_UNIFORMS = uniforms({
  nq: "u32",
  nk: "u32",
  kh: "u32",
  kw: "u32",
  scale: "f32",
  c0: "u32",
  c1: "u32",
  _pad: "u32",
});
export const ATTN_PARAMS = /* wgsl */ `
${ATTN_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;`;

/**
 * Keys (or queries) per staged tile: two tiles of `tile × d` values stay within 16 KiB (the WebGPU
 * default workgroup-storage limit, so the kernel runs on every adapter), at most 64.
 */
export function attnTile(d: number, f16 = false): number {
  const bytes = f16 ? 2 : 4;
  return Math.max(1, Math.min(64, Math.floor(16384 / (2 * d * bytes))));
}

/**
 * Keys (queries in the dK/dV pass) one dispatch may loop over on a software adapter: each costs
 * about 3·d + 8 loop back-edges of the 65535 lavapipe allows (half of that as margin); a whole
 * number of tiles.
 */
export function attnSoftwareChunk(d: number): number {
  const tile = attnTile(d);
  return Math.max(tile, Math.floor(30000 / (3 * d + 8) / tile) * tile);
}

/** WGSL for the bias of key `j` in bias row `rb` (the rows of relH and relW share an index). */
export function biasExpr(bias: boolean, j: string): string {
  return bias ? ` + relH[rb * u.kh + ${j} / u.kw] + relW[rb * u.kw + ${j} % u.kw]` : "";
}

/**
 * WGSL: thread `t` of workgroup `wid` owns query `i` of slice `g` and its row `rb`, clamped past
 * the last query so that barriers stay in uniform flow; `valid` says whether `i` is a real query.
 */
export const QUERY_ROW = /* wgsl */ `  let g = wid.y;
  let i = wid.x * WG + t;
  let valid = i < u.nq;
  // Threads past the last query compute on a clamped row so barriers stay in uniform flow.
  let rb = g * u.nq + min(i, u.nq - 1u);`;

/**
 * Forward kernel for head dimension `d`. `bias`: relH/relW bindings present. `f16`: K/V tiles are
 * staged as f16 in workgroup memory (half the bytes, twice the tile), with f32 arithmetic.
 */
export function attentionForwardKernel(d: number, bias: boolean, f16 = false): Kernel {
  const bk = attnTile(d, f16);
  const st = f16 ? "f16" : "f32";
  const decls = storageDecls([
    "read> q",
    "read> k",
    "read> v",
    ...(bias ? ["read> relH", "read> relW"] : []),
    "read_write> o",
    "read_write> lse",
    "read_write> lsum",
  ]);
  return {
    key: `attention/forward/d${d}/bk${bk}/wg${ATTN_WG}/${bias ? "bias" : "plain"}/${st}`,
    wgsl: () =>
      /* wgsl */ `${f16 ? "enable f16;" : ""}
${ATTN_PARAMS}
${decls}
const D = ${d}u;
const BK = ${bk}u;
const WG = ${ATTN_WG}u;
var<workgroup> ks: array<${st}, ${bk * d}>;
var<workgroup> vs: array<${st}, ${bk * d}>;

@compute @workgroup_size(${ATTN_WG})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
${QUERY_ROW}
  var qr: array<f32, ${d}>;
  var acc: array<f32, ${d}>;
  var m = -1e30;
  var l = 0.0;
  let first = u.c0 == 0u;
  for (var c = 0u; c < D; c++) {
    qr[c] = q[rb * D + c] * u.scale;
    acc[c] = select(o[rb * D + c], 0.0, first);
  }
  if (!first) { m = lse[rb]; l = lsum[rb]; }
  var s: array<f32, ${bk}>;
  let kb = g * u.nk * D;
  for (var k0 = u.c0; k0 < u.c1; k0 += BK) {
    let cnt = min(BK, u.c1 - k0);
    workgroupBarrier();
    for (var e = t; e < cnt * D; e += WG) {
      ks[e] = ${st}(k[kb + k0 * D + e]);
      vs[e] = ${st}(v[kb + k0 * D + e]);
    }
    workgroupBarrier();
    var mt = m;
    for (var jj = 0u; jj < cnt; jj++) {
      var dot = 0.0;
      for (var c = 0u; c < D; c++) { dot += qr[c] * f32(ks[jj * D + c]); }
      let sc = dot${biasExpr(bias, "(k0 + jj)")};
      s[jj] = sc;
      mt = max(mt, sc);
    }
    let corr = exp(m - mt);
    l *= corr;
    for (var c = 0u; c < D; c++) { acc[c] *= corr; }
    for (var jj = 0u; jj < cnt; jj++) {
      let p = exp(s[jj] - mt);
      l += p;
      for (var c = 0u; c < D; c++) { acc[c] += p * f32(vs[jj * D + c]); }
    }
    m = mt;
  }
  if (valid) {
    if (u.c1 == u.nk) {
      let inv = 1.0 / l;
      for (var c = 0u; c < D; c++) { o[rb * D + c] = acc[c] * inv; }
      lse[rb] = m + log(l);
    } else {
      for (var c = 0u; c < D; c++) { o[rb * D + c] = acc[c]; }
      lse[rb] = m;
      lsum[rb] = l;
    }
  }
}`,
  };
}
