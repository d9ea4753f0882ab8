/** Float64 CPU reference for bilinear interpolation (torch semantics) and its backward. */

/** Source taps; the coordinate is computed in f32 as torch does (its opmath type for float). */
function taps(
  dst: number,
  n: number,
  scale: number,
  alignCorners: boolean,
): [number, number, number] {
  const f = Math.fround;
  const r = alignCorners ? f(dst * scale) : Math.max(f(f(f(dst + 0.5) * scale) - 0.5), 0);
  const i0 = Math.min(Math.floor(r), n - 1);
  const i1 = Math.min(i0 + 1, n - 1);
  return [i0, i1, r - i0];
}

/**
 * interpolate(mode="bilinear") of NCHW `x` to [OH, OW]; `gy` given → also the input gradient
 * (scattered in float64). Scales and source coordinates are f32 as in torch; the rest float64.
 */
export function bilinearRef(
  x: ArrayLike<number>,
  [N, C, H, W]: number[],
  [OH, OW]: number[],
  alignCorners: boolean,
  gy?: ArrayLike<number>,
): { y: Float64Array; dx: Float64Array } {
  const sc = (i: number, o: number) =>
    Math.fround(alignCorners ? (o > 1 ? (i - 1) / (o - 1) : 0) : i / o);
  const sh = sc(H, OH), sw = sc(W, OW);
  const y = new Float64Array(N * C * OH * OW), dx = new Float64Array(N * C * H * W);
  for (let p = 0; p < N * C; p++) {
    for (let oh = 0; oh < OH; oh++) {
      const [h0, h1, lh] = taps(oh, H, sh, alignCorners);
      for (let ow = 0; ow < OW; ow++) {
        const [w0, w1, lw] = taps(ow, W, sw, alignCorners);
        const at = (h: number, w: number) => p * H * W + h * W + w;
        const o = (p * OH + oh) * OW + ow;
        y[o] = (1 - lh) * ((1 - lw) * x[at(h0, w0)] + lw * x[at(h0, w1)]) +
          lh * ((1 - lw) * x[at(h1, w0)] + lw * x[at(h1, w1)]);
        if (gy) {
          dx[at(h0, w0)] += gy[o] * (1 - lh) * (1 - lw);
          dx[at(h0, w1)] += gy[o] * (1 - lh) * lw;
          dx[at(h1, w0)] += gy[o] * lh * (1 - lw);
          dx[at(h1, w1)] += gy[o] * lh * lw;
        }
      }
    }
  }
  return { y, dx };
}

/** PyTorch's antialiased bilinear weights for one output index (center and filter in f32). */
function aaWeights(i: number, n: number, scale: number): { xmin: number; w: number[] } {
  const f = Math.fround;
  const support = scale >= 1 ? scale : 1;
  const invscale = scale >= 1 ? f(1 / scale) : 1;
  const center = f(scale * f(i + 0.5));
  const xmin = Math.max(Math.trunc(f(f(center - support) + 0.5)), 0);
  const xmax = Math.min(Math.trunc(f(f(center + support) + 0.5)), n);
  const w: number[] = [];
  for (let j = xmin; j < xmax; j++) {
    w.push(Math.max(0, 1 - Math.abs(f(f(f(j - center) + 0.5) * invscale))));
  }
  const total = w.reduce((a, b) => a + b, 0);
  return { xmin, w: total === 0 ? w.map(() => 0) : w.map((v) => v / total) };
}

/** interpolate(mode="bilinear", antialias=True, align_corners=False); `gy` → input gradient. */
export function bilinearAARef(
  x: ArrayLike<number>,
  [N, C, H, W]: number[],
  [OH, OW]: number[],
  gy?: ArrayLike<number>,
): { y: Float64Array; dx: Float64Array } {
  const sh = Math.fround(H / OH), sw = Math.fround(W / OW);
  const y = new Float64Array(N * C * OH * OW), dx = new Float64Array(N * C * H * W);
  for (let p = 0; p < N * C; p++) {
    for (let oh = 0; oh < OH; oh++) {
      const wh = aaWeights(oh, H, sh);
      for (let ow = 0; ow < OW; ow++) {
        const ww = aaWeights(ow, W, sw);
        const o = (p * OH + oh) * OW + ow;
        let s = 0;
        wh.w.forEach((a, jh) =>
          ww.w.forEach((b, jw) => {
            const k = p * H * W + (wh.xmin + jh) * W + ww.xmin + jw;
            s += a * b * x[k];
            if (gy) dx[k] += a * b * gy[o];
          })
        );
        y[o] = s;
      }
    }
  }
  return { y, dx };
}
