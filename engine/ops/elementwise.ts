/**
 * Elementwise ops with NumPy/PyTorch broadcasting, forward launch and backward rule side by side.
 * Numbers as operands become uniforms (no upload).
 */
import { dispatch, grid1d } from "../dispatch.ts";
import { empty, numel, type Shape, Tensor } from "../tensor.ts";
import { rangeBinding, splitViews, viewOf } from "../split.ts";
import { record } from "../autograd.ts";
import {
  type BinaryOp,
  ELEMENTWISE_UNIFORMS,
  ELEMENTWISE_WORKGROUP as WG,
  elementwiseKernel,
  elementwiseStrided4Kernel,
  type UnaryOp,
} from "../../kernels/elementwise.ts";
import { dims8 } from "../../kernels/common.ts";

/** Broadcast result shape of several shapes (PyTorch rules), with a clear error. */
export function broadcastShapes(...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      if (s[i] === out[o] || s[i] === 1) continue;
      if (out[o] === 1) out[o] = s[i];
      else {throw new Error(`shapes ${
          shapes.map((x) => `[${x}]`).join(", ")
        } cannot be broadcast together`);}
    }
  }
  return out;
}

/** Strides of `t` seen with shape `out` (0 on broadcast dims). */
function broadcastStrides(t: Tensor, out: Shape): number[] {
  const st = new Array<number>(out.length).fill(0);
  for (let i = 0; i < t.rank; i++) {
    const o = out.length - t.rank + i;
    st[o] = t.shape[i] === 1 && out[o] !== 1 ? 0 : t.strides[i];
  }
  return st;
}

function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function f32Only(name: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    t.assertAlive();
    if (t.dtype !== "f32") {
      throw new Error(`${name}: expected f32 tensors, got ${t.dtype} [${t.shape}]`);
    }
  }
}

/**
 * Launches an elementwise kernel with inputs `ins` broadcast to `shape` (no autograd). Tensors
 * too large for one binding are split into chunks (engine/split.ts): element ranges on the flat
 * path, leading-dim ranges on the strided one; each chunk binds only the ranges it touches.
 */
/**
 * Which inputs the four-at-a-time strided kernel loads as vec4s (inner stride 1) rather than splats
 * (inner stride 0), or null where it does not apply: the innermost dim a multiple of 4, every
 * input's inner stride 0 or 1, every offset and stride of a vec4-loaded input and the output's
 * offset multiples of 4 (each group of four starts a vec4).
 */
function strided4(shape: Shape, strides: Shape[], offs: number[]): boolean[] | null {
  const d = shape.length - 1;
  if (d < 0 || shape[d] % 4 || offs[3] % 4) return null;
  const vec: boolean[] = [];
  for (let k = 0; k < strides.length; k++) {
    const st = strides[k];
    if (st[d] === 1 && offs[k] % 4 === 0 && st.every((s, j) => j === d || s % 4 === 0)) {
      vec.push(true);
    } else if (st[d] === 0) vec.push(false);
    else return null;
  }
  return vec;
}

function launch(
  kind: "unary" | "binary" | "where",
  op: string,
  ins: Tensor[],
  shape: Shape,
  p0 = 0,
  p1 = 0,
): Tensor {
  const out = empty(shape, "f32");
  const n = out.size;
  if (n === 0) return out;
  const flat = ins.every((t) => t.isDense() && sameShape(t.shape, shape));
  const views = flat
    ? [...ins, out].map((t) => viewOf(t, [n], [1]))
    : [...ins.map((t) => viewOf(t, shape, broadcastStrides(t, shape))), viewOf(out)];
  for (const ch of splitViews(op, flat ? [n] : shape, views)) {
    const r = ch.views.map(rangeBinding);
    const cn = numel(ch.shape);
    const offs = [0, 0, 0, 0];
    ins.forEach((_, k) => offs[k] = r[k].off);
    offs[3] = r[ins.length].off;
    // Flat and every range 16-byte aligned: the vec4 variant, counts and offsets in vec4s.
    const v4 = flat && cn % 4 === 0 && offs.every((o) => o % 4 === 0);
    // Strided with the innermost dim contiguous or broadcast everywhere: four elements a thread.
    const s4 = flat ? null : strided4(ch.shape, ins.map((_, k) => ch.views[k].strides), offs);
    const q = v4 || s4 ? 4 : 1;
    const values: Record<string, number | number[]> = {
      n: cn / q,
      rank: ch.shape.length,
      p0,
      p1,
      shape: dims8(flat ? [] : ch.shape),
    };
    // Offsets in vec4s for the flat vec4 kernel; the strided one indexes elements.
    offs.forEach((o, k) => values[`off${k}`] = v4 ? o / 4 : o);
    ins.forEach((_, k) => values[`st${k}`] = dims8(flat ? [] : ch.views[k].strides, 0));
    const p = ELEMENTWISE_UNIFORMS[ins.length].pack(values);
    const kernel = s4
      ? elementwiseStrided4Kernel(kind, op, s4)
      : elementwiseKernel(kind, op, flat, v4);
    dispatch(kernel, r.map((b) => b.binding), p, grid1d(cn / q, WG));
  }
  return out;
}

