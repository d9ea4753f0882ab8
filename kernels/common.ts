/** WGSL snippets shared by kernels: strided indexing over up to 8 dims and 2-D grid folding. */

/** Maximum tensor rank for strided kernels (shapes travel as two vec4<u32> in uniforms). */
const MAX_RANK = 8;

/** Flat invocation index from a grid folded into x/y (see dispatch.grid1d). */
export const FLAT_INDEX = /* wgsl */ `
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
  return gid.x + gid.y * nwg.x * wg;
}`;

/** `dim(a, i)`: the i-th entry of a uniform array<vec4<u32>, 2>. */
export const DIM = /* wgsl */ `
fn dim(a: array<vec4<u32>, 2>, i: u32) -> u32 { return a[i / 4u][i % 4u]; }`;

/** Packs up to 8 dims (padded with `pad`) as the u32s of two vec4s. */
export function dims8(v: readonly number[], pad = 1): number[] {
  if (v.length > MAX_RANK) {
    throw new Error(`rank ${v.length} exceeds the kernels' maximum of ${MAX_RANK}`);
  }
  const out = v.slice();
  while (out.length < MAX_RANK) out.push(pad);
  return out;
}

/** Exact-enough erf for f32 (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7). */
export const ERF = /* wgsl */ `
fn erf_f32(x: f32) -> f32 {
  let s = sign(x);
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return s * y;
}`;

/**
 * Lavapipe/llvmpipe (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS) ends every loop of an invocation once
 * the invocation has run 65535 loop headers in total — all loops together, nested ones multiplied,
 * the exit test counted (a loop of n trips costs n + 1) — and carries on with wrong results and no
 * error. Kernels keep each invocation's total under `LOOP_BUDGET` (half the limit as margin) by
 * spreading long loops over more invocations, workgroups or dispatches.
 */
export const LAVAPIPE_LOOP_LIMIT = 65535;
export const LOOP_BUDGET = 32768;

/**
 * Throws when `trips`, an upper bound on an invocation's loop headers, passes the limit (ops call
 * it on software adapters for loops they do not split, so such a size fails loudly instead of
 * silently wrong).
 */
export function assertLoopLimit(op: string, trips: number, what: string): void {
  if (trips > LAVAPIPE_LOOP_LIMIT) {
    throw new Error(
      `${op}: ${what} needs up to ${Math.ceil(trips)} loop iterations per invocation; this ` +
        `software adapter (lavapipe) silently stops an invocation's loops after ` +
        `${LAVAPIPE_LOOP_LIMIT}, so the size is refused`,
    );
  }
}

/**
 * Straight-line code visiting dims `MAX_RANK − 1 … 0` of a flat index `rem` (a `var` in scope) over
 * the uniform array `shape` while `d < rank`: each step binds `sz` (the dim's size) and `c` (the
 * coordinate), divides `rem`, then runs `body(d)` with `d` a WGSL u32 literal. Unrolled rather
 * than looped so that it costs nothing of the loop budget above.
 */
export function eachDim(rank: string, shape: string, body: (d: string) => string): string {
  let s = "";
  for (let d = MAX_RANK - 1; d >= 0; d--) {
    s +=
      `  if (${d}u < ${rank}) { let sz = dim(${shape}, ${d}u); let c = rem % sz; rem = rem / sz; ${
        body(`${d}u`)
      } }\n`;
  }
  return s;
}

/**
 * WGSL `fn name(i: u32) -> u32`: the element offset `init + Σ_d c_d·st[d]` of flat index `i` of a
 * strided view with dims `shape` (uniform arrays named as given, `rank` dims). Needs `DIM`.
 */
export function stridedOffsetFn(
  name: string,
  rank: string,
  shape: string,
  st: string,
  init: string,
): string {
  return `fn ${name}(i: u32) -> u32 {
  var rem = i;
  var off = ${init};
${eachDim(rank, shape, (d) => `off += c * dim(${st}, ${d});`)}  return off;
}`;
}

/**
 * Storage declarations at bindings `first`, `first + 1`, ...: each entry `"<access>> <name>"`
 * (an f32 array) or `"<access>> <name>: <elem>"`, e.g. `["read> x", "read_write> arg: i32"]`.
 */
export function storageDecls(list: readonly string[], first = 1): string {
  return list.map((decl, i) => {
    const [mode, rest] = decl.split("> ");
    const [name, elem = "f32"] = rest.split(": ");
    return `@group(0) @binding(${i + first}) var<storage, ${mode}> ${name}: array<${elem}>;`;
  }).join("\n");
}

/** The parts of a kernel with one thread per element of a flat range (see {@link flatKernelWgsl}). */
export interface FlatKernelParts {
  /** The uniform struct `P` (`layout.wgsl("P")`), bound at 0. */
  params: string;
  wg: number;
  /** Storage bindings 1..n, as {@link storageDecls}. */
  bindings: readonly string[];
  /** WGSL functions the body calls (after `flat_index`). */
  helpers?: string;
  /** `main`'s statements; the thread's flat index is `i`. */
  body: string;
}

/**
 * The whole WGSL of a kernel with one thread per element of a flat range folded into x/y
 * (`grid1d`): the uniform block at binding 0, the storage bindings, `flat_index` and the helpers,
 * and `main` with the thread's index `i`, then the body (which checks `i` against its range).
 */
export function flatKernelWgsl(k: FlatKernelParts): string {
  return `${k.params}
@group(0) @binding(0) var<uniform> u: P;
${storageDecls(k.bindings)}
${FLAT_INDEX}
${k.helpers === undefined ? "" : `${k.helpers}\n`}@compute @workgroup_size(${k.wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${k.wg}u);
${k.body}
}`;
}
