/**
 * Reductions over any set of axes of a strided tensor. The output has the kept dims; each output
 * element reduces `inner` elements addressed by the reduced dims' own strides, so no transpose is
 * needed. Small reductions use one thread per output; large ones a workgroup per output with a
 * tree reduction in workgroup memory.
 */
import type { Kernel } from "./kernel.ts";
import { DIM, FLAT_INDEX, stridedOffsetFn } from "./common.ts";
import { uniforms } from "./uniforms.ts";

export type ReduceOp = "sum" | "max" | "min" | "argmax" | "argmin";

const INIT: Record<ReduceOp, string> = {
  sum: "0.0",
  max: "-3.402823e38",
  min: "3.402823e38",
  argmax: "-3.402823e38",
  argmin: "3.402823e38",
};

/** Whether candidate (v, j) replaces the accumulator (acc, ai) — ties keep the first index. */
function better(op: ReduceOp, v: string, acc: string): string {
  return op === "max" || op === "argmax" ? `${v} > ${acc}` : `${v} < ${acc}`;
}

/**
 * nOut outputs of `inner` reduced elements each; the kept and reduced dims' ranks, shapes and
 * strides; x's element offset; with `chunks` > 1 each output's reduction is cut into `chunks`
 * ranges of `chunkLen` (partial results, combined by a second pass).
 */
export const REDUCE_UNIFORMS = uniforms({
  nOut: "u32",
  inner: "u32",
  keptRank: "u32",
  redRank: "u32",
  off: "u32",
  chunks: "u32",
  chunkLen: "u32",
  _pad: "u32",
  kShape: "dims8",
  kSt: "dims8",
  rShape: "dims8",
  rSt: "dims8",
});
const PARAMS = REDUCE_UNIFORMS.wgsl("P");

const OFFSETS = `
${stridedOffsetFn("kept_offset", "u.keptRank", "u.kShape", "u.kSt", "u.off")}
${stridedOffsetFn("red_offset", "u.redRank", "u.rShape", "u.rSt", "0u")}`;

export const REDUCE_SMALL_WG = 128;
export const REDUCE_LARGE_WG = 128;

/** `large`: a workgroup per output element; otherwise a thread per output element. */
export function reduceKernel(op: ReduceOp, large: boolean): Kernel {
  const isArg = op === "argmax" || op === "argmin";
  const outType = isArg ? "i32" : "f32";
  const combine = op === "sum"
    ? "acc = acc + v;"
    : `if (${better(op, "v", "acc")}) { acc = v; ai = r; }`;
  const head = `${PARAMS}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<${outType}>;
${FLAT_INDEX}
${DIM}
${OFFSETS}`;
  const result = isArg ? "i32(ai)" : "acc";
  if (!large) {
    return {
      key: `reduce/${op}/small`,
      wgsl: () =>
        `${head}
@compute @workgroup_size(${REDUCE_SMALL_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = flat_index(gid, nwg, ${REDUCE_SMALL_WG}u);
  if (o >= u.nOut) { return; }
  let base = kept_offset(o);
  var acc: f32 = ${INIT[op]};
  var ai: u32 = 0u;
  if (u.redRank == 1u) {
    // One reduced dim (a channel mean, a row sum): a running offset, no division per element.
    let step = dim(u.rSt, 0u);
    var off = base;
    for (var r = 0u; r < u.inner; r++) {
      let v = x[off];
      ${combine}
      off += step;
    }
  } else {
    for (var r = 0u; r < u.inner; r++) {
      let v = x[base + red_offset(r)];
      ${combine}
    }
  }
  y[o] = ${result};
}`,
    };
  }
  const W = REDUCE_LARGE_WG;
  const merge = op === "sum"
    ? "sv[l] = sv[l] + sv[l + s];"
    : `if (${
      better(op, "sv[l + s]", "sv[l]")
    } || (sv[l + s] == sv[l] && si[l + s] < si[l])) { sv[l] = sv[l + s]; si[l] = si[l + s]; }`;
  return {
    key: `reduce/${op}/large`,
    wgsl: () =>
      `${head}
var<workgroup> sv: array<f32, ${W}>;
var<workgroup> si: array<u32, ${W}>;
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  // Uniform a = chunks per output (0 or 1: none), b = elements per chunk: workgroup w reduces
  // chunk w % a of output w / a into y[w].
  let w = wid.x + wid.y * nwg.x;
  let nc = max(u.chunks, 1u);
  let o = w / nc;
  let r0 = (w % nc) * select(u.inner, u.chunkLen, u.chunks > 1u);
  let r1 = select(u.inner, min(u.inner, r0 + u.chunkLen), u.chunks > 1u);
  let inRange = o < u.nOut;
  var acc: f32 = ${INIT[op]};
  var ai: u32 = 0xffffffffu;
  if (inRange) {
    let base = kept_offset(o);
    for (var r = r0 + l; r < r1; r += ${W}u) {
      let v = x[base + red_offset(r)];
      ${
        op === "sum"
          ? "acc = acc + v;"
          : `if (${better(op, "v", "acc")} || ai == 0xffffffffu) { acc = v; ai = r; }`
      }
    }
  }
  sv[l] = acc; si[l] = ai;
  workgroupBarrier();
  for (var s = ${W / 2}u; s > 0u; s = s >> 1u) {
    if (l < s) { ${merge} }
    workgroupBarrier();
  }
  if (l == 0u && inRange) { y[w] = ${isArg ? "i32(si[0])" : "sv[0]"}; }
}`,
  };
}
