/**
 * EP-SAM's high-frequency input channel (patch_classifier/fft.py, extract_freq_components, then
 * the mean over RGB in ResNetAdl.forward): FFT2 with norm "forward", fftshift, the central 2×2
 * block of the shifted spectrum set to zero, ifftshift, inverse FFT2 with norm "forward" (no
 * scaling), |real part|, mean over the channels.
 *
 * The shift, zeroing and unshift are applied as one mask on the unshifted spectrum: fftshift
 * rolls by c = floor(n/2), so shifted indices c−1 and c are the unshifted frequencies n−1 and 0
 * (for every n ≥ 1, including torch's slice behaviour at n = 1).
 */
import {
  dispatch,
  disposeCopy,
  empty,
  F,
  grid1d,
  splitBatch,
  type Tensor,
  tensor,
  tidy,
} from "../engine/mod.ts";
import {
  HF_APPLY_UNIFORMS,
  HF_COEFF_UNIFORMS,
  HF_WG,
  highFreqApplyKernel,
  highFreqCoeffKernel,
} from "../kernels/highfreq.ts";

/** The mask that zeroes frequencies {0, H−1} × {0, W−1} of an unshifted [H, W] spectrum. */
function highPassMask(h: number, w: number): Float32Array {
  const m = new Float32Array(h * w).fill(1);
  for (const i of new Set([0, h - 1])) for (const j of new Set([0, w - 1])) m[i * w + j] = 0;
  return m;
}

/**
 * [N, C, H, W] images → [N, 1, H, W] high-frequency magnitude (mean over C). Inputs that need no
 * gradient (the classifier's images) take the two-pass closed form of kernels/highfreq.ts; inputs
 * under autograd take the FFT route, whose gradient is defined.
 */
export function highFrequency(x: Tensor): Tensor {
  if (!x.requiresGrad && x.rank === 4) return highFrequencyDirect(x);
  return highFrequencyFft(x);
}

/** The closed form (no FFT, no autograd). */
export function highFrequencyDirect(x: Tensor): Tensor {
  const [n, c, h, w] = x.shape;
  const xd = F.dense(x);
  const coeff = empty([n, c, 8]);
  const out = empty([n, 1, h, w]);
  if (out.size > 0) {
    // Images are independent: over the binding limit, runs of images are separate dispatches.
    for (const ch of splitBatch("highFrequency", n, [xd, coeff, out])) {
      const [rx, rc, ry] = ch.ranges;
      const k = ch.n1 - ch.n0;
      dispatch(
        highFreqCoeffKernel(),
        [rx.binding, rc.binding],
        HF_COEFF_UNIFORMS.pack({ h, w, slices: k * c, xOff: rx.off, cOff: rc.off }),
        grid1d(k * c, 1),
      );
      dispatch(
        highFreqApplyKernel(),
        [rx.binding, rc.binding, ry.binding],
        HF_APPLY_UNIFORMS.pack({
          h,
          w,
          c,
          total: k * h * w,
          xOff: rx.off,
          cOff: rc.off,
          yOff: ry.off,
        }),
        grid1d(k * h * w, HF_WG),
      );
    }
  }
  coeff.dispose();
  disposeCopy(xd, x);
  return out;
}

/** The reference's FFT route (differentiable). */
export function highFrequencyFft(x: Tensor): Tensor {
  if (x.rank !== 4) {
    throw new Error(`highFrequency: expected [N, C, H, W] images, got [${x.shape}]`);
  }
  const [, , h, w] = x.shape;
  return tidy(() => {
    const spec = F.fft2(x, { norm: "forward" });
    const mask = tensor(highPassMask(h, w), [h, w]);
    const kept = { re: F.mul(spec.re, mask), im: F.mul(spec.im, mask) };
    const back = F.ifft2(kept, { norm: "forward" });
    return F.mean(F.abs(back.re), 1, true);
  });
}
