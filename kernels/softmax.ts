/**
 * Softmax / log-softmax along one axis of a dense tensor seen as rows: row r = (o, i) with
 * o = r / inner, i = r % inner, and its L elements at o·L·inner + k·inner + i (k < L). The last
 * axis is inner = 1; any other axis needs no transpose.
 *
 * Long rows get a workgroup each (max, sum-exp and write passes with workgroup tree reductions);
 * short rows (L ≤ ROW_THREAD_MAX) get a thread each, so a softmax over a few channels of a large
 * image does not leave most invocations idle. Both modes share one body: `red_max` / `red_sum`
 * are workgroup reductions in one mode and the identity in the other.
 */
import type { Kernel } from "./kernel.ts";
import { FLAT_INDEX } from "./common.ts";
import { uniforms } from "./uniforms.ts";

/** Rows at most this long run a thread per row. */
const ROW_THREAD_MAX = 32;
/** Threads per workgroup in thread-per-row mode. */
const ROW_THREAD_WG = 64;

/** Workgroup size of the workgroup-per-row mode for rows of length `len`. */
function rowWorkgroup(len: number): number {
  return len > 1024 ? 256 : 64;
}

/** Row-addressing mode: a workgroup of `wg` threads per row, or (wg = 0) a thread per row. */
export interface RowMode {
  /** 0 for a thread per row; otherwise the workgroup size. */
  wg: number;
}

/**
 * Thread per row for short rows, or for moderately long rows whose elements are `inner` apart
 * (neighbouring rows are then neighbouring addresses, so a thread per row reads coalesced).
 */
export function rowMode(len: number, inner = 1): RowMode {
  const thread = len <= ROW_THREAD_MAX || (inner >= 32 && len <= 4096);
  return { wg: thread ? 0 : rowWorkgroup(len) };
}

/** Grid for `rows` rows in this mode (fold into x/y as `grid1d`). */
export function rowItemsPerGroup(m: RowMode): number {
  return m.wg === 0 ? ROW_THREAD_WG : 1;
}

/**
 * WGSL prelude for a row kernel: `main`'s signature and the row index, `l` (the thread's lane),
 * `W` (loop stride), and `red_sum` / `red_max`. Expects the uniform `u` to have `rows`.
 * Loops over a row read `for (var k = l; k < u.L; k += W)`.
 */
export function rowPrelude(m: RowMode): { decls: string; head: string } {
  if (m.wg === 0) {
    return {
      decls: `${FLAT_INDEX}
fn red_sum(l: u32, v: f32) -> f32 { return v; }
fn red_max(l: u32, v: f32) -> f32 { return v; }`,
      head: `@compute @workgroup_size(${ROW_THREAD_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = flat_index(gid, nwg, ${ROW_THREAD_WG}u);
  if (row >= u.rows) { return; }
  let l = 0u;
  let W = 1u;`,
    };
  }
  const w = m.wg;
  return {
    decls: `var<workgroup> red: array<f32, ${w}>;
fn red_sum(l: u32, v: f32) -> f32 {
  red[l] = v;
  workgroupBarrier();
  for (var s = ${w / 2}u; s > 0u; s = s >> 1u) {
    if (l < s) { red[l] = red[l] + red[l + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn red_max(l: u32, v: f32) -> f32 {
  red[l] = v;
  workgroupBarrier();
  for (var s = ${w / 2}u; s > 0u; s = s >> 1u) {
    if (l < s) { red[l] = max(red[l], red[l + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`,
    head: `@compute @workgroup_size(${w})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= u.rows) { return; }
  let W = ${w}u;`,
  };
}

export function rowModeKey(m: RowMode): string {
  return m.wg === 0 ? "thread" : `wg${m.wg}`;
}

/** Uniforms: rows, L (row length), inner (stride between a row's elements), pad. */
/** `rows` rows of `L` elements, `inner` apart (row r starts at (r / inner)·L·inner + r % inner). */
export const SOFTMAX_UNIFORMS = uniforms({ rows: "u32", L: "u32", inner: "u32", _pad: "u32" });
const PARAMS = `${SOFTMAX_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;`;

const ROW_BASE = `  let base = (row / u.inner) * u.L * u.inner + row % u.inner;
  let st = u.inner;`;

/** Forward: y = softmax(x) or log_softmax(x) along the rows. */
export function softmaxKernel(log: boolean, m: RowMode): Kernel {
  return {
    key: `softmax/${log ? "log" : "plain"}/${rowModeKey(m)}`,
    wgsl: () => {
      const { decls, head } = rowPrelude(m);
      return `${PARAMS}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${decls}
${head}
${ROW_BASE}
  var mx = -3.402823e38;
  for (var k = l; k < u.L; k += W) { mx = max(mx, x[base + k * st]); }
  mx = red_max(l, mx);
  var s = 0.0;
  for (var k = l; k < u.L; k += W) { s += exp(x[base + k * st] - mx); }
  s = red_sum(l, s);
  ${log ? "let ls = log(s);" : ""}
  for (var k = l; k < u.L; k += W) {
    let idx = base + k * st;
    y[idx] = ${log ? "x[idx] - mx - ls" : "exp(x[idx] - mx) / s"};
  }
}`;
    },
  };
}

/**
 * Backward from the saved output y and the gradient g:
 * softmax dx = y ⊙ (g − Σ g⊙y); log-softmax dx = g − exp(y) · Σ g.
 */
export function softmaxBackwardKernel(log: boolean, m: RowMode): Kernel {
  return {
    key: `softmax-bwd/${log ? "log" : "plain"}/${rowModeKey(m)}`,
    wgsl: () => {
      const { decls, head } = rowPrelude(m);
      return `${PARAMS}
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
${decls}
${head}
${ROW_BASE}
  var s = 0.0;
  for (var k = l; k < u.L; k += W) {
    let idx = base + k * st;
    s += ${log ? "g[idx]" : "g[idx] * y[idx]"};
  }
  s = red_sum(l, s);
  for (var k = l; k < u.L; k += W) {
    let idx = base + k * st;
    dx[idx] = ${log ? "g[idx] - exp(y[idx]) * s" : "y[idx] * (g[idx] - s)"};
  }
}`;
    },
  };
}
