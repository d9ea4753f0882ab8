/**
 * conv2d forward as an implicit GEMM (no im2col buffer): rows are output pixels (n, oy, ox), columns
 * output channels, and the K loop runs over the kernel taps (ky, kx) and then the input channels,
 * gathering input values on the fly with bounds checks for padding.
 *
 * Each invocation holds an RM × RN register block (RM output pixels, RN output channels); a
 * workgroup covers WG·RM pixels × RN channels of one group. The channel block comes from the
 * workgroup id, so weight loads are uniform across the workgroup (one scalar load broadcast on
 * CPU rasterisers, a cached broadcast on GPUs) and input loads are coalesced (neighbouring
 * invocations read neighbouring pixels). Tile constants live in the kernel key.
 *
 * Layout: x [N, C, H, W], w [O, C/groups, kh, kw], bias [O], y [N, O, OH, OW] (PyTorch's).
 */
import type { Kernel } from "../kernel.ts";
import { uniforms } from "../uniforms.ts";
import {
  type ChannelEpilogue,
  epilogueBindingCount,
  epilogueChannel,
  epilogueDecls,
  epilogueExpr,
  epilogueKey,
  isIdentityEpilogue,
  NO_EPILOGUE,
} from "./epilogue.ts";
import { DILATION_FIELDS, WINDOW_KERNEL_FIELDS } from "../window.ts";

/** Register-block / workgroup tiling of an implicit-GEMM conv kernel. */
export interface ConvTile {
  /** Invocations per workgroup. */
  wg: number;
  /** Pixels (GEMM rows) per invocation. */
  rm: number;
  /** Channels (GEMM columns) per invocation. */
  rn: number;
}

/**
 * Uniform block shared by the conv kernels (28 u32): N, C, H, W, O, OH, OW, groups, the window's
 * kh, kw, sh, sw, ph, pw, dh, dw (kernels/window.ts), Cg, Og, blocks, M, chunk, J, a0, a1, zb and
 * three pads. `a0`/`a1` are the element offsets of the two batch-sized operands in their bindings
 * (x and y forward, dy and dx for the input gradient, x and dy for the weight gradient) when a
 * batch is split over several dispatches; `zb` is the first split-K slice a weight-gradient
 * dispatch writes. The field order is the one the kernels were measured with: llvmpipe's shader
 * compile time depends on it (N, C, O, groups first made the input-gradient kernel's first
 * compile take 14 s instead of under 1 s on lavapipe).
 */
export const CONV_UNIFORMS = uniforms({
  N: "u32",
  C: "u32",
  H: "u32",
  W: "u32",
  O: "u32",
  OH: "u32",
  OW: "u32",
  groups: "u32",
  ...WINDOW_KERNEL_FIELDS,
  ...DILATION_FIELDS,
  Cg: "u32",
  Og: "u32",
  blocks: "u32",
  M: "u32",
  chunk: "u32",
  J: "u32",
  a0: "u32",
  a1: "u32",
  zb: "u32",
  _pad0: "u32",
  _pad1: "u32",
  _pad2: "u32",
});
export const CONV_PARAMS = CONV_UNIFORMS.wgsl("P");

function range(n: number): number[] {
  return [...Array(n).keys()];
}

/** Repeats `f(i)` for i in [0, n) joined by newlines (straight-line code, no private arrays). */
export function unroll(n: number, f: (i: number) => string): string {
  return range(n).map(f).join("\n");
}

/**
 * Forward kernel. `pointwise`: 1×1 kernel, stride 1, no padding (the input index is the output
 * pixel index, no bounds checks). `ep`: a per-output-channel epilogue after the bias
 * (kernels/conv/epilogue.ts), its bindings between the bias and y; its residual is indexed like y.
 * Grid: [ceil(M / (wg·rm)), groups·ceil(Og / rn)], M = N·OH·OW.
 */
