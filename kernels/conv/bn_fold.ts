/**
 * A BatchNorm in eval mode as one per-channel affine map, for a conv epilogue
 * (kernels/conv/epilogue.ts): scale[c] = γ[c]·rsqrt(var[c] + eps), shift[c] = β[c] − mean[c]·scale[c],
 * so that BN(conv(x)) = conv(x)·scale + shift. The scale is computed as the unfused BN computes
 * it (engine/ops/norm.ts: `inverseSqrt(var + eps)` times γ). One dispatch per BN, C invocations.
 */
import type { Kernel } from "../kernel.ts";
import { uniforms } from "../uniforms.ts";

export const BN_FOLD_WG = 64;

/** Channels, eps. */
export const BN_FOLD_UNIFORMS = uniforms({ C: "u32", eps: "f32" });

/**
 * Bindings: mean, var, [γ], [β], scale (out), shift (out); γ = 1 and β = 0 when absent.
 * Grid: ⌈C / BN_FOLD_WG⌉.
 */
export function bnFoldKernel(hasWeight: boolean, hasBias: boolean): Kernel {
  let n = 3;
  const wDecl = hasWeight
    ? `@group(0) @binding(${n++}) var<storage, read> gamma: array<f32>;\n`
    : "";
  const bDecl = hasBias ? `@group(0) @binding(${n++}) var<storage, read> beta: array<f32>;\n` : "";
  return {
    key: `conv2d/bn-fold/${hasWeight ? "w" : "-"}${hasBias ? "b" : "-"}`,
    wgsl: () =>
      /* wgsl */ `${BN_FOLD_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> mean: array<f32>;
@group(0) @binding(2) var<storage, read> variance: array<f32>;
${wDecl}${bDecl}@group(0) @binding(${n}) var<storage, read_write> scale: array<f32>;
@group(0) @binding(${n + 1}) var<storage, read_write> shift: array<f32>;

@compute @workgroup_size(${BN_FOLD_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= u.C) { return; }
  let s = inverseSqrt(variance[c] + u.eps)${hasWeight ? " * gamma[c]" : ""};
  scale[c] = s;
  shift[c] = ${hasBias ? "beta[c]" : "0.0"} - mean[c] * s;
}`,
  };
}
