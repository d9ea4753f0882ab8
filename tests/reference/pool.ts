/** Float64 CPU references for 2-D pooling over NCHW (forward and backward). */

export interface PoolGeom {
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
}

/** A pool's output height and width (floor mode, as PyTorch's default). */
function pooledSize(H: number, W: number, g: PoolGeom): [number, number] {
  return [
    Math.floor((H + 2 * g.ph - g.kh) / g.sh) + 1,
    Math.floor((W + 2 * g.pw - g.kw) / g.sw) + 1,
  ];
}

/** max_pool2d: values and the flat in-plane index of each window's (first) maximum. */
export function maxPoolRef(
  x: ArrayLike<number>,
  [N, C, H, W]: number[],
  g: PoolGeom,
): { y: Float64Array; arg: Int32Array; shape: number[] } {
  const [OH, OW] = pooledSize(H, W, g);
  const y = new Float64Array(N * C * OH * OW), arg = new Int32Array(y.length);
  for (let p = 0; p < N * C; p++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        let best = -Infinity, bi = -1;
        for (let i = 0; i < g.kh; i++) {
          for (let j = 0; j < g.kw; j++) {
            const h = oh * g.sh - g.ph + i, w = ow * g.sw - g.pw + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const v = x[p * H * W + h * W + w];
            if (bi < 0 || v > best) {
              best = v;
              bi = h * W + w;
            }
          }
        }
        const o = (p * OH + oh) * OW + ow;
        y[o] = best;
        arg[o] = bi;
      }
    }
  }
  return { y, arg, shape: [N, C, OH, OW] };
}

/** max_pool2d backward: each output's gradient goes to its argmax. */
export function maxPoolBackwardRef(
  gy: ArrayLike<number>,
  arg: Int32Array,
  [N, C, H, W]: number[],
  outPlane: number,
): Float64Array {
  const dx = new Float64Array(N * C * H * W);
  for (let p = 0; p < N * C; p++) {
    for (let o = 0; o < outPlane; o++) {
      dx[p * H * W + arg[p * outPlane + o]] += gy[p * outPlane + o];
    }
  }
  return dx;
}

/** avg_pool2d (count_include_pad=True). */
export function avgPoolRef(
  x: ArrayLike<number>,
  [N, C, H, W]: number[],
  g: PoolGeom,
): Float64Array {
  const [OH, OW] = pooledSize(H, W, g);
  const y = new Float64Array(N * C * OH * OW);
  for (let p = 0; p < N * C; p++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        let s = 0;
        for (let i = 0; i < g.kh; i++) {
          for (let j = 0; j < g.kw; j++) {
            const h = oh * g.sh - g.ph + i, w = ow * g.sw - g.pw + j;
            if (h >= 0 && h < H && w >= 0 && w < W) s += x[p * H * W + h * W + w];
          }
        }
        y[(p * OH + oh) * OW + ow] = s / (g.kh * g.kw);
      }
    }
  }
  return y;
}

/** avg_pool2d backward (count_include_pad=True): each output's gradient / (kh·kw) to its window. */
export function avgPoolBackwardRef(
  gy: ArrayLike<number>,
  [N, C, H, W]: number[],
  g: PoolGeom,
): Float64Array {
  const [OH, OW] = pooledSize(H, W, g);
  const dx = new Float64Array(N * C * H * W);
  for (let p = 0; p < N * C; p++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const v = gy[(p * OH + oh) * OW + ow] / (g.kh * g.kw);
        for (let i = 0; i < g.kh; i++) {
          for (let j = 0; j < g.kw; j++) {
            const h = oh * g.sh - g.ph + i, w = ow * g.sw - g.pw + j;
            if (h >= 0 && h < H && w >= 0 && w < W) dx[p * H * W + h * W + w] += v;
          }
        }
      }
    }
  }
  return dx;
}

/** adaptive_avg_pool2d with PyTorch's bins; `gy` given → also the input gradient. */
export function adaptiveAvgPoolRef(
  x: ArrayLike<number>,
  [N, C, H, W]: number[],
  [OH, OW]: number[],
  gy?: ArrayLike<number>,
): { y: Float64Array; dx: Float64Array } {
  const y = new Float64Array(N * C * OH * OW), dx = new Float64Array(N * C * H * W);
  for (let p = 0; p < N * C; p++) {
    for (let oh = 0; oh < OH; oh++) {
      const h0 = Math.floor((oh * H) / OH), h1 = Math.ceil(((oh + 1) * H) / OH);
      for (let ow = 0; ow < OW; ow++) {
        const w0 = Math.floor((ow * W) / OW), w1 = Math.ceil(((ow + 1) * W) / OW);
        const cnt = (h1 - h0) * (w1 - w0);
        const o = (p * OH + oh) * OW + ow;
        let s = 0;
        for (let h = h0; h < h1; h++) {
          for (let w = w0; w < w1; w++) {
            s += x[p * H * W + h * W + w];
            if (gy) dx[p * H * W + h * W + w] += gy[o] / cnt;
          }
        }
        y[o] = s / cnt;
      }
    }
  }
  return { y, dx };
}
