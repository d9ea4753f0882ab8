/**
 * Index-moving kernels: coordinate remaps (flip and roll in one pass), gathers along an axis
 * (index_select, torch.gather), their sort-free, atomic-free scatter-add backward, and arange.
 * All read strided inputs through the whole storage binding plus an element offset, and write a
 * dense output of any 4-byte dtype.
 */
import type { Kernel } from "./kernel.ts";
import { DIM, eachDim, flatKernelWgsl } from "./common.ts";
import { uniforms } from "./uniforms.ts";

export const GATHER_WORKGROUP = 256;
const WG = GATHER_WORKGROUP;

/** A uniform block (kernels/uniforms.ts). */
type Block = { wgsl(structName: string): string };

/** An index kernel's WGSL: a thread per output element `i` below `u.n`, then `body`. */
function flatKernel(
  layout: Block,
  bindings: string[],
  body: string,
  helpers?: string,
) {
  return flatKernelWgsl({
    params: layout.wgsl("P"),
    wg: WG,
    bindings,
    helpers,
    body: `  if (i >= u.n) { return; }\n${body}`,
  });
}

/** {@link flatKernel} with `dim` (strided coordinates from dims8 uniforms) in scope. */
function stridedKernel(layout: Block, bindings: string[], body: string) {
  return flatKernel(layout, bindings, body, DIM);
}

export const REMAP_UNIFORMS = uniforms({
  n: "u32",
  rank: "u32",
  off: "u32",
  flips: "u32",
  shape: "dims8",
  st: "dims8",
  shift: "dims8",
});

/**
 * y[c] = x[c'] with, per dim d, c'_d = ((flip_d ? n_d-1-c_d : c_d) + shift_d) mod n_d.
 * Flip is bit d of `flips`; roll by s is shift = (-s) mod n.
 * Uniforms: {@link REMAP_UNIFORMS}.
 */
export function remapKernel(dtype: string): Kernel {
  return {
    key: `gather/remap/${dtype}`,
    wgsl: () =>
      stridedKernel(
        REMAP_UNIFORMS,
        [`read> x: ${dtype}`, `read_write> y: ${dtype}`],
        `  var rem = i;
  var o = u.off;
${
          eachDim(
            "u.rank",
            "u.shape",
            (d) =>
              `let cf = select(c, sz - 1u - c, ((u.flips >> ${d}) & 1u) != 0u); ` +
              `o += ((cf + dim(u.shift, ${d})) % sz) * dim(u.st, ${d});`,
          )
        }  y[i] = x[o];`,
      ),
  };
}

export const GATHER_UNIFORMS = uniforms({
  n: "u32",
  rank: "u32",
  axis: "u32",
  off: "u32",
  axisLen: "u32",
  _pad0: "u32",
  _pad1: "u32",
  _pad2: "u32",
  oshape: "dims8",
  xst: "dims8",
});

/**
 * Gather along `axis`. Mode "select" (index_select): the output coordinate along the axis, j,
 * reads index[j]. Mode "gather" (torch.gather): element i of the output reads index[i] (index is
 * dense with the output's shape). Negative indices count from the end; out-of-range ones give 0.
 * Uniforms: {@link GATHER_UNIFORMS}.
 */
export function gatherKernel(dtype: string, mode: "select" | "gather"): Kernel {
  return {
    key: `gather/${mode}/${dtype}`,
    wgsl: () =>
      stridedKernel(
        GATHER_UNIFORMS,
        [`read> x: ${dtype}`, "read> index: i32", `read_write> y: ${dtype}`],
        `  var rem = i;
  var o = u.off;
  var ok = true;
${
          eachDim("u.rank", "u.oshape", (d) =>
            `var cx = c; if (${d} == u.axis) { var k = index[${mode === "select" ? "c" : "i"}]; ` +
            `if (k < 0) { k += i32(u.axisLen); } ok = k >= 0 && k < i32(u.axisLen); ` +
            `cx = select(0u, u32(k), ok); } o += cx * dim(u.xst, ${d});`)
        }  y[i] = select(${dtype}(0), x[o], ok);`,
      ),
  };
}

export const SCATTER_ADD_UNIFORMS = uniforms({
  n: "u32",
  rank: "u32",
  axis: "u32",
  m: "u32",
  axisLen: "u32",
  j0: "u32",
  j1: "u32",
  accum: "u32",
  xshape: "dims8",
  gshape: "dims8",
  gst: "dims8",
});

/**
 * Backward of a gather: gx[c] = Σ_j [index(j) == c_axis] g(c with c_axis = j), one thread per
 * element of gx, no atomics (deterministic; cost numel(x) × index length along the axis).
 * g is dense with shape gshape (gshape = x's shape with the axis replaced by the index length in
 * mode "select"; the index's shape in mode "gather", where it may be smaller than x's).
 * One dispatch sums j in [j0, j1) (at most `LOOP_BUDGET` of them, kernels/common.ts) and adds to
 * what y holds when `accum` is set.
 * Uniforms: {@link SCATTER_ADD_UNIFORMS}.
 */
export function scatterAddKernel(mode: "select" | "gather"): Kernel {
  return {
    key: `gather/scatter-add/${mode}`,
    wgsl: () =>
      stridedKernel(
        SCATTER_ADD_UNIFORMS,
        ["read> g", "read> index: i32", "read_write> y"],
        `  var rem = i;
  var base = 0u;
  var want = 0u;
  var inside = true;
${
          eachDim("u.rank", "u.xshape", (d) =>
            `if (${d} == u.axis) { want = c; } else { ` +
            `if (c >= dim(u.gshape, ${d})) { inside = false; } base += c * dim(u.gst, ${d}); }`)
        }  var acc = 0.0;
  if (inside) {
    let step = dim(u.gst, u.axis);
    for (var j = u.j0; j < min(u.j1, u.m); j++) {
      let gi = base + j * step;
      var k = index[${mode === "select" ? "j" : "gi"}];
      if (k < 0) { k += i32(u.axisLen); }
      if (k == i32(want)) { acc += g[gi]; }
    }
  }
  y[i] = select(0.0, y[i], u.accum != 0u) + acc;`,
      ),
  };
}

export const ARANGE_UNIFORMS = {
  f32: uniforms({ n: "u32", _pad: "u32", start: "f32", step: "f32" }),
  i32: uniforms({ n: "u32", _pad: "u32", start: "i32", step: "i32" }),
};

/** out[i] = start + i·step (f32 or i32). Uniforms: {@link ARANGE_UNIFORMS} of the dtype. */
export function arangeKernel(dtype: "f32" | "i32"): Kernel {
  return {
    key: `gather/arange/${dtype}`,
    wgsl: () =>
      flatKernel(
        ARANGE_UNIFORMS[dtype],
        [`read_write> y: ${dtype}`],
        `  y[i] = u.start + ${dtype}(i) * u.step;`,
      ),
  };
}
