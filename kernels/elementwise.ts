/**
 * Elementwise programs: unary (with two scalar parameters), binary and ternary ops over strided,
 * broadcast inputs (stride 0 on broadcast dims). The output is always dense. When every operand is
 * dense with the output's shape a flat variant skips the index arithmetic.
 */
import type { Kernel } from "./kernel.ts";
import { DIM, eachDim, ERF, FLAT_INDEX } from "./common.ts";
import { uniforms, type UniformType } from "./uniforms.ts";

/** Unary expressions of `x` with scalar params `p0`, `p1`. */
const UNARY = {
  neg: "-x",
  exp: "exp(x)",
  log: "log(x)",
  sqrt: "sqrt(x)",
  rsqrt: "inverseSqrt(x)",
  abs: "abs(x)",
  relu: "max(x, 0.0)",
  sigmoid: "1.0 / (1.0 + exp(-x))",
  tanh: "tanh_safe(x)",
  gelu: "0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752))",
  /** d gelu / dx = Φ(x) + x φ(x). */
  gelu_grad:
    "0.5 * (1.0 + erf_f32(x * 0.70710678118654752)) + x * 0.39894228040143268 * exp(-0.5 * x * x)",
  step: "select(0.0, 1.0, x > 0.0)",
  sign: "sign(x)",
  square: "x * x",
  reciprocal: "1.0 / x",
  sin: "sin(x)",
  cos: "cos(x)",
  floor: "floor(x)",
  round: "round(x)",
  /** x^p0 (real exponent). */
  pow_scalar: "pow_real(x, p0)",
  /** p0 * x + p1. */
  affine: "p0 * x + p1",
  clamp: "clamp(x, p0, p1)",
  /** 1 where p0 <= x <= p1 (clamp's gradient mask). */
  in_range: "select(0.0, 1.0, x >= p0 && x <= p1)",
  fill: "p0",
} as const;
export type UnaryOp = keyof typeof UNARY;

/** Binary expressions of `a`, `b`. Comparisons give 1.0 / 0.0. */
const BINARY = {
  add: "a + b",
  sub: "a - b",
  mul: "a * b",
  div: "a / b",
  pow: "pow_real(a, b)",
  maximum: "max(a, b)",
  minimum: "min(a, b)",
  eq: "select(0.0, 1.0, a == b)",
  ne: "select(0.0, 1.0, a != b)",
  lt: "select(0.0, 1.0, a < b)",
  le: "select(0.0, 1.0, a <= b)",
  gt: "select(0.0, 1.0, a > b)",
  ge: "select(0.0, 1.0, a >= b)",
  /** ReLU's backward from its output: the gradient `a` where `b` > 0, else 0 (one pass). */
  relu_bwd: "select(0.0, a, b > 0.0)",
} as const;
export type BinaryOp = keyof typeof BINARY;

const HELPERS = /* wgsl */ `
${ERF}
fn tanh_safe(x: f32) -> f32 { let c = clamp(x, -15.0, 15.0); let e = exp(2.0 * c); return (e - 1.0) / (e + 1.0); }
fn pow_real(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (a >= 0.0) { return pow(a, b); }
  let r = pow(-a, b);
  if (fract(b) != 0.0) { return bitcast<f32>(0x7fc00000u); }
  if (fract(b * 0.5) == 0.0) { return r; }
  return -r;
}
${FLAT_INDEX}
${DIM}
`;

const WG = 256;

function stridedBody(nIn: number): string {
  // Decompose the output index over the output shape; each input applies its own strides.
  let s = `var rem = i;\n`;
  for (let k = 0; k < nIn; k++) s += `  var o${k} = u.off${k};\n`;
  return s + eachDim("u.rank", "u.shape", (d) => {
    let b = "";
    for (let k = 0; k < nIn; k++) b += `o${k} += c * dim(u.st${k}, ${d}); `;
    return b;
  });
}

/**
 * Uniforms of an elementwise kernel with `nIn` inputs: n, rank, the scalars p0/p1, off0..off2
 * (the inputs' element offsets in their bindings, unused ones 0), off3 (the output's), the output
 * shape and each input's strides (st0..).
 */
function elementwiseLayout(nIn: number) {
  const fields: Record<string, UniformType> = { n: "u32", rank: "u32", p0: "f32", p1: "f32" };
  for (let k = 0; k < 4; k++) fields[`off${k}`] = "u32";
  fields.shape = "dims8";
  for (let k = 0; k < nIn; k++) fields[`st${k}`] = "dims8";
  return uniforms(fields);
}
/** {@link elementwiseLayout} by input count (0: fill, 1: unary, 2: binary, 3: where). */
export const ELEMENTWISE_UNIFORMS = [0, 1, 2, 3].map(elementwiseLayout);

/** Input count, scalar expression and input names of an elementwise op. */
function opParts(
  kind: "unary" | "binary" | "where",
  op: string,
): { nIn: number; expr: string; names: string[] } {
  return {
    nIn: kind === "unary" ? (op === "fill" ? 0 : 1) : kind === "binary" ? 2 : 3,
    expr: kind === "unary"
      ? UNARY[op as UnaryOp]
      : kind === "binary"
      ? BINARY[op as BinaryOp]
      : "select(b, a, c != 0.0)",
    names: kind === "unary" ? ["x"] : kind === "binary" ? ["a", "b"] : ["c", "a", "b"],
  };
}

