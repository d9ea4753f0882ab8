/** In-place integer counters on the GPU (no readback, not differentiable). */
import { dispatch } from "../dispatch.ts";
import type { Tensor } from "../tensor.ts";
import { COUNTER_UNIFORMS, counterAddKernel } from "../../kernels/counter.ts";

/** `counter += step` in place: a dense one-element i32 tensor (BatchNorm's num_batches_tracked). */
export function counterAddRaw(counter: Tensor, step = 1): void {
  counter.assertAlive();
  if (counter.dtype !== "i32" || counter.size !== 1 || !counter.isDense()) {
    throw new Error(
      `counterAddRaw: expected a dense one-element i32 tensor, got ${counter.dtype} [${counter.shape}]`,
    );
  }
  if (!Number.isInteger(step) || Math.abs(step) > 0x7fffffff) {
    throw new Error(`counterAddRaw: step must be a 32-bit integer, got ${step}`);
  }
  dispatch(counterAddKernel(), [counter.binding()], COUNTER_UNIFORMS.pack({ step }), [1]);
}
