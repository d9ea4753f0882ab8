/**
 * Radix-2 Stockham FFT of power-of-two length m over many rows, with the hooks Bluestein's
 * algorithm needs: an optional complex pre-multiply of the input (and zero padding from nIn to m),
 * an optional complex post-multiply of the output (and truncation to nOut), and a real scale.
 *
 * Data layout: rows address a dense tensor seen as [outer, len, inner] (the transform runs along
 * the middle dim, so no transpose is needed): element k of row r is at
 * (r / inner)·len·inner + r % inner + k·inner (input and output each with their own `inner`, the
 * same row order). Inputs are planar f32 (re, im; im may be absent for
 * a real input) read at element offsets in their storages; the output is planar too, with the
 * imaginary part `outIm` elements after the real part (the engine packs a complex result as
 * [2, ...shape]). One table buffer of vec2<f32> holds the twiddles w_k = exp(−2πik/m), k < m/2
 * (computed on the host in float64), then the pre- and post-multipliers, at offsets in uniforms.
 *
 * m ≤ 1024: one dispatch, a workgroup transforms R = max(1, 512/m) rows in workgroup memory
 * (2·R·m complex = at most 16 KiB, the WebGPU default limit). Larger m: one dispatch per pass,
 * ping-ponging interleaved complex rows through global memory.
 */
import type { Kernel } from "./kernel.ts";
import { uniforms } from "./uniforms.ts";

export const FFT_WG = 256;
/** Largest length transformed inside one workgroup. */
export const FFT_LOCAL_MAX = 1024;

export interface FftFlags {
  /** No imaginary input (treated as zero). */
  real: boolean;
  /** Multiply input element k (< nIn) by table[pre + k]. */
  pre: boolean;
  /** Multiply output element k (< nOut) by table[post + k]. */
  post: boolean;
  /** Conjugate twiddles (unnormalised inverse transform). */
  inverse: boolean;
}

/**
 * rows transforms of nIn inputs and nOut outputs (`inner` and `innerOut` apart); the input's
 * planar offsets and the output's imaginary plane; table offsets of the twiddles (tw), the pre-
 * and post-multipliers; the output scale; the transform length m and the multi-pass stage ns.
 */
export const FFT_UNIFORMS = uniforms({
  rows: "u32",
  nIn: "u32",
  nOut: "u32",
  inner: "u32",
  offRe: "u32",
  offIm: "u32",
  outIm: "u32",
  tw: "u32",
  pre: "u32",
  post: "u32",
  scale: "f32",
  m: "u32",
  ns: "u32",
  innerOut: "u32",
  _pad0: "u32",
  _pad1: "u32",
});
const PARAMS = `${FFT_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;`;

const CMUL =
  `fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x); }`;

/** Bindings for a planar input (inRe, inIm?) starting at `first`; returns [decls, next binding]. */
function inputDecl(f: FftFlags, first: number): [string, number] {
  let s = `@group(0) @binding(${first}) var<storage, read> inRe: array<f32>;\n`;
  if (!f.real) s += `@group(0) @binding(${first + 1}) var<storage, read> inIm: array<f32>;\n`;
  return [s, first + (f.real ? 1 : 2)];
}

function loadFn(f: FftFlags): string {
  return `fn load_in(row: u32, k: u32) -> vec2<f32> {
  if (row >= u.rows || k >= u.nIn) { return vec2<f32>(0.0); }
  let o = (row / u.inner) * u.nIn * u.inner + row % u.inner + k * u.inner;
  var v = vec2<f32>(inRe[u.offRe + o], ${f.real ? "0.0" : "inIm[u.offIm + o]"});
  ${f.pre ? "v = cmul(v, table[u.pre + k]);" : ""}
  return v;
}`;
}

function storeFn(f: FftFlags): string {
  return `fn store_out(row: u32, k: u32, value: vec2<f32>) {
  if (row >= u.rows || k >= u.nOut) { return; }
  var v = value;
  ${f.post ? "v = cmul(v, table[u.post + k]);" : ""}
  v = v * u.scale;
  let o = (row / u.innerOut) * u.nOut * u.innerOut + row % u.innerOut + k * u.innerOut;
  out[o] = v.x;
  out[u.outIm + o] = v.y;
}`;
}

function twiddle(f: FftFlags): string {
  return `fn twiddle(i: u32) -> vec2<f32> { let w = table[u.tw + i]; return vec2<f32>(w.x, ${
    f.inverse ? "-w.y" : "w.y"
  }); }`;
}

function flagKey(f: FftFlags): string {
  return `${f.real ? "r" : "c"}${f.pre ? "P" : ""}${f.post ? "Q" : ""}${f.inverse ? "i" : "f"}`;
}

