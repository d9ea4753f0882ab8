/**
 * SAM's decomposed relative-position terms in one pass (no gradient recorded):
 *   relH[g, n, k] = Σ_c q[g, n, c]·rh[y, k, c],  relW[g, n, k] = Σ_c q[g, n, c]·rw[x, k, c]
 * for the query at n = y·qw + x. A thread per query row holds its q in registers and writes
 * both terms, where the composed form (batched matmuls over views of q, engine/ops/attention.ts)
 * takes a dispatch per outer batch index (25 windows → 50 dispatches a windowed ViT-B block) and
 * a permute copy of relW. q is read in place: g = outer·nb1 + inner, element
 * off + outer·s0 + inner·s1 + n·sN + c. `V` = 4: vec4 items along c (d, the offset and every
 * stride multiples of 4), else 1; d is baked in (in items).
 */
import type { Kernel } from "../kernel.ts";
import { flatKernelWgsl } from "../common.ts";
import { uniforms } from "../uniforms.ts";

export const REL_POS_WG = 64;

/** Query rows (G·N), N, qw, kh, kw, inner batch count; q's offset and strides, in items. */
export const REL_POS_UNIFORMS = uniforms({
  rows: "u32",
  N: "u32",
  qw: "u32",
  kh: "u32",
  kw: "u32",
  nb1: "u32",
  off: "u32",
  s0: "u32",
  s1: "u32",
  sN: "u32",
});

/** Bindings: q (read, strided), rh [qh, kh, d], rw [qw, kw, d], relH [G, N, kh], relW [G, N, kw]. */
export function relPosTermsKernel(v: 1 | 4, dItems: number): Kernel {
  const T = v === 4 ? "vec4<f32>" : "f32";
  const prod = (a: string, b: string) => (v === 4 ? `dot(${a}, ${b})` : `${a} * ${b}`);
  // q's row in registers (unrolled: a function-scope array indexed in a loop lives in memory on
  // CPU rasterisers), each term one unrolled sum of products with the table's row.
  const cs = [...Array(dItems).keys()];
  const qLoads = cs.map((c) => `  let q${c} = q[qb + ${c}u];`).join("\n");
  const dotWith = (t: string) => cs.map((c) => prod(`q${c}`, `${t}[rb + ${c}u]`)).join(" + ");
  return {
    key: `sam-relpos/v${v}/d${dItems}/unrolled`,
    wgsl: () =>
      flatKernelWgsl({
        params: REL_POS_UNIFORMS.wgsl("P"),
        wg: REL_POS_WG,
        bindings: [
          `read> q: ${T}`,
          `read> rh: ${T}`,
          `read> rw: ${T}`,
          `read_write> relH: f32`,
          `read_write> relW: f32`,
        ],
        body: `  if (i >= u.rows) { return; }
  let n = i % u.N;
  let g = i / u.N;
  let qb = u.off + (g / u.nb1) * u.s0 + (g % u.nb1) * u.s1 + n * u.sN;
${qLoads}
  let y = n / u.qw;
  let x = n % u.qw;
  for (var k = 0u; k < u.kh; k++) {
    let rb = (y * u.kh + k) * ${dItems}u;
    relH[i * u.kh + k] = ${dotWith("rh")};
  }
  for (var k = 0u; k < u.kw; k++) {
    let rb = (x * u.kw + k) * ${dItems}u;
    relW[i * u.kw + k] = ${dotWith("rw")};
  }`,
      }),
  };
}