export function conv2dForwardKernel(
  tile: ConvTile,
  hasBias: boolean,
  pointwise: boolean,
  ep: ChannelEpilogue = NO_EPILOGUE,
): Kernel {
  const { wg, rm, rn } = tile;
  const J = range(rn);
  const yBinding = (hasBias ? 4 : 3) + epilogueBindingCount(ep);
  // Each channel's scale and shift loaded once, after the K loop (no registers held through it).
  const chanLoads = isIdentityEpilogue(ep)
    ? ""
    : `${unroll(rn, (j) => `  ${epilogueChannel(ep, `min(o0 + ${j}u, oLast)`, `ep${j}`)}`)}\n`;
  return {
    key: `conv2d/fwd/wg${wg}/rm${rm}/rn${rn}/${hasBias ? "bias" : "nobias"}/${
      pointwise ? "pw" : "gen"
    }${epilogueKey(ep)}`,
    wgsl: () =>
      `${CONV_PARAMS}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
${hasBias ? "@group(0) @binding(3) var<storage, read> bias: array<f32>;\n" : ""}${
        epilogueDecls(ep, hasBias ? 4 : 3)
      }@group(0) @binding(${yBinding}) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y / u.blocks;
  let o0 = g * u.Og + (wid.y % u.blocks) * ${rn}u;
  let oLast = g * u.Og + u.Og - 1u;
  let HW = u.H * u.W;
  let OHW = u.OH * u.OW;
  let KK = u.kh * u.kw;
  let wRow = u.Cg * KK;
  let mBase = wid.x * ${wg * rm}u + lid;
${
        unroll(rm, (r) =>
          `  let m${r} = mBase + ${r * wg}u;
  let mm${r} = min(m${r}, u.M - 1u);
  let n${r} = mm${r} / OHW;
  let p${r} = mm${r} % OHW;
  let xb${r} = i32(u.a0 + n${r} * u.C * HW + g * u.Cg * HW);`)
      }
${unroll(rn, (j) => `  let wb${j} = min(o0 + ${j}u, oLast) * wRow;`)}
${unroll(rm * rn, (i) => `  var a${i}: f32 = 0.0;`)}
${
        pointwise
          ? `${unroll(rm, (r) => `  let off${r} = u32(xb${r}) + p${r};`)}
  for (var c = 0u; c < u.Cg; c++) {
    let xc = c * HW;
${unroll(rm, (r) => `    let xv${r} = x[off${r} + xc];`)}
${unroll(rn, (j) => `    let wv${j} = w[wb${j} + c];`)}
${unroll(rm * rn, (i) => `    a${i} = fma(xv${Math.floor(i / rn)}, wv${i % rn}, a${i});`)}
  }`
          : `${
            unroll(rm, (r) =>
              `  let iy${r} = i32(p${r} / u.OW * u.sh) - i32(u.ph);
  let ix${r} = i32(p${r} % u.OW * u.sw) - i32(u.pw);`)
          }
  for (var ky = 0u; ky < u.kh; ky++) {
${
            unroll(rm, (r) =>
              `    let yy${r} = iy${r} + i32(ky * u.dh);
    let rowOk${r} = yy${r} >= 0 && yy${r} < i32(u.H);`)
          }
    for (var kx = 0u; kx < u.kw; kx++) {
      let tap = ky * u.kw + kx;
${
            unroll(rm, (r) =>
              `      let xx${r} = ix${r} + i32(kx * u.dw);
      let ok${r} = rowOk${r} && xx${r} >= 0 && xx${r} < i32(u.W);
      let off${r} = u32(select(0, xb${r} + yy${r} * i32(u.W) + xx${r}, ok${r}));`)
          }
      for (var c = 0u; c < u.Cg; c++) {
        let xc = c * HW;
${unroll(rm, (r) => `        let xv${r} = select(0.0, x[off${r} + xc], ok${r});`)}
        let wc = c * KK + tap;
${unroll(rn, (j) => `        let wv${j} = w[wb${j} + wc];`)}
${unroll(rm * rn, (i) => `        a${i} = fma(xv${Math.floor(i / rn)}, wv${i % rn}, a${i});`)}
      }
    }
  }`
      }
${chanLoads}${
        unroll(rm, (r) =>
          `  if (m${r} < u.M) {
    let yb${r} = u.a1 + n${r} * u.O * OHW + p${r};
${
            J.map((j) => {
              const b = hasBias ? ` + bias[o0 + ${j}u]` : "";
              const idx = `yb${r} + (o0 + ${j}u) * OHW`;
              const v = epilogueExpr(ep, `a${r * rn + j}${b}`, `o0 + ${j}u`, "yi", `ep${j}`);
              return v === `a${r * rn + j}${b}`
                ? `    if (o0 + ${j}u <= oLast) { y[${idx}] = ${v}; }`
                : `    if (o0 + ${j}u <= oLast) { let yi = ${idx}; y[yi] = ${v}; }`;
            }).join("\n")
          }
  }`)
      }
}`,
  };
}
