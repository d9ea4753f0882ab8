/**
 * Strided copies of any 4-byte dtype: gather a view into a dense tensor (makes views contiguous),
 * or scatter a dense source into a strided destination view (slice backward, concat, pad).
 */
import type { Kernel } from "./kernel.ts";
import { DIM, FLAT_INDEX, stridedOffsetFn } from "./common.ts";

const WG = 256;
export const COPY_WORKGROUP = WG;

/** One thread per element; `body` moves element i between `x` and `y` (`view_offset(i)`). */
function copyKernel(key: string, dtype: string, fourth: string, body: string): Kernel {
  return {
    key,
    wgsl: () =>
      `struct P { n: u32, rank: u32, off: u32, ${fourth}: u32, shape: array<vec4<u32>, 2>, st: array<vec4<u32>, 2> }
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<${dtype}>;
@group(0) @binding(2) var<storage, read_write> y: array<${dtype}>;
${FLAT_INDEX}
${DIM}
${stridedOffsetFn("view_offset", "u.rank", "u.shape", "u.st", "u.off")}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${WG}u);
  if (i >= u.n) { return; }
  ${body}
}`,
  };
}

/**
 * y (dense, from yOff) = the view of x. Uniforms: n, rank, off, yOff, shape (2×vec4), strides
 * (2×vec4).
 */
export function stridedCopyKernel(dtype: string): Kernel {
  return copyKernel(`copy/strided/${dtype}`, dtype, "yOff", "y[i + u.yOff] = x[view_offset(i)];");
}

/** The view of y = x (dense, from srcOff). Uniforms: n, rank, off, srcOff, shape, strides. */
export function stridedWriteKernel(dtype: string): Kernel {
  return copyKernel(
    `copy/write-strided/${dtype}`,
    dtype,
    "srcOff",
    "y[view_offset(i)] = x[i + u.srcOff];",
  );
}
