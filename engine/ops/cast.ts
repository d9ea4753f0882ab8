/** Dtype conversion (not differentiable: integer tensors carry no gradient). */
import { dispatch, grid1d } from "../dispatch.ts";
import { disposeCopy, type DType, empty, Tensor } from "../tensor.ts";
import { rangeBinding, splitViews, viewOf } from "../split.ts";
import { CAST_UNIFORMS, CAST_WORKGROUP, castKernel } from "../../kernels/cast.ts";
import { dense } from "./view.ts";

/** Converts between dtypes (f32 ↔ i32 ↔ u32; values truncated toward zero into ints). */
export function cast(x: Tensor, to: DType): Tensor {
  if (x.dtype === to) return x;
  if (to === "f16" || x.dtype === "f16") {
    throw new Error("cast: f16 tensors are kernel-internal only");
  }
  const d = dense(x);
  const out = empty(x.shape, to);
  const n = out.size;
  if (n) {
    const views = [viewOf(d, [n], [1]), viewOf(out, [n], [1])];
    for (const ch of splitViews("cast", [n], views)) {
      const [rx, ry] = ch.views.map(rangeBinding);
      const cn = ch.shape[0];
      dispatch(
        castKernel(x.dtype, to),
        [rx.binding, ry.binding],
        CAST_UNIFORMS.pack({ n: cn, off: rx.off, yOff: ry.off }),
        grid1d(cn, CAST_WORKGROUP),
      );
    }
  }
  disposeCopy(d, x);
  return out;
}