/** Raw unary kernel (no autograd). */
export function unaryRaw(op: UnaryOp, x: Tensor, p0 = 0, p1 = 0): Tensor {
  f32Only(op, x);
  return launch("unary", op, [x], x.shape, p0, p1);
}

/** Raw binary kernel with broadcasting (no autograd). */
export function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  f32Only(op, a, b);
  return launch("binary", op, [a, b], broadcastShapes(a.shape, b.shape));
}

/** A tensor of `shape` filled with `value`. */
export function fill(shape: Shape, value: number): Tensor {
  return launch("unary", "fill", [], shape, value, 0);
}
export const zeros = (shape: Shape): Tensor => fill(shape, 0);
export const ones = (shape: Shape): Tensor => fill(shape, 1);
const zerosLike = (t: Tensor): Tensor => fill(t.shape, 0);

// ---------------------------------------------------------------- differentiable unary ops

function unaryOp(
  op: UnaryOp,
  x: Tensor,
  rule: (g: Tensor, x: Tensor, y: Tensor) => Tensor,
  saveOut = false,
): Tensor {
  const y = unaryRaw(op, x);
  return record(op, [x], y, (g) => [rule(g, x, y)], saveOut ? [y] : [x]);
}

export const neg = (x: Tensor): Tensor => affine(x, -1, 0);
export const exp = (x: Tensor): Tensor => unaryOp("exp", x, (g, _x, y) => mul(g, y), true);
export const log = (x: Tensor): Tensor => unaryOp("log", x, (g, x) => div(g, x));
export const sqrt = (x: Tensor): Tensor =>
  unaryOp("sqrt", x, (g, _x, y) => div(g, affine(y, 2, 0)), true);
export const rsqrt = (x: Tensor): Tensor =>
  // d x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
  unaryOp("rsqrt", x, (g, _x, y) => mul(g, affine(unaryRaw("pow_scalar", y, 3), -0.5, 0)), true);
export const abs = (x: Tensor): Tensor => unaryOp("abs", x, (g, x) => mul(g, unaryRaw("sign", x)));
/** Saves its output, not its input (y > 0 ⟺ x > 0): the tensor the next layer keeps anyway, so
 * a conv → BN → ReLU chain holds two activations for backward instead of three. */
export const relu = (x: Tensor): Tensor =>
  unaryOp("relu", x, (g, _x, y) => binaryRaw("relu_bwd", g, y), true);
export const sigmoid = (x: Tensor): Tensor =>
  unaryOp("sigmoid", x, (g, _x, y) => mul(g, mul(y, affine(y, -1, 1))), true);
export const tanh = (x: Tensor): Tensor =>
  unaryOp("tanh", x, (g, _x, y) => mul(g, affine(unaryRaw("square", y), -1, 1)), true);
/** GELU, PyTorch's exact (erf) form. */
export const gelu = (x: Tensor): Tensor =>
  unaryOp("gelu", x, (g, x) => mul(g, unaryRaw("gelu_grad", x)));
export const square = (x: Tensor): Tensor =>
  unaryOp("square", x, (g, x) => mul(g, affine(x, 2, 0)));
export const sin = (x: Tensor): Tensor => unaryOp("sin", x, (g, x) => mul(g, unaryRaw("cos", x)));
export const cos = (x: Tensor): Tensor =>
  unaryOp("cos", x, (g, x) => mul(g, affine(unaryRaw("sin", x), -1, 0)));

/** a·x + b for numbers a, b. */
export function affine(x: Tensor, a: number, b: number): Tensor {
  const y = unaryRaw("affine", x, a, b);
  return record("affine", [x], y, (g) => [affine(g, a, 0)]);
}

