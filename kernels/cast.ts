/** Dtype conversion between f32, i32 and u32 (dense in, dense out). */
import type { Kernel } from "./kernel.ts";
import { FLAT_INDEX } from "./common.ts";
import { uniforms } from "./uniforms.ts";

const WG = 256;
export const CAST_WORKGROUP = WG;

/** n elements; x's and y's element offsets in their bindings. */
export const CAST_UNIFORMS = uniforms({ n: "u32", off: "u32", yOff: "u32", _pad: "u32" });

/** Casts between f32/i32/u32 (dense in, dense out). */
export function castKernel(from: string, to: string): Kernel {
  return {
    key: `cast/${from}/${to}`,
    wgsl: () =>
      `${CAST_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<${from}>;
@group(0) @binding(2) var<storage, read_write> y: array<${to}>;
${FLAT_INDEX}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${WG}u);
  if (i >= u.n) { return; }
  y[i + u.yOff] = ${to}(x[i + u.off]);
}`,
  };
}
