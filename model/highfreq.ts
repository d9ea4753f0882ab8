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
import { F, type Tensor, tensor, tidy } from "../engine/mod.ts";

/** The mask that zeroes frequencies {0, H−1} × {0, W−1} of an unshifted [H, W] spectrum. */
export function highPassMask(h: number, w: number): Float32Array {
  const m = new Float32Array(h * w).fill(1);
  for (const i of new Set([0, h - 1])) for (const j of new Set([0, w - 1])) m[i * w + j] = 0;
  return m;
}

/** [N, C, H, W] images → [N, 1, H, W] high-frequency magnitude (mean over C). */
export function highFrequency(x: Tensor): Tensor {
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
