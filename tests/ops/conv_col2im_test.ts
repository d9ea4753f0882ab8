/**
 * The strided conv's input gradient as a texture GEMM + col2im (engine/ops/conv_col2im.ts) against
 * the float64 reference: awkward fixed cases and random geometries (fast-check), whole and with
 * the samples over several products, and through conv2d's backward with finite differences.
 *
 * Tolerance: atol 1e-5, rtol 1e-4, as tests/ops/conv_test.ts for the f32 conv passes: each dx is a
 * sum of at most O·kh·kw ≤ 8·25 products of entries in [−1, 1] (rounding ≲ 1e-5); a wrong tap,
 * channel or sample is off by O(0.1–1).
 */
import fc from "fast-check";
import { F } from "../../engine/mod.ts";
import { matmulVariant, setBindingLimitForTests, setConvPath } from "../../engine/routing.ts";
import type { Conv2dOptions } from "../../engine/ops/conv.ts";
import { inputGradientCol2im } from "../../engine/ops/conv_col2im.ts";
import { assertClose, gradCheck, setup } from "../util/gpu.ts";
import { convOperands } from "../util/conv.ts";
import { forcing } from "../util/routing.ts";
import { conv2dInputGradRef, geom } from "../reference/conv.ts";
import assert from "node:assert";

await setup();

/**
 * Output planes of 64·k pixels (dy copied as it lies); odd channels, 7×7/2, dilation, stride 3,
 * unequal strides.
 */
const CASES: [number[], number[], Conv2dOptions][] = [
  [[3, 5, 16, 32], [4, 5, 3, 3], { stride: 2, padding: 1 }],
  [[2, 4, 32, 32], [8, 4, 7, 7], { stride: 2, padding: 3 }],
  [[2, 3, 24, 48], [8, 3, 3, 3], { stride: 3, padding: 2, dilation: 2 }],
  [[1, 6, 16, 17], [4, 6, 3, 2], { stride: [2, 1], padding: [1, 0] }],
  // 9×9/4: too many terms to unroll, the col2im kernel with loops.
  [[1, 2, 36, 36], [4, 2, 9, 9], { stride: 4, padding: 2 }],
];

async function check(xs: number[], ws: number[], o: Conv2dOptions, what: string, seed = 1) {
  const c = convOperands(xs, ws, o, seed);
  const dx = inputGradientCol2im(c.dyt, c.wt, c.g);
  assert.ok(dx, `${what} x[${xs}] w[${ws}]: the col2im path should apply`);
  assertClose(await dx.data(), conv2dInputGradRef(c.dy, c.ys, c.w, ws, xs[2], xs[3], geom(o)), {
    what: `${what} x[${xs}] w[${ws}] ${JSON.stringify(o)}`,
    atol: 1e-5,
    rtol: 1e-4,
  });
  dx.dispose();
  c.dispose();
}

Deno.test({
  name: "strided input gradient as GEMM + col2im matches float64, whole and in sample groups",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    for (const [xs, ws, o] of CASES) await check(xs, ws, o, "whole");
    // The cols scratch of two samples (45 rows of 128 pixels each): samples in groups of 2 and 1.
    await forcing(
      [[setBindingLimitForTests, 2 * 4 * 45 * 128 + 256]],
      () => check(CASES[0][0], CASES[0][1], CASES[0][2], "groups of two"),
    );
  },
});

/** Output sizes whose planes are 64·k pixels (the condition for copying dy's rows as they lie). */
const PLANES: [number, number][] = [[8, 8], [16, 4], [4, 16], [8, 16], [16, 8], [1, 64]];

Deno.test({
  name: "GEMM + col2im input gradient equals float64 for random geometries (fast-check)",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }),
          c: fc.integer({ min: 1, max: 6 }),
          o: fc.constantFrom(4, 8),
          kh: fc.integer({ min: 1, max: 5 }),
          kw: fc.integer({ min: 1, max: 5 }),
          sh: fc.integer({ min: 1, max: 3 }),
          sw: fc.integer({ min: 1, max: 3 }),
          dil: fc.integer({ min: 1, max: 2 }),
          pad: fc.nat(3),
          plane: fc.constantFrom(...PLANES),
          // Rows and columns past the last window (floor division of the output size).
          extraH: fc.nat(2),
          extraW: fc.nat(2),
          grouped: fc.boolean(),
          seed: fc.nat(1000),
        }),
        async (r) => {
          const [OH, OW] = r.plane;
          // Padding at most half the dilated window (so each output still sees the input).
          const ph = Math.min(r.pad, (r.dil * (r.kh - 1)) >> 1);
          const pw = Math.min(r.pad, (r.dil * (r.kw - 1)) >> 1);
          const H = (OH - 1) * r.sh + r.dil * (r.kh - 1) + 1 - 2 * ph +
            Math.min(r.extraH, r.sh - 1);
          const W = (OW - 1) * r.sw + r.dil * (r.kw - 1) + 1 - 2 * pw +
            Math.min(r.extraW, r.sw - 1);
          const xs = [r.n, r.c, H, W], ws = [r.o, r.c, r.kh, r.kw];
          const o = { stride: [r.sh, r.sw], padding: [ph, pw], dilation: r.dil } as Conv2dOptions;
          // Grouped: a binding of two samples' cols scratch and dx (products of 2, then 1).
          const R = r.c * r.kh * r.kw;
          const limit = 2 * 4 * Math.max(R * OH * OW, r.c * H * W) + 256;
          await forcing(
            r.grouped ? [[setBindingLimitForTests, limit]] : [],
            () => check(xs, ws, o, r.grouped ? "groups of two" : "whole", r.seed),
          );
        },
      ),
      { numRuns: 20 },
    );
  },
});

Deno.test({
  name: "strided conv2d input gradient through col2im passes finite differences",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    await forcing([[setConvPath, "texture"]], async () => {
      await gradCheck(
        (x, w) => F.conv2d(x, w, null, { stride: 2, padding: 1 }),
        [{ shape: [2, 4, 16, 16] }, { shape: [4, 4, 3, 3] }],
      );
      // Stride 3 with a 2×2 kernel: input pixels no window covers get a zero gradient.
      await gradCheck(
        (x, w) => F.conv2d(x, w, null, { stride: 3 }),
        [{ shape: [1, 3, 24, 24] }, { shape: [4, 3, 2, 2] }],
      );
    });
  },
});
