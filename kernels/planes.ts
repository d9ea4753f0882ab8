/**
 * The WGSL frame of the kernels that run one thread per pixel of NCHW planes (pooling, resize).
 * Their uniform block `P` holds `planes` (N·C), the input plane H×W and the output plane OH×OW;
 * the frame declares it at binding 0, the storage arrays at 1..n, the grid folding and the
 * kernel's helpers, and opens `main` with thread `i` placed on a pixel, returning past the last.
 */
import { type FlatKernelParts, flatKernelWgsl } from "./common.ts";

/**
 * Which pixel thread `i` is: `out`, (plane, oh, ow) of the output; `in`, (plane, h, w) of the
 * input (u32); `in-signed`, the same with h and w as i32 (for window arithmetic that goes
 * negative).
 */
export type PlanePixel = "out" | "in" | "in-signed";

const PIXEL: Record<PlanePixel, string> = {
  out: `  if (i >= u.planes * u.OH * u.OW) { return; }
  let ow = i % u.OW;
  let oh = (i / u.OW) % u.OH;
  let plane = i / (u.OW * u.OH);`,
  in: `  if (i >= u.planes * u.H * u.W) { return; }
  let w = i % u.W;
  let h = (i / u.W) % u.H;
  let plane = i / (u.W * u.H);`,
  "in-signed": `  if (i >= u.planes * u.H * u.W) { return; }
  let w = i32(i % u.W);
  let h = i32((i / u.W) % u.H);
  let plane = i / (u.W * u.H);`,
};

export interface PlaneKernelParts extends FlatKernelParts {
  pixel: PlanePixel;
}

/** A whole plane kernel's WGSL (see the module comment): `body` runs after the pixel is placed. */
export function planeKernelWgsl(k: PlaneKernelParts): string {
  return flatKernelWgsl({ ...k, body: `${PIXEL[k.pixel]}\n${k.body}` });
}
