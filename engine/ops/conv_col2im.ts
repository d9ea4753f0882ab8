/**
 * The input gradient of a strided conv (stride > 1, any window) on software adapters as a texture
 * GEMM and a col2im pass: cols[n] [C·KK, OH·OW] = Wᵀ [C·KK, O] · dy[n] [O, OH·OW], then dx[n, c,
 * h, w] = the sum of the taps of cols that reach (h, w) (kernels/conv/col2im.ts).
 *
 * The general texture path gathers dy for every input pixel and all KK taps, of which all but about
 * 1/(sh·sw) are zeros off the stride's grid (layer2's 3×3/2: 230 ms against the conv kernel's 99,
 * engine/routing.ts), so strided input gradients took the conv kernel, whose storage loads are
 * per-lane loops on CPU rasterisers. Here the GEMM does the conv's own multiply-adds and no more,
 * reading dy as it lies (copied into the bRowMajor product's texture, engine/ops/conv_pointwise.ts)
 * with the samples as its batches; col2im then adds at most ⌈kh/sh⌉·⌈kw/sw⌉ values per pixel.
 */
import { dispatch, grid1d } from "../dispatch.ts";
import { empty, type Tensor } from "../tensor.ts";
import { acquireTexture, releaseTexture } from "../texture_pool.ts";
import { bindingLimit, convTextureMaxRows } from "../routing.ts";
import {
  COL2IM_BLOCK_MAX_TERMS,
  COL2IM_UNIFORMS,
  COL2IM_WG,
  col2imBlockKernel,
  col2imKernel,
} from "../../kernels/conv/col2im.ts";
import { bindRange } from "./matmul_plan.ts";
import { type ConvGeometry, dilatedWindowOf } from "../../kernels/window.ts";
import { product, stage, weightStage } from "./conv_texture.ts";
import { copyRows, rowsCopyable } from "./conv_pointwise.ts";

/** dx [N,C,H,W] from dense dy and w (groups = 1), or null where dy cannot be copied as it lies. */
export function inputGradientCol2im(dy: Tensor, w: Tensor, g: ConvGeometry): Tensor | null {
  const KK = g.kh * g.kw, R = g.C * KK, OHW = g.OH * g.OW, maxRows = convTextureMaxRows();
  if (g.groups !== 1 || g.O % 4 || g.O > maxRows || R > maxRows) return null;
  if (!rowsCopyable(dy, dy.offset, OHW, OHW, g.O)) return null;
  const CHW = g.C * g.H * g.W, fit = (bytes: number) => Math.floor((bindingLimit() - 256) / bytes);
  // Samples per product: the B texture's height, the cols scratch's binding and dx's binding.
  const group = Math.max(
    1,
    Math.min(g.N, Math.floor(maxRows / g.O), fit(4 * R * OHW), fit(4 * CHW)),
  );
  if (4 * R * OHW + 256 > bindingLimit()) return null;
  if (4 * group * CHW + 256 > bindingLimit()) return null;
  const dx = empty([g.N, g.C, g.H, g.W]);
  // Row (c, tap), k = o: w[o, c, tap] at o·C·KK + c·KK + tap.
  const ta = stage(weightStage(w, R, g.O, { sRow: 1, kIn: 1, sOut: R, sIn: 1 }), g);
  const cols = empty([group, R, OHW]);
  // The window baked into the kernel where it unrolls (every ResNet strided conv), else the loops.
  const block = g.sh * g.sw * KK <= COL2IM_BLOCK_MAX_TERMS;
  for (let n0 = 0; n0 < g.N; n0 += group) {
    const nz = Math.min(group, g.N - n0);
    const tb = acquireTexture(OHW / 4, nz * g.O);
    for (let i = 0; i < nz; i++) {
      copyRows(tb, dy, dy.offset + (n0 + i) * g.O * OHW, OHW, OHW, g.O, i * g.O);
    }
    product(
      ta,
      tb,
      {
        M: R,
        N: OHW,
        K4: g.O / 4,
        nz,
        aRows: 0,
        bRows: g.O,
        sc0: R * OHW,
        ldc: OHW,
        bRowMajor: true,
      },
      cols,
      cols.offset,
    );
    releaseTexture(tb);
    const n = nz * CHW;
    const lo = dx.offset + n0 * CHW;
    const out = bindRange(dx, lo, lo + n - 1);
    const src = bindRange(cols, cols.offset, cols.offset + nz * R * OHW - 1);
    const threads = block ? nz * g.C * Math.ceil(g.H / g.sh) * Math.ceil(g.W / g.sw) : n;
    dispatch(
      block ? col2imBlockKernel(g) : col2imKernel(),
      [src.binding, out.binding],
      COL2IM_UNIFORMS.pack({
        n: threads,
        C: g.C,
        ...dilatedWindowOf(g),
        o0: cols.offset - src.start,
        o1: lo - out.start,
      }),
      grid1d(threads, COL2IM_WG),
    );
  }
  releaseTexture(ta);
  cols.dispose();
  return dx;
}
