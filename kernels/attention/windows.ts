/**
 * SAM's windowed attention layout in one pass each way, instead of a pad (fill + strided write),
 * a partition copy, a merge-heads-and-unpartition copy and a crop (generic strided copies with
 * 6–7-dim index math per element: BENCHMARKS.md "SAM encoder: non-matmul passes").
 *
 * - partition: a token grid x [B, H, W, C] (any strides) → windows [B·nWh·nWw, ws, ws, C],
 *   dense, zero where a window reaches past the grid (nWh = ⌈H/ws⌉, nWw = ⌈W/ws⌉).
 * - unpartition: attention output per head o [B·nWh·nWw, nh, ws·ws, hd] (any strides; heads
 *   dense or merged underneath) → the cropped grid [B, H, W, nh·hd], dense.
 *
 * Each is the other's adjoint (the backward of one is the other). `V` = 4: a thread per vec4
 * along the channels (every element offset and stride a multiple of 4, C or hd too); else 1.
 */
import type { Kernel } from "../kernel.ts";
import { flatKernelWgsl } from "../common.ts";
import { uniforms } from "../uniforms.ts";

export const WINDOW_WG = 256;

/**
 * Output items (vec4s or scalars), C in items, ws, H, W, nWh, nWw; the input's element offset in
 * its binding and strides, all in items (partition: b, y, x; unpartition: window, head, token,
 * and hd in items).
 */
export const WINDOW_UNIFORMS = uniforms({
  n: "u32",
  C: "u32",
  ws: "u32",
  H: "u32",
  W: "u32",
  nWh: "u32",
  nWw: "u32",
  off: "u32",
  s0: "u32",
  s1: "u32",
  s2: "u32",
  hd: "u32",
});

function elem(v: 1 | 4): string {
  return v === 4 ? "vec4<f32>" : "f32";
}

/**
 * A flat window pass, one thread per output item: `decode` turns the item's index (after its
 * channel c) into coordinates, `store` writes it; the rest is shared by partition and unpartition.
 */
function windowPassKernel(
  key: string,
  v: 1 | 4,
  bindings: string[],
  decode: string,
  store: string,
): Kernel {
  return {
    key: `sam-window/${key}/v${v}`,
    wgsl: () =>
      flatKernelWgsl({
        params: WINDOW_UNIFORMS.wgsl("P"),
        wg: WINDOW_WG,
        bindings: [`read> x: ${elem(v)}`, ...bindings],
        body: `  if (i >= u.n) { return; }
  let c = i % u.C;
  var t = i / u.C;
${decode}
${store}`,
      }),
  };
}

/**
 * Bindings: x (read, strided), out (dense windows); with `padded`, a third binding `pad` (dense,
 * C items) holds the value of each channel where a window reaches past the grid (else zero):
 * SAM's qkv projected before the partition pads with the projection's bias, which is what the
 * projection of a zero token gives.
 */
export function windowPartitionKernel(v: 1 | 4, padded = false): Kernel {
  const outside = padded ? "pad[c]" : `${elem(v)}(0.0)`;
  return windowPassKernel(
    padded ? "partition-pad" : "partition",
    v,
    [`read_write> o: ${elem(v)}`, ...(padded ? [`read> pad: ${elem(v)}`] : [])],
    `  let xw = t % u.ws; t = t / u.ws;
  let yw = t % u.ws; t = t / u.ws;
  let wj = t % u.nWw; t = t / u.nWw;
  let wi = t % u.nWh;
  let b = t / u.nWh;
  let y = wi * u.ws + yw;
  let xx = wj * u.ws + xw;`,
    `  if (y < u.H && xx < u.W) {
    o[i] = x[u.off + b * u.s0 + y * u.s1 + xx * u.s2 + c];
  } else {
    o[i] = ${outside};
  }`,
  );
}

/** Bindings: o (read, strided per-head attention output), y (dense cropped grid). */
export function windowUnpartitionKernel(v: 1 | 4): Kernel {
  return windowPassKernel(
    "unpartition",
    v,
    [`read_write> y: ${elem(v)}`],
    `  let xx = t % u.W; t = t / u.W;
  let yy = t % u.H;
  let b = t / u.H;
  let win = (b * u.nWh + yy / u.ws) * u.nWw + xx / u.ws;
  let tok = (yy % u.ws) * u.ws + xx % u.ws;
  let head = c / u.hd;`,
    "  y[i] = x[u.off + win * u.s0 + head * u.s1 + tok * u.s2 + c % u.hd];",
  );
}
