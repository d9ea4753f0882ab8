/** Strided gather into a dense tensor of any 4-byte dtype (makes views contiguous). */
import type { Kernel } from "../engine/dispatch.ts";
import { DIM, FLAT_INDEX, stridedOffsetFn } from "./common.ts";

const WG = 256;
const VIEW_OFFSET = stridedOffsetFn("view_offset", "u.rank", "u.shape", "u.st", "u.off");

/** Uniforms: n, rank, off, pad, shape (2×vec4), strides (2×vec4). */
export function stridedCopyKernel(dtype: string): Kernel {
  return {
    key: `copy/strided/${dtype}`,
    wgsl: () =>
      `struct P { n: u32, rank: u32, off: u32, pad: u32, shape: array<vec4<u32>, 2>, st: array<vec4<u32>, 2> }
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<${dtype}>;
@group(0) @binding(2) var<storage, read_write> y: array<${dtype}>;
${FLAT_INDEX}
${DIM}
${VIEW_OFFSET}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${WG}u);
  if (i >= u.n) { return; }
  y[i] = x[view_offset(i)];
}`,
  };
}
export const COPY_WORKGROUP = WG;

/** Scatter a dense source into a strided destination view (slice backward, concat, pad). */
export function stridedWriteKernel(dtype: string): Kernel {
  return {
    key: `copy/write-strided/${dtype}`,
    wgsl: () =>
      `struct P { n: u32, rank: u32, off: u32, srcOff: u32, shape: array<vec4<u32>, 2>, st: array<vec4<u32>, 2> }
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<${dtype}>;
@group(0) @binding(2) var<storage, read_write> y: array<${dtype}>;
${FLAT_INDEX}
${DIM}
${VIEW_OFFSET}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${WG}u);
  if (i >= u.n) { return; }
  y[view_offset(i)] = x[i + u.srcOff];
}`,
  };
}
