/**
 * Strided copies of any 4-byte dtype: gather a view into a dense tensor (makes views contiguous),
 * or scatter a dense source into a strided destination view (slice backward, concat, pad).
 */
import type { Kernel } from "./kernel.ts";
import { DIM, FLAT_INDEX, stridedOffsetFn } from "./common.ts";
import { type UniformLayout, uniforms } from "./uniforms.ts";

const WG = 256;
export const COPY_WORKGROUP = WG;

/** Gather: n elements, the view's rank, element offset and strides in x; y's dense offset. */
export const STRIDED_COPY_UNIFORMS = uniforms({
  n: "u32",
  rank: "u32",
  off: "u32",
  yOff: "u32",
  shape: "dims8",
  st: "dims8",
});
/** Scatter: n elements, the view's rank, element offset and strides in y; x's dense offset. */
export const STRIDED_WRITE_UNIFORMS = uniforms({
  n: "u32",
  rank: "u32",
  off: "u32",
  srcOff: "u32",
  shape: "dims8",
  st: "dims8",
});

/** One thread per element; `body` moves element i between `x` and `y` (`view_offset(i)`). */
function copyKernel(
  key: string,
  dtype: string,
  layout: UniformLayout<typeof STRIDED_COPY_UNIFORMS.fields | typeof STRIDED_WRITE_UNIFORMS.fields>,
  body: string,
): Kernel {
  return {
    key,
    wgsl: () =>
      `${layout.wgsl("P")}
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

/** y (dense, from yOff) = the view of x. Uniforms: {@link STRIDED_COPY_UNIFORMS}. */
export function stridedCopyKernel(dtype: string): Kernel {
  return copyKernel(
    `copy/strided/${dtype}`,
    dtype,
    STRIDED_COPY_UNIFORMS,
    "y[i + u.yOff] = x[view_offset(i)];",
  );
}

/** The view of y = x (dense, from srcOff). Uniforms: {@link STRIDED_WRITE_UNIFORMS}. */
export function stridedWriteKernel(dtype: string): Kernel {
  return copyKernel(
    `copy/write-strided/${dtype}`,
    dtype,
    STRIDED_WRITE_UNIFORMS,
    "y[view_offset(i)] = x[i + u.srcOff];",
  );
}
