/**
 * The strided conv's input gradient as a texture GEMM + col2im (engine/ops/conv_col2im.ts) against
 * the float64 reference, whole and with the samples over several products, and through
 * conv2d's backward with finite differences.
 */
import { F, tensor } from "../../engine/mod.ts";
import { matmulVariant, setBindingLimitForTests, setConvPath } from "../../engine/routing.ts";
import { conv2dGeometry } from "../../engine/ops/conv.ts";
import { inputGradientCol2im } from "../../engine/ops/conv_col2im.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { conv2dInputGradRef, geom } from "../reference/conv.ts";
import assert from "node:assert";

await setup();

type P2 = number | [number, number];
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

/**
 * Output planes of 64·k pixels (dy copied as it lies); odd channels, 7×7/2, dilation, stride 3,
 * unequal strides.
 */
const CASES: [number[], number[], { stride: P2; padding: P2; dilation?: P2 }][] = [
  [[3, 5, 16, 32], [4, 5, 3, 3], { stride: 2, padding: 1 }],
  [[2, 4, 32, 32], [8, 4, 7, 7], { stride: 2, padding: 3 }],
  [[2, 3, 24, 48], [8, 3, 3, 3], { stride: 3, padding: 2, dilation: 2 }],
  [[1, 6, 16, 17], [4, 6, 3, 2], { stride: [2, 1], padding: [1, 0] }],
  // 9×9/4: too many terms to unroll, the col2im kernel with loops.
  [[1, 2, 36, 36], [4, 2, 9, 9], { stride: 4, padding: 2 }],
];

async function check(xs: number[], ws: number[], o: (typeof CASES)[0][2], what: string) {
  const w = randArray(numel(ws), 2);
  const xt = tensor(new Float32Array(numel(xs)), xs), wt = tensor(w, ws);
  const g = conv2dGeometry("conv2d", xt, wt, null, o);
  const ys = [g.N, g.O, g.OH, g.OW];
  const dy = randArray(numel(ys), 3), dyt = tensor(dy, ys);
  const dx = inputGradientCol2im(dyt, wt, g);
  assert.ok(dx, `${what} x[${xs}] w[${ws}]: the col2im path should apply`);
  assertClose(await dx.data(), conv2dInputGradRef(dy, ys, w, ws, xs[2], xs[3], geom(o)), {
    what: `${what} x[${xs}] w[${ws}] ${JSON.stringify(o)}`,
    atol: 1e-5,
    rtol: 1e-4,
  });
  for (const t of [xt, wt, dyt, dx]) t.dispose();
}

Deno.test({
  name: "strided input gradient as GEMM + col2im matches float64, whole and in sample groups",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    for (const [xs, ws, o] of CASES) await check(xs, ws, o, "whole");
    // The cols scratch of two samples (45 rows of 128 pixels each): samples in groups of 2 and 1.
    setBindingLimitForTests(2 * 4 * 45 * 128 + 256);
    try {
      await check(CASES[0][0], CASES[0][1], CASES[0][2], "groups of two");
    } finally {
      setBindingLimitForTests(null);
    }
  },
});

Deno.test({
  name: "strided conv2d input gradient through col2im passes finite differences",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    setConvPath("texture");
    try {
      await gradCheck(
        (x, w) => F.conv2d(x, w, null, { stride: 2, padding: 1 }),
        [{ shape: [2, 4, 16, 16] }, { shape: [4, 4, 3, 3] }],
      );
    } finally {
      setConvPath(null);
    }
  },
});
