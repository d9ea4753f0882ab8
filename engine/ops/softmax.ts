/** Softmax and log-softmax along any axis (no transpose: the kernel strides along the axis). */
import { dispatch, grid1d, Params } from "../dispatch.ts";
import { empty, Tensor } from "../tensor.ts";
import { record } from "../autograd.ts";
import {
  rowItemsPerGroup,
  rowMode,
  softmaxBackwardKernel,
  softmaxKernel,
} from "../../kernels/softmax.ts";
import { dense, normAxis } from "./view.ts";

/** rows / L / inner of `shape` seen along `axis`. */
export function rowsAlong(shape: readonly number[], axis: number): {
  rows: number;
  len: number;
  inner: number;
} {
  let outer = 1, inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return { rows: outer * inner, len: shape[axis], inner };
}

function softmaxImpl(name: string, log: boolean, x: Tensor, axis: number): Tensor {
  x.assertAlive();
  if (x.dtype !== "f32") {
    throw new Error(`${name}: expected an f32 tensor, got ${x.dtype} [${x.shape}]`);
  }
  if (x.rank === 0) throw new Error(`${name}: needs at least one dimension, got a scalar`);
  const a = normAxis(axis, x.rank, `${name}: axis`);
  const { rows, len, inner } = rowsAlong(x.shape, a);
  const xd = dense(x);
  const y = empty(x.shape);
  if (y.size > 0) {
    const m = rowMode(len, inner);
    const p = new Params().u32(rows, len, inner, 0);
    dispatch(
      softmaxKernel(log, m),
      [xd.binding(), y.binding()],
      p,
      grid1d(rows, rowItemsPerGroup(m)),
    );
  }
  if (xd !== x) xd.dispose();
  return record(name, [x], y, (g) => {
    const gd = dense(g);
    const dx = empty(x.shape);
    if (dx.size > 0) {
      const m = rowMode(len, inner);
      const p = new Params().u32(rows, len, inner, 0);
      dispatch(
        softmaxBackwardKernel(log, m),
        [y.binding(), gd.binding(), dx.binding()],
        p,
        grid1d(rows, rowItemsPerGroup(m)),
      );
    }
    return [dx];
  }, [y]);
}

/** softmax(x) along `axis` (default the last), numerically stable. */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl("softmax", false, x, axis);
}

/** log(softmax(x)) along `axis` (default the last), computed as x − max − log Σ exp(x − max). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl("logSoftmax", true, x, axis);
}
