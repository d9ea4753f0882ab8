/** Float64 CPU references for conv2d, its gradients and convTranspose2d (PyTorch semantics, NCHW). */

export interface ConvGeom {
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
}

export function geom(
  o: {
    stride?: number | [number, number];
    padding?: number | [number, number];
    dilation?: number | [number, number];
    groups?: number;
  } = {},
): ConvGeom {
  const p = (v: number | [number, number] | undefined, d: number): [number, number] =>
    v === undefined ? [d, d] : typeof v === "number" ? [v, v] : v;
  return {
    stride: p(o.stride, 1),
    padding: p(o.padding, 0),
    dilation: p(o.dilation, 1),
    groups: o.groups ?? 1,
  };
}

export function convOutSize(n: number, k: number, s: number, p: number, d: number): number {
  return Math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1;
}

/** The sizes of one conv2d: input [N,C,H,W], weight [O,C/g,kh,kw], output [N,O,OH,OW]. */
interface ConvSizes {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  kh: number;
  kw: number;
  OH: number;
  OW: number;
}

/**
 * Visits every product of conv2d, output element by output element (n, o, oy, ox), then input
 * channel of o's group and kernel tap (ky, kx), skipping taps in the zero padding: with the flat
 * indices of the input element, the weight and the output element the product joins. The three
 * references below are this one loop nest, each accumulating into its own operand.
 */
function forEachTap(
  s: ConvSizes,
  g: ConvGeom,
  visit: (xi: number, wi: number, yi: number) => void,
): void {
  const { N, C, H, W, O, kh, kw, OH, OW } = s;
  const Cg = C / g.groups, Og = O / g.groups;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const gi = Math.floor(o / Og);
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          const yi = ((n * O + o) * OH + oy) * OW + ox;
          for (let c = 0; c < Cg; c++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * g.stride[0] - g.padding[0] + ky * g.dilation[0];
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * g.stride[1] - g.padding[1] + kx * g.dilation[1];
                if (ix < 0 || ix >= W) continue;
                visit(
                  ((n * C + gi * Cg + c) * H + iy) * W + ix,
                  ((o * Cg + c) * kh + ky) * kw + kx,
                  yi,
                );
              }
            }
          }
        }
      }
    }
  }
}

/** y = conv2d(x [N,C,H,W], w [O,C/g,kh,kw]) + bias. */
export function conv2dRef(
  x: ArrayLike<number>,
  xs: number[],
  w: ArrayLike<number>,
  ws: number[],
  bias: ArrayLike<number> | null,
  g: ConvGeom,
): { data: Float64Array; shape: number[] } {
  const [N, C, H, W] = xs, [O, , kh, kw] = ws;
  const OH = convOutSize(H, kh, g.stride[0], g.padding[0], g.dilation[0]);
  const OW = convOutSize(W, kw, g.stride[1], g.padding[1], g.dilation[1]);
  const y = new Float64Array(N * O * OH * OW);
  if (bias) { for (let i = 0; i < y.length; i++) y[i] = bias[Math.floor(i / (OH * OW)) % O]; }
  forEachTap({ N, C, H, W, O, kh, kw, OH, OW }, g, (xi, wi, yi) => {
    y[yi] += x[xi] * w[wi];
  });
  return { data: y, shape: [N, O, OH, OW] };
}

/**
 * The adjoint of conv2d w.r.t. its input: dx [N,C,H,W] from dy [N,O,OH,OW] and w [O,C/g,kh,kw]
 * (a scatter, the plainest formulation). Also convTranspose2d's forward, where the weight is
 * [Cin, Cout/g, kh, kw] and (H, W) the transposed conv's output size.
 */
export function conv2dInputGradRef(
  dy: ArrayLike<number>,
  dys: number[],
  w: ArrayLike<number>,
  ws: number[],
  H: number,
  W: number,
  g: ConvGeom,
): Float64Array {
  const [N, O, OH, OW] = dys, [, Cg, kh, kw] = ws;
  const C = Cg * g.groups;
  const dx = new Float64Array(N * C * H * W);
  forEachTap({ N, C, H, W, O, kh, kw, OH, OW }, g, (xi, wi, yi) => {
    dx[xi] += dy[yi] * w[wi];
  });
  return dx;
}

/** dW [O,C/g,kh,kw] of conv2d from x [N,C,H,W] and dy [N,O,OH,OW]. */
export function conv2dWeightGradRef(
  x: ArrayLike<number>,
  xs: number[],
  dy: ArrayLike<number>,
  dys: number[],
  kh: number,
  kw: number,
  g: ConvGeom,
): Float64Array {
  const [N, C, H, W] = xs, [, O, OH, OW] = dys;
  const dw = new Float64Array(O * (C / g.groups) * kh * kw);
  forEachTap({ N, C, H, W, O, kh, kw, OH, OW }, g, (xi, wi, yi) => {
    dw[wi] += dy[yi] * x[xi];
  });
  return dw;
}

/**
 * convTranspose2d(x [N,Cin,H,W], w [Cin,Cout/g,kh,kw]) + bias, PyTorch semantics:
 * OH = (H-1)·s - 2p + d·(k-1) + outputPadding + 1.
 */
export function convTranspose2dRef(
  x: ArrayLike<number>,
  xs: number[],
  w: ArrayLike<number>,
  ws: number[],
  bias: ArrayLike<number> | null,
  g: ConvGeom,
  outputPadding: [number, number] = [0, 0],
): { data: Float64Array; shape: number[] } {
  const [N, , H, W] = xs, [, Cg, kh, kw] = ws;
  const Cout = Cg * g.groups;
  const OH = (H - 1) * g.stride[0] - 2 * g.padding[0] + g.dilation[0] * (kh - 1) +
    outputPadding[0] + 1;
  const OW = (W - 1) * g.stride[1] - 2 * g.padding[1] + g.dilation[1] * (kw - 1) +
    outputPadding[1] + 1;
  const y = conv2dInputGradRef(x, xs, w, ws, OH, OW, g);
  if (bias) {
    for (let n = 0; n < N; n++) {
      for (let c = 0; c < Cout; c++) {
        for (let i = 0; i < OH * OW; i++) y[(n * Cout + c) * OH * OW + i] += bias[c];
      }
    }
  }
  return { data: y, shape: [N, Cout, OH, OW] };
}
