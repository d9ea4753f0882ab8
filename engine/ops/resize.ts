/** Resizing NCHW tensors: bilinear interpolation exactly as torch.nn.functional.interpolate. */
import { dispatch, grid1d } from "../dispatch.ts";
import { disposeCopy, empty, Tensor } from "../tensor.ts";
import { noGrad, record } from "../autograd.ts";
import {
  bilinearAABackwardKernel,
  bilinearAAKernel,
  bilinearBackwardKernel,
  bilinearKernel,
  RESIZE_UNIFORMS,
  RESIZE_WG,
} from "../../kernels/resize.ts";
import { dense } from "./view.ts";
import { gpu } from "../device.ts";
import { assertLoopLimit } from "../../kernels/common.ts";

/** PyTorch's area_pixel_compute_scale (given an output size, no scale factor). */
function resizeScale(inSize: number, outSize: number, alignCorners: boolean): number {
  if (alignCorners) return outSize > 1 ? (inSize - 1) / (outSize - 1) : 0;
  return inSize / outSize;
}

/**
 * interpolate(x, size=[outH, outW], mode="bilinear", align_corners, antialias) for NCHW `x`; up-
 * and down-sampling. `antialias` (torch's antialias=True, align_corners=False only) widens the
 * triangle filter by the scale when downsampling; upsampling is unchanged by it.
 */
export function interpolateBilinear(
  x: Tensor,
  size: [number, number],
  opts: { alignCorners?: boolean; antialias?: boolean } = {},
): Tensor {
  const name = "interpolateBilinear";
  const ac = opts.alignCorners ?? false;
  const aa = opts.antialias ?? false;
  if (aa && ac) throw new Error(`${name}: antialias is implemented for alignCorners=false only`);
  x.assertAlive();
  if (x.dtype !== "f32") {
    throw new Error(`${name}: expected an f32 tensor, got ${x.dtype} [${x.shape}]`);
  }
  if (x.rank !== 4) throw new Error(`${name}: expected an NCHW input, got shape [${x.shape}]`);
  const [N, C, H, W] = x.shape;
  const [OH, OW] = size;
  if (!Number.isInteger(OH) || !Number.isInteger(OW) || OH < 1 || OW < 1) {
    throw new Error(
      `${name}: output size must be positive integers, got [${size}] for input [${x.shape}]`,
    );
  }
  if (H === 0 || W === 0) throw new Error(`${name}: input [${x.shape}] has an empty plane`);
  const p = RESIZE_UNIFORMS.pack({
    planes: N * C,
    H,
    W,
    OH,
    OW,
    sh: resizeScale(H, OH, ac),
    sw: resizeScale(W, OW, ac),
  });
  if (gpu().isSoftware) {
    assertLoopLimit(
      name,
      resizeLoopTrips(OH, OW, resizeScale(H, OH, ac), resizeScale(W, OW, ac), aa),
      `[${x.shape}] → [${size}]`,
    );
  }
  const xd = noGrad(() => dense(x));
  const y = empty([N, C, OH, OW]);
  if (y.size > 0) {
    dispatch(
      aa ? bilinearAAKernel() : bilinearKernel(ac),
      [xd.binding(), y.binding()],
      p,
      grid1d(y.size, RESIZE_WG),
    );
  }
  disposeCopy(xd, x);
  return record(name, [x], y, (g) => {
    const gd = dense(g);
    const dx = empty(x.shape);
    if (dx.size > 0) {
      dispatch(
        aa ? bilinearAABackwardKernel() : bilinearBackwardKernel(ac),
        [gd.binding(), dx.binding()],
        p,
        grid1d(dx.size, RESIZE_WG),
      );
    }
    return [dx];
  });
}

/**
 * Upper bound on the loop trips of one invocation of the resize kernels (forward or backward) for
 * scales sh, sw (input pixels per output pixel): a backward pixel visits the outputs whose
 * stencil may hold it, (2·support + 1)/scale + 5 per axis (support 1 without antialiasing), each
 * antialiased visit also running a window-weight loop of 2·support + 2; an antialiased forward
 * output runs 2·support + 2 trips per axis (support = max(scale, 1)).
 */
function resizeLoopTrips(
  OH: number,
  OW: number,
  sh: number,
  sw: number,
  aa: boolean,
): number {
  const sup = (s: number) => (aa ? Math.max(s, 1) : 0.5);
  const visits = (s: number, o: number) =>
    s === 0 ? o + 1 : Math.min((2 * sup(s) + 1) / s + 5, o + 1);
  const win = (s: number) => (aa ? 2 * sup(s) + 3 : 0);
  const vh = visits(sh, OH), vw = visits(sw, OW);
  const bwd = vh * (win(sh) + 1 + vw * (win(sw) + 1));
  const fwd = win(sh) * (win(sw) + 1) + win(sh) + win(sw);
  return Math.max(fwd, bwd);
}