/** Rows per workgroup for the local kernel. */
export function fftRowsPerGroup(m: number): number {
  return Math.max(1, Math.floor(512 / m));
}

/** Whole transform of length m (power of two ≤ 1024) in one dispatch; a workgroup per R rows. */
export function fftLocalKernel(m: number, f: FftFlags): Kernel {
  const L = Math.round(Math.log2(m));
  const R = fftRowsPerGroup(m);
  const RM = R * m, HALF = m >> 1;
  return {
    key: `fft/local/${m}/${flagKey(f)}`,
    wgsl: () => {
      const [decl, next] = inputDecl(f, 1);
      return `${PARAMS}
${decl}@group(0) @binding(${next}) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(${next + 1}) var<storage, read_write> out: array<f32>;
var<workgroup> buf: array<vec2<f32>, ${2 * RM}>;
${CMUL}
${twiddle(f)}
${loadFn(f)}
${storeFn(f)}
@compute @workgroup_size(${FFT_WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let rowBase = (wid.x + wid.y * nwg.x) * ${R}u;
  for (var t = lid; t < ${RM}u; t += ${FFT_WG}u) {
    buf[t] = load_in(rowBase + t / ${m}u, t % ${m}u);
  }
  workgroupBarrier();
  for (var s = 0u; s < ${L}u; s++) {
    let ns = 1u << s;
    let src = (s % 2u) * ${RM}u;
    let dst = ((s + 1u) % 2u) * ${RM}u;
    for (var t = lid; t < ${(RM / 2) | 0}u; t += ${FFT_WG}u) {
      let r = t / ${HALF || 1}u;
      let j = t % ${HALF || 1}u;
      let jm = j & (ns - 1u);
      let a = buf[src + r * ${m}u + j];
      let b = cmul(buf[src + r * ${m}u + j + ${HALF}u], twiddle(jm << (${
        Math.max(L - 1, 0)
      }u - s)));
      let d = dst + r * ${m}u + ((j >> s) << (s + 1u)) + jm;
      buf[d] = a + b;
      buf[d + ns] = a - b;
    }
    workgroupBarrier();
  }
  let fin = ${(L % 2) * RM}u;
  for (var t = lid; t < ${RM}u; t += ${FFT_WG}u) {
    store_out(rowBase + t / ${m}u, t % ${m}u, buf[fin + t]);
  }
}`;
    },
  };
}

/**
 * One radix-2 pass (sub-transform size 2·ns) of a length-m transform through global memory.
 * The first pass reads the planar input (with pre-multiply and padding), the last writes the
 * planar output (post-multiply, scale, truncation); the others read and write `tmp` rows of m
 * interleaved complex values. One thread per butterfly: rows·m/2 threads.
 */
export function fftPassKernel(f: FftFlags, first: boolean, last: boolean): Kernel {
  return {
    key: `fft/pass/${flagKey(f)}/${first ? "F" : ""}${last ? "L" : ""}`,
    wgsl: () => {
      let decl: string, next: number;
      if (first) [decl, next] = inputDecl(f, 1);
      else {[decl, next] = [
          `@group(0) @binding(1) var<storage, read> tmpIn: array<vec2<f32>>;\n`,
          2,
        ];}
      decl += `@group(0) @binding(${next}) var<storage, read> table: array<vec2<f32>>;\n`;
      decl += last
        ? `@group(0) @binding(${next + 1}) var<storage, read_write> out: array<f32>;\n`
        : `@group(0) @binding(${next + 1}) var<storage, read_write> tmpOut: array<vec2<f32>>;\n`;
      const load = first
        ? loadFn(f)
        : `fn load_in(row: u32, k: u32) -> vec2<f32> { return tmpIn[row * u.m + k]; }`;
      const store = last
        ? storeFn(f)
        : `fn store_out(row: u32, k: u32, v: vec2<f32>) { tmpOut[row * u.m + k] = v; }`;
      return `${PARAMS}
${decl}${CMUL}
${twiddle(f)}
${load}
${store}
@compute @workgroup_size(${FFT_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * ${FFT_WG}u;
  let half = u.m / 2u;
  let row = t / half;
  if (row >= u.rows) { return; }
  let j = t % half;
  let ns = u.ns;
  let s = countTrailingZeros(ns);
  let jm = j & (ns - 1u);
  let a = load_in(row, j);
  let b = cmul(load_in(row, j + half), twiddle(jm * (half >> s)));
  let d = ((j >> s) << (s + 1u)) + jm;
  store_out(row, d, a + b);
  store_out(row, d + ns, a - b);
}`;
    },
  };
}
