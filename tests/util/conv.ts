/**
 * A conv2d test case's operands: x, w and an upstream gradient dy of the output's shape, as
 * pseudo-random host arrays (for the float64 references in tests/reference/conv.ts) and as
 * tensors, with the op's geometry (engine/ops/conv.ts), for tests that call the conv passes
 * directly (texture GEMMs, col2im, the 1×1 copy form).
 */
import { type Tensor, tensor } from "../../engine/mod.ts";
import { conv2dGeometry, type Conv2dOptions } from "../../engine/ops/conv.ts";
import type { ConvGeometry } from "../../kernels/window.ts";
import { numelOf } from "../reference/shape.ts";
import { randArray } from "./gpu.ts";

export interface ConvOperands {
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
  xt: Tensor;
  wt: Tensor;
  dyt: Tensor;
  g: ConvGeometry;
  /** dy's (the output's) shape [N, O, OH, OW]. */
  ys: number[];
  dispose(): void;
}

/** x [xs], w [ws] and dy from seeds `seed`, `seed + 1`, `seed + 2` (entries in [−1, 1)). */
export function convOperands(
  xs: number[],
  ws: number[],
  o: Conv2dOptions = {},
  seed = 1,
): ConvOperands {
  const x = randArray(numelOf(xs), seed), w = randArray(numelOf(ws), seed + 1);
  const xt = tensor(x, xs), wt = tensor(w, ws);
  const g = conv2dGeometry("conv2d", xt, wt, null, o);
  const ys = [g.N, g.O, g.OH, g.OW];
  const dy = randArray(numelOf(ys), seed + 2), dyt = tensor(dy, ys);
  return { x, w, dy, xt, wt, dyt, g, ys, dispose: () => [xt, wt, dyt].forEach((t) => t.dispose()) };
}
