/**
 * conv2d input gradient as a gather (no atomics): dx[n, c, iy, ix] sums dy[n, o, oy, ox]·w[o, c, ky, kx]
 * over the output pixels and taps that touch (iy, ix). Also convTranspose2d's forward.
 *
 * Stride is handled by phase decomposition: input pixels with the same (iy mod sh, ix mod sw) see
 * the same set of taps, so each workgroup (grid z = sh·sw phases) works on one phase and the tap
 * loop skips non-contributing taps uniformly, with no wasted lanes. Within a phase it is an
 * implicit GEMM like the forward kernel: rows are the phase's input pixels, columns input
 * channels, K runs over (valid taps, output channels of the group); RM × RN register blocks.
 *
 * Layout: dy [N, O, OH, OW], w [O, C/groups, kh, kw], optional bias [C] (convTranspose2d),
 * dx [N, C, H, W].
 */
import type { Kernel } from "../kernel.ts";
import { CONV_PARAMS, type ConvTile, unroll } from "./forward.ts";

/**
 * Grid: [ceil(N·ceil(H/sh)·ceil(W/sw) / (wg·rm)), groups·ceil(Cg / rn), sh·sw];
 * `blocks` = ceil(Cg / rn).
 */
export function conv2dBackwardDataKernel(tile: ConvTile, hasBias: boolean): Kernel {
  const { wg, rm, rn } = tile;
  return {
    key: `conv2d/bwd_data/wg${wg}/rm${rm}/rn${rn}/${hasBias ? "bias" : "nobias"}`,
    wgsl: () =>
      `${CONV_PARAMS}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
${
        hasBias
          ? "@group(0) @binding(3) var<storage, read> bias: array<f32>;\n"
          : ""
      }@group(0) @binding(${hasBias ? 4 : 3}) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y / u.blocks;
  let c0 = (wid.y % u.blocks) * ${rn}u;
  let py = wid.z / u.sw;
  let px = wid.z % u.sw;
  let Hq = select(0u, (u.H - py + u.sh - 1u) / u.sh, py < u.H);
  let Wq = select(0u, (u.W - px + u.sw - 1u) / u.sw, px < u.W);
  let HWq = Hq * Wq;
  let Mq = u.N * HWq;
  if (Mq == 0u) { return; }
  let HW = u.H * u.W;
  let OHW = u.OH * u.OW;
  let KK = u.kh * u.kw;
  let wO = u.Cg * KK;
  let wG = g * u.Og * wO;
  let mBase = wid.x * ${wg * rm}u + lid;
${
        unroll(rm, (r) =>
          `  let m${r} = mBase + ${r * wg}u;
  let mm${r} = min(m${r}, Mq - 1u);
  let n${r} = mm${r} / HWq;
  let q${r} = mm${r} % HWq;
  let qy${r} = i32(q${r} / Wq);
  let qx${r} = i32(q${r} % Wq);
  let db${r} = i32(u.a0 + n${r} * u.O * OHW + g * u.Og * OHW);`)
      }
${unroll(rn, (j) => `  let wb${j} = wG + min(c0 + ${j}u, u.Cg - 1u) * KK;`)}
${unroll(rm * rn, (i) => `  var a${i}: f32 = 0.0;`)}
  for (var ky = 0u; ky < u.kh; ky++) {
    let ty = i32(py + u.ph) - i32(ky * u.dh);
    if (ty % i32(u.sh) != 0) { continue; }
    let oyo = ty / i32(u.sh);
${
        unroll(rm, (r) =>
          `    let oy${r} = qy${r} + oyo;
    let rowOk${r} = oy${r} >= 0 && oy${r} < i32(u.OH);`)
      }
    for (var kx = 0u; kx < u.kw; kx++) {
      let tx = i32(px + u.pw) - i32(kx * u.dw);
      if (tx % i32(u.sw) != 0) { continue; }
      let oxo = tx / i32(u.sw);
      let tap = ky * u.kw + kx;
${
        unroll(rm, (r) =>
          `      let ox${r} = qx${r} + oxo;
      let ok${r} = rowOk${r} && ox${r} >= 0 && ox${r} < i32(u.OW);
      let off${r} = u32(select(0, db${r} + oy${r} * i32(u.OW) + ox${r}, ok${r}));`)
      }
      for (var o = 0u; o < u.Og; o++) {
        let dyo = o * OHW;
${unroll(rm, (r) => `        let dv${r} = select(0.0, dy[off${r} + dyo], ok${r});`)}
        let wo = o * wO + tap;
${unroll(rn, (j) => `        let wv${j} = w[wb${j} + wo];`)}
${unroll(rm * rn, (i) => `        a${i} = fma(dv${Math.floor(i / rn)}, wv${i % rn}, a${i});`)}
      }
    }
  }
${
        unroll(rm, (r) =>
          `  if (m${r} < Mq) {
    let xb${r} = u.a1 + n${r} * u.C * HW + (py + u32(qy${r}) * u.sh) * u.W + px + u32(qx${r}) * u.sw;
${
            [...Array(rn).keys()].map((j) => {
              const ch = `g * u.Cg + c0 + ${j}u`;
              const b = hasBias ? ` + bias[${ch}]` : "";
              return `    if (c0 + ${j}u < u.Cg) { dx[xb${r} + (${ch}) * HW] = a${
                r * rn + j
              }${b}; }`;
            }).join("\n")
          }
  }`)
      }
}`,
  };
}
