/**
 * Fused optimiser updates: one dispatch per parameter per step reads the gradient and updates the
 * parameter and its moment buffers in place (PyTorch's single-tensor Adam/AdamW arithmetic).
 */
import type { Kernel } from "./kernel.ts";
import { FLAT_INDEX } from "./common.ts";
import { uniforms } from "./uniforms.ts";

export const OPTIM_WORKGROUP = 256;

/**
 * n parameters; β1, β2, 1 − β1, 1 − β2, eps, the weight-decay term (a factor for AdamW, a
 * coefficient for Adam), stepSize and bc2Sqrt (see {@link adamKernel}).
 */
export const ADAM_UNIFORMS = uniforms({
  n: "u32",
  _pad0: "u32",
  _pad1: "u32",
  _pad2: "u32",
  beta1: "f32",
  beta2: "f32",
  omb1: "f32",
  omb2: "f32",
  eps: "f32",
  wd: "f32",
  stepSize: "f32",
  bc2Sqrt: "f32",
});

/**
 * Adam (`decoupled` false: L2 decay added to the gradient) or AdamW (`decoupled` true: the
 * parameter shrinks by lr·wd first). Uniforms (scalars derived on the host in float64, as PyTorch
 * does in Python): n, 3 pad, beta1, beta2, 1−beta1, 1−beta2, eps, wd (Adam) or 1−lr·wd (AdamW),
 * stepSize = lr / (1 − β1^t), bc2Sqrt = √(1 − β2^t).
 * Bindings: 1 param (rw), 2 grad, 3 exp_avg (rw), 4 exp_avg_sq (rw).
 *
 * `vec`: a thread per 4 values (n a multiple of 4; u.n then counts vec4s), the same arithmetic per
 * component (bit-identical): on software adapters each storage load is a per-lane loop, so a
 * quarter of the loads (the update is load-bound: 4 reads and 3 writes per value).
 */
export function adamKernel(decoupled: boolean, vec = false): Kernel {
  const WG = OPTIM_WORKGROUP;
  const T = vec ? "vec4<f32>" : "f32";
  return {
    key: `optim/${decoupled ? "adamw" : "adam"}${vec ? "/v4" : ""}`,
    wgsl: () =>
      `${ADAM_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> p: array<${T}>;
@group(0) @binding(2) var<storage, read> g: array<${T}>;
@group(0) @binding(3) var<storage, read_write> m: array<${T}>;
@group(0) @binding(4) var<storage, read_write> v: array<${T}>;
${FLAT_INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${WG}u);
  if (i >= u.n) { return; }
  var w = p[i];
  var grad = g[i];
  ${decoupled ? "w = w * u.wd;" : "grad = grad + u.wd * w;"}
  let mi = u.beta1 * m[i] + u.omb1 * grad;
  let vi = u.beta2 * v[i] + u.omb2 * grad * grad;
  m[i] = mi;
  v[i] = vi;
  let denom = sqrt(vi) / ${T}(u.bc2Sqrt) + ${T}(u.eps);
  p[i] = w - u.stepSize * (mi / denom);
}`,
  };
}
