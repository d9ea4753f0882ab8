/**
 * Float64 references of SAM's window partition and unpartition (segment_anything's
 * window_partition with its zero padding, window_unpartition with its crop), independent of the
 * engine's window helpers.
 */

/**
 * Pads x [B,H,W,C] with zeros (or with pad[c] per channel: the encoder pads qkv with its bias) to
 * multiples of ws, then [B·nWh·nWw, ws, ws, C].
 */
export function partitionRef(
  x: ArrayLike<number>,
  b: number,
  h: number,
  w: number,
  c: number,
  ws: number,
  pad?: ArrayLike<number>,
) {
  const nWh = Math.ceil(h / ws), nWw = Math.ceil(w / ws);
  const out = new Float64Array(b * nWh * nWw * ws * ws * c);
  let i = 0;
  for (let bi = 0; bi < b; bi++) {
    for (let wi = 0; wi < nWh; wi++) {
      for (let wj = 0; wj < nWw; wj++) {
        for (let yw = 0; yw < ws; yw++) {
          for (let xw = 0; xw < ws; xw++) {
            const y = wi * ws + yw, xx = wj * ws + xw;
            for (let ch = 0; ch < c; ch++, i++) {
              out[i] = y < h && xx < w ? x[((bi * h + y) * w + xx) * c + ch] : pad ? pad[ch] : 0;
            }
          }
        }
      }
    }
  }
  return out;
}

/** o [Bw, nh, ws·ws, hd] → heads merged, windows put back, cropped: [B, H, W, nh·hd]. */
export function unpartitionRef(
  o: ArrayLike<number>,
  bw: number,
  nh: number,
  hd: number,
  ws: number,
  h: number,
  w: number,
) {
  const nWh = Math.ceil(h / ws), nWw = Math.ceil(w / ws), b = bw / (nWh * nWw);
  const out = new Float64Array(b * h * w * nh * hd);
  let i = 0;
  for (let bi = 0; bi < b; bi++) {
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        const win = (bi * nWh + Math.floor(y / ws)) * nWw + Math.floor(xx / ws);
        const tok = (y % ws) * ws + (xx % ws);
        for (let head = 0; head < nh; head++) {
          for (let d = 0; d < hd; d++, i++) {
            out[i] = o[((win * nh + head) * ws * ws + tok) * hd + d];
          }
        }
      }
    }
  }
  return out;
}
