/**
 * Fused ("flash") attention forward: out = softmax(scale·q·kᵀ + bias)·v without ever forming the
 * score matrix. A workgroup owns a block of queries of one slice g (a thread per query, its q row
 * and output accumulator in registers); K/V tiles are staged in workgroup memory and every thread
 * folds them in with an online softmax (running max and sum, f32). The optional bias is SAM's
 * decomposed relative position: relH[g,i,j / kw] + relW[g,i,j % kw]. The log-sum-exp of each row
 * is written for the backward pass.
 *
 * Loops over the head dimension and the tile loads are unrolled here in TypeScript, not left to
 * the driver: llvmpipe/lavapipe stops every loop of an invocation after 65535 back-edges in total
 * (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS) and silently returns wrong results, so the only runtime
 * loops left are over key tiles and keys (≈ 2·Nk iterations per thread).
 */
import type { Kernel } from "../../engine/dispatch.ts";

/** Threads (queries, or keys in the dK/dV pass) per workgroup. */
export const ATTN_WG = 64;

/** Largest head dimension the kernels specialise for (ViT-H uses 80, the mask decoder 16). */
export const ATTN_MAX_D = 128;

/**
 * Keys or queries a thread may loop over before lavapipe's per-invocation loop cap (65535
 * back-edges, about two per key) would cut the loops short; the op refuses more on that driver.
 */
export const ATTN_SOFTWARE_MAX_LEN = 30000;

/** Uniform block shared by the attention kernels: lengths, key grid and scale. */
export const ATTN_PARAMS = /* wgsl */ `
struct P { nq: u32, nk: u32, kh: u32, kw: u32, scale: f32, a: u32, b: u32, c: u32 }
@group(0) @binding(0) var<uniform> u: P;`;

/**
 * Keys (or queries) per staged tile: two tiles of `tile × d` values stay within 16 KiB (the WebGPU
 * default workgroup-storage limit, so the kernel runs on every adapter), at most 64.
 */
export function attnTile(d: number, f16 = false): number {
  const bytes = f16 ? 2 : 4;
  return Math.max(1, Math.min(64, Math.floor(16384 / (2 * d * bytes))));
}

/** `n` copies of `f(i)`, one per line (compile-time unrolling). */
export function unroll(n: number, f: (i: number) => string, sep = "\n    "): string {
  return Array.from({ length: n }, (_, i) => f(i)).join(sep);
}

/** Σ_c a(c)·b(c) over c < d as one WGSL expression with four partial sums (shorter chains). */
export function dotExpr(d: number, a: (c: number) => string, b: (c: number) => string): string {
  const parts: string[] = [];
  for (let r = 0; r < Math.min(4, d); r++) {
    const terms: string[] = [];
    for (let c = r; c < d; c += 4) terms.push(`${a(c)} * ${b(c)}`);
    parts.push(`(${terms.join(" + ")})`);
  }
  return parts.join(" + ");
}

/**
 * Unrolled cooperative copy of `count` (a WGSL expression, ≤ `max`) elements from global arrays
 * at `src` into workgroup arrays, `wg` threads striding.
 */
export function tileLoad(max: number, wg: number, count: string, src: string, pairs: [string, string][], cast = ""): string {
  return `{
    let lim = ${count};
    let src = ${src};
    ${
    unroll(
      Math.ceil(max / wg),
      (r) =>
        `{ let e = t + ${r * wg}u; if (e < lim) { ${pairs.map(([dst, from]) => `${dst}[e] = ${cast}(${from}[src + e]);`).join(" ")} } }`,
    )
  }
  }`;
}

/** WGSL for the bias of key `j` in bias row `rb` (the rows of relH and relW share an index). */
export function biasExpr(bias: boolean, j: string): string {
  return bias ? ` + relH[rb * u.kh + ${j} / u.kw] + relW[rb * u.kw + ${j} % u.kw]` : "";
}

/** Storage declarations `mode> name` at bindings 1..n. */
export function storageDecls(list: string[]): string {
  return list.map((decl, i) => {
    const [mode, name] = decl.split("> ");
    return `@group(0) @binding(${i + 1}) var<storage, ${mode}> ${name}: array<f32>;`;
  }).join("\n");
}

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
  ]);
  const kv = (arr: string, c: number) => f16 ? `f32(${arr}[b + ${c}u])` : `${arr}[b + ${c}u]`;
  return {
    key: `attention/forward/d${d}/bk${bk}/wg${ATTN_WG}/${bias ? "bias" : "plain"}/${st}`,
    wgsl: () => /* wgsl */ `${f16 ? "enable f16;" : ""}
${ATTN_PARAMS}
${decls}
const D = ${d}u;
const BK = ${bk}u;
const WG = ${ATTN_WG}u;
var<workgroup> ks: array<${st}, ${bk * d}>;
var<workgroup> vs: array<${st}, ${bk * d}>;

@compute @workgroup_size(${ATTN_WG})
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let g = wid.y;
  let i = wid.x * WG + t;
  // Threads past the last query compute on a clamped row so barriers stay in uniform flow.
  let rb = g * u.nq + min(i, u.nq - 1u);
  var qr: array<f32, ${d}>;
  var acc: array<f32, ${d}>;
  ${unroll(d, (c) => `qr[${c}] = q[rb * D + ${c}u] * u.scale; acc[${c}] = 0.0;`, "\n  ")}
  var m = -1e30;
  var l = 0.0;
  var s: array<f32, ${bk}>;
  let kb = g * u.nk * D;
  for (var k0 = 0u; k0 < u.nk; k0 += BK) {
    let cnt = min(BK, u.nk - k0);
    workgroupBarrier();
    ${tileLoad(bk * d, ATTN_WG, "cnt * D", "kb + k0 * D", [["ks", "k"], ["vs", "v"]], st)}
    workgroupBarrier();
    var mt = m;
    for (var jj = 0u; jj < cnt; jj++) {
      let b = jj * D;
      let sc = ${dotExpr(d, (c) => `qr[${c}]`, (c) => kv("ks", c))}${biasExpr(bias, "(k0 + jj)")};
      s[jj] = sc;
      mt = max(mt, sc);
    }
    let corr = exp(m - mt);
    l *= corr;
    ${unroll(d, (c) => `acc[${c}] *= corr;`)}
    for (var jj = 0u; jj < cnt; jj++) {
      let b = jj * D;
      let p = exp(s[jj] - mt);
      l += p;
      ${unroll(d, (c) => `acc[${c}] += p * ${kv("vs", c)};`, "\n      ")}
    }
    m = mt;
  }
  if (i < u.nq) {
    let inv = 1.0 / l;
    ${unroll(d, (c) => `o[rb * D + ${c}u] = acc[${c}] * inv;`)}
    lse[rb] = m + log(l);
  }
}`,
  };
}
