/**
 * The per-output-channel epilogue of a conv (BatchNorm folded into scale and shift, residual add,
 * ReLU): its operands, their kernel-side spec, and the epilogue as a pass of its own. Apart from
 * conv.ts so that both conv launch paths (conv.ts, conv_texture.ts) import it without a cycle.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import type { Tensor } from "../tensor.ts";
import { splitBatch } from "../split.ts";
import {
  type ChannelEpilogue,
  channelEpilogueKernel,
  EPILOGUE_UNIFORMS,
  EPILOGUE_WG,
} from "../../kernels/conv/epilogue.ts";

/**
 * The operands of a per-output-channel epilogue (kernels/conv/epilogue.ts) for
 * {@link conv2dForwardRaw}: scale [O], shift [O] and residual [N,O,OH,OW] dense f32 tensors, the
 * residual at element offset 0 (its binding then covers the same range as the output's, so the
 * kernels index it like the output).
 */
export interface ConvEpilogueOperands {
  scale?: Tensor;
  shift?: Tensor;
  residual?: Tensor;
  relu?: boolean;
}

/** The kernel-side spec of epilogue operands. */
export function epilogueSpec(e: ConvEpilogueOperands): ChannelEpilogue {
  return { scale: !!e.scale, shift: !!e.shift, residual: !!e.residual, relu: !!e.relu };
}

/**
 * Applies the epilogue `ep` in place to a dense conv output y [N,O,OH,OW] as a pass of its own:
 * for a conv path whose store does not take the epilogue (yet). The residual, as in
 * {@link conv2dForwardRaw}, is dense at offset 0.
 */
export function applyConvEpilogueRaw(y: Tensor, ep: ConvEpilogueOperands): void {
  const spec = epilogueSpec(ep);
  if (y.size === 0 || !(spec.scale || spec.shift || spec.residual || spec.relu)) return;
  if (!y.isDense()) throw new Error("applyConvEpilogueRaw: the conv output must be dense");
  const [N, C, H, W] = y.shape;
  const res = ep.residual;
  for (const ch of splitBatch("conv2d epilogue", N, res ? [y, res] : [y])) {
    const [ry, rr] = ch.ranges;
    const n = (ch.n1 - ch.n0) * C * H * W;
    const bindings = [];
    if (ep.scale) bindings.push(ep.scale.binding());
    if (ep.shift) bindings.push(ep.shift.binding());
    if (rr) bindings.push(rr.binding);
    bindings.push(ry.binding);
    dispatch(
      channelEpilogueKernel(spec),
      bindings,
      EPILOGUE_UNIFORMS.pack({ n, C, HW: H * W, oy: ry.off, or: rr?.off ?? 0 }),
      grid1d(n, EPILOGUE_WG),
    );
  }
}
