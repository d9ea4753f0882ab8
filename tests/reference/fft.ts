/** Float64 CPU references for the DFT and the EP-SAM high-frequency channel. */

/**
 * Direct O(n²) DFT of `rows` contiguous rows of length n: X_k = s·Σ_j x_j exp(∓2πi jk/n)
 * (minus for forward). Angles use jk mod n for accuracy.
 */
export function dftRows(
  re: ArrayLike<number>,
  im: ArrayLike<number> | null,
  n: number,
  inverse = false,
  scale = 1,
): { re: Float64Array; im: Float64Array } {
  const rows = re.length / n;
  const outRe = new Float64Array(re.length), outIm = new Float64Array(re.length);
  const cos = new Float64Array(n), sin = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    cos[t] = Math.cos((2 * Math.PI * t) / n);
    sin[t] = (inverse ? 1 : -1) * Math.sin((2 * Math.PI * t) / n);
  }
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < n; k++) {
      let sr = 0, si = 0;
      for (let j = 0; j < n; j++) {
        const t = (j * k) % n;
        const xr = re[r * n + j], xi = im ? im[r * n + j] : 0;
        sr += xr * cos[t] - xi * sin[t];
        si += xr * sin[t] + xi * cos[t];
      }
      outRe[r * n + k] = sr * scale;
      outIm[r * n + k] = si * scale;
    }
  }
  return { re: outRe, im: outIm };
}

/**
 * Moves axis `a` of a row-major array of `shape` to the end, or with `back` undoes that (the
 * input then holds axis `a` last). Returns the permuted data.
 */
function moveAxisLast(
  x: ArrayLike<number>,
  shape: number[],
  a: number,
  back = false,
): Float64Array {
  const outer = shape.slice(0, a).reduce((p, s) => p * s, 1);
  const n = shape[a];
  const inner = shape.slice(a + 1).reduce((p, s) => p * s, 1);
  const out = new Float64Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      for (let k = 0; k < n; k++) {
        const last = (o * inner + i) * n + k, inPlace = (o * n + k) * inner + i;
        if (back) out[inPlace] = x[last];
        else out[last] = x[inPlace];
      }
    }
  }
  return out;
}

/** DFT along any axis of a row-major complex array. */
export function dftAxis(
  re: ArrayLike<number>,
  im: ArrayLike<number> | null,
  shape: number[],
  axis: number,
  inverse = false,
  scale = 1,
): { re: Float64Array; im: Float64Array } {
  const n = shape[axis];
  const r = dftRows(
    moveAxisLast(re, shape, axis),
    im ? moveAxisLast(im, shape, axis) : null,
    n,
    inverse,
    scale,
  );
  return {
    re: moveAxisLast(r.re, shape, axis, true),
    im: moveAxisLast(r.im, shape, axis, true),
  };
}

/**
 * EP-SAM's extract_freq_components + mean over channels, literally: fft2 (norm forward),
 * fftshift, zero [c−1, c+1) × [c−1, c+1) with Python slice semantics, ifftshift, ifft2 (norm
 * forward: unscaled), |re|, mean over C. x: [N, C, H, W] → [N, 1, H, W].
 */
export function highFrequencyRef(x: ArrayLike<number>, shape: number[]): Float64Array {
  const [N, C, H, W] = shape;
  const out = new Float64Array(N * H * W);
  const pyRange = (c: number, n: number): number[] => {
    // Python slice [c-1 : c+1] on length n.
    const norm = (v: number) => (v < 0 ? Math.max(v + n, 0) : Math.min(v, n));
    const s = norm(c - 1), e = norm(c + 1);
    const r: number[] = [];
    for (let i = s; i < e; i++) r.push(i);
    return r;
  };
  for (let b = 0; b < N; b++) {
    for (let c = 0; c < C; c++) {
      const plane = Array.from({ length: H * W }, (_, i) => x[(b * C + c) * H * W + i]);
      let s = dftAxis(plane, null, [H, W], 1, false, 1 / W);
      s = dftAxis(s.re, s.im, [H, W], 0, false, 1 / H);
      // fftshift: shifted[i] = spec[(i - floor(n/2)) mod n]; zero the block in shifted coordinates.
      const ch = Math.floor(H / 2), cw = Math.floor(W / 2);
      for (const i of pyRange(ch, H)) {
        for (const j of pyRange(cw, W)) {
          const oi = (((i - ch) % H) + H) % H, oj = (((j - cw) % W) + W) % W;
          s.re[oi * W + oj] = 0;
          s.im[oi * W + oj] = 0;
        }
      }
      let t = dftAxis(s.re, s.im, [H, W], 1, true, 1);
      t = dftAxis(t.re, t.im, [H, W], 0, true, 1);
      for (let i = 0; i < H * W; i++) out[b * H * W + i] += Math.abs(t.re[i]) / C;
    }
  }
  return out;
}