/** x^p for a number p. */
function powScalar(x: Tensor, p: number): Tensor {
  const y = unaryRaw("pow_scalar", x, p);
  return record("pow", [x], y, (g) => [mul(g, affine(unaryRaw("pow_scalar", x, p - 1), p, 0))], [
    x,
  ]);
}

/** Clamps into [lo, hi] (use ±Infinity for one side). */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  const l = Math.max(lo, -3.4e38), h = Math.min(hi, 3.4e38);
  const y = unaryRaw("clamp", x, l, h);
  return record("clamp", [x], y, (g) => [mul(g, unaryRaw("in_range", x, l, h))], [x]);
}

// ---------------------------------------------------------------- differentiable binary ops

type Operand = Tensor | number;

export function add(a: Operand, b: Operand): Tensor {
  if (typeof b === "number") return typeof a === "number" ? fill([], a + b) : affine(a, 1, b);
  if (typeof a === "number") return affine(b, 1, a);
  const y = binaryRaw("add", a, b);
  return record("add", [a, b], y, (g) => [g, g]);
}

export function sub(a: Operand, b: Operand): Tensor {
  if (typeof b === "number") return typeof a === "number" ? fill([], a - b) : affine(a, 1, -b);
  if (typeof a === "number") return affine(b, -1, a);
  const y = binaryRaw("sub", a, b);
  return record("sub", [a, b], y, (g) => [g, neg(g)]);
}

export function mul(a: Operand, b: Operand): Tensor {
  if (typeof b === "number") return typeof a === "number" ? fill([], a * b) : affine(a, b, 0);
  if (typeof a === "number") return affine(b, a, 0);
  const y = binaryRaw("mul", a, b);
  return record("mul", [a, b], y, (g) => [mul(g, b), mul(g, a)], [a, b]);
}

export function div(a: Operand, b: Operand): Tensor {
  if (typeof b === "number") return typeof a === "number" ? fill([], a / b) : affine(a, 1 / b, 0);
  const at = typeof a === "number" ? fill([], a) : a;
  const y = binaryRaw("div", at, b);
  return record("div", [at, b], y, (g) => [div(g, b), neg(div(mul(g, y), b))], [b, y]);
}

export function pow(a: Tensor, b: Operand): Tensor {
  if (typeof b === "number") return powScalar(a, b);
  const y = binaryRaw("pow", a, b);
  return record(
    "pow",
    [a, b],
    y,
    (
      g,
    ) => [
      mul(g, mul(b, binaryRaw("pow", a, affine(b, 1, -1)))),
      mul(g, mul(y, unaryRaw("log", a))),
    ],
    [a, b, y],
  );
}

/** Elementwise max; the gradient goes to `a` where a ≥ b, else to `b`. */
export function maximum(a: Tensor, b: Tensor): Tensor {
  const y = binaryRaw("maximum", a, b);
  return record("maximum", [a, b], y, (g) => {
    const m = binaryRaw("ge", a, b);
    return [mul(g, m), mul(g, affine(m, -1, 1))];
  }, [a, b]);
}

export function minimum(a: Tensor, b: Tensor): Tensor {
  const y = binaryRaw("minimum", a, b);
  return record("minimum", [a, b], y, (g) => {
    const m = binaryRaw("le", a, b);
    return [mul(g, m), mul(g, affine(m, -1, 1))];
  }, [a, b]);
}

/** Comparisons: 1.0 where true, 0.0 elsewhere; not differentiable. */
export const eq = (a: Tensor, b: Tensor): Tensor => binaryRaw("eq", a, b);
export const ne = (a: Tensor, b: Tensor): Tensor => binaryRaw("ne", a, b);
export const lt = (a: Tensor, b: Tensor): Tensor => binaryRaw("lt", a, b);
export const le = (a: Tensor, b: Tensor): Tensor => binaryRaw("le", a, b);
export const gt = (a: Tensor, b: Tensor): Tensor => binaryRaw("gt", a, b);
export const ge = (a: Tensor, b: Tensor): Tensor => binaryRaw("ge", a, b);

/** cond ≠ 0 ? a : b, broadcast; gradients flow to a and b only. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  f32Only("where", cond, a, b);
  const y = launch("where", "where", [cond, a, b], broadcastShapes(cond.shape, a.shape, b.shape));
  return record("where", [cond, a, b], y, (g) => {
    const z = zerosLike(g);
    return [null, where(cond, g, z), where(cond, z, g)];
  }, [cond]);
}