/**
 * The WGSL every elementwise kernel shares: uniforms, `nIn` read bindings and the output over
 * `elem` (input k over `inElems[k]` where given), one invocation per element `i`
 * (bounds-checked), `p0`/`p1` in scope, then `body`.
 */
function shell(nIn: number, elem: string, body: string, inElems?: string[]): string {
  let decl = "";
  for (let k = 0; k < nIn; k++) {
    decl += `@group(0) @binding(${k + 1}) var<storage, read> in${k}: array<${
      inElems?.[k] ?? elem
    }>;\n`;
  }
  decl += `@group(0) @binding(${nIn + 1}) var<storage, read_write> out: array<${elem}>;\n`;
  return `${ELEMENTWISE_UNIFORMS[nIn].wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
${decl}${HELPERS}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${WG}u);
  if (i >= u.n) { return; }
  let p0 = u.p0; let p1 = u.p1;
${body}
}`;
}

/**
 * Builds an elementwise kernel. `expr` reads `x` (unary), `a`/`b` (binary) or `c`/`a`/`b`
 * (ternary select), `p0`/`p1`. Uniform layout: n, rank, p0, p1, off0..off2 (the inputs' element
 * offsets in their bindings), off3 (the output's), shape, strides per input.
 */
export function elementwiseKernel(
  kind: "unary" | "binary" | "where",
  op: string,
  flat: boolean,
  vec4 = false,
): Kernel {
  if (vec4) return elementwiseVec4Kernel(kind, op);
  const { nIn, expr, names } = opParts(kind, op);
  return {
    key: `ew/${kind}/${op}/${flat ? "flat" : "strided"}`,
    wgsl: () => {
      let loads = flat ? "" : `  ${stridedBody(nIn)}\n`;
      for (let k = 0; k < nIn; k++) {
        loads += `  let ${names[k]} = in${k}[${flat ? `i + u.off${k}` : `o${k}`}];\n`;
      }
      return shell(nIn, "f32", `${loads}  out[i + u.off3] = ${expr};`);
    },
  };
}

/**
 * The flat variant over vec4s (n, offsets in vec4 units; every operand dense, same shape): one
 * load per operand per four elements, which on CPU rasterisers is one per-lane loop instead of
 * four. The scalar expression runs per component.
 */
function elementwiseVec4Kernel(kind: "unary" | "binary" | "where", op: string): Kernel {
  const { nIn, expr, names } = opParts(kind, op);
  return {
    key: `ew/${kind}/${op}/flat4`,
    wgsl: () => {
      let body = "";
      for (let k = 0; k < nIn; k++) body += `  let v${k} = in${k}[i + u.off${k}];\n`;
      body += "  var r = vec4<f32>(0.0);\n";
      for (const c of ["x", "y", "z", "w"]) {
        const lets = names.slice(0, nIn).map((nm, k) => `let ${nm} = v${k}.${c};`).join(" ");
        body += `  { ${lets} r.${c} = ${expr}; }\n`;
      }
      return shell(nIn, "vec4<f32>", `${body}  out[i + u.off3] = r;`);
    },
  };
}

/**
 * The strided variant four elements at a time, where the innermost dim (a multiple of 4) is
 * contiguous or broadcast in every input: thread i places element 4i once (the index arithmetic,
 * a division per dim, for four elements), then input k is one vec4 load where `vecIn[k]` (inner
 * stride 1, its offsets multiples of 4) or one scalar load splatted (inner stride 0). Broadcasts
 * such as x·m with m [N, 1, H, W] (ADL) take it. Uniforms as {@link elementwiseKernel}'s (n in
 * vec4s, offsets and strides in elements); the output is dense.
 */
export function elementwiseStrided4Kernel(
  kind: "unary" | "binary" | "where",
  op: string,
  vecIn: boolean[],
): Kernel {
  const { nIn, expr, names } = opParts(kind, op);
  if (vecIn.length !== nIn) {
    throw new Error(`ew strided4 ${op}: ${vecIn.length} flags, ${nIn} inputs`);
  }
  return {
    key: `ew/${kind}/${op}/strided4/${vecIn.map((v) => v ? "v" : "s").join("")}`,
    wgsl: () => {
      let body = `  var rem = i * 4u;\n`;
      for (let k = 0; k < nIn; k++) body += `  var o${k} = u.off${k};\n`;
      body += eachDim("u.rank", "u.shape", (d) => {
        let b = "";
        for (let k = 0; k < nIn; k++) b += `o${k} += c * dim(u.st${k}, ${d}); `;
        return b;
      });
      for (let k = 0; k < nIn; k++) {
        body += vecIn[k]
          ? `  let v${k} = in${k}[o${k} / 4u];\n`
          : `  let v${k} = vec4<f32>(in${k}[o${k}]);\n`;
      }
      body += "  var r = vec4<f32>(0.0);\n";
      for (const c of ["x", "y", "z", "w"]) {
        const lets = names.slice(0, nIn).map((nm, k) => `let ${nm} = v${k}.${c};`).join(" ");
        body += `  { ${lets} r.${c} = ${expr}; }\n`;
      }
      return shell(
        nIn,
        "vec4<f32>",
        `${body}  out[i + u.off3 / 4u] = r;`,
        vecIn.map((v) => v ? "vec4<f32>" : "f32"),
      );
    },
  };
}

export const ELEMENTWISE_WORKGROUP = WG;
