/**
 * The 1×1 copy form of the texture conv passes (engine/ops/conv_pointwise.ts): against the float64
 * references, and bit for bit against the general texture path it replaces, whole and with the
 * samples (chunks) in several product dispatches.
 */
import fc from "fast-check";
import { dispatchStats, F, type Tensor, tensor } from "../../engine/mod.ts";
import {
  matmulVariant,
  setBindingLimitForTests,
  setConvPath,
  setConvTextureRowsForTests,
} from "../../engine/routing.ts";
import {
  conv2dBackwardDataTexture,
  conv2dBackwardWeightTexture,
  conv2dForwardTexture,
} from "../../engine/ops/conv_texture.ts";
import {
  batchedWeightGradient,
  pointwiseForward,
  pointwiseInputGradient,
} from "../../engine/ops/conv_pointwise.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { convOperands } from "../util/conv.ts";
import { forcing } from "../util/routing.ts";
import { conv2dInputGradRef, conv2dRef, conv2dWeightGradRef, geom } from "../reference/conv.ts";
import assert from "node:assert";

await setup();

/**
 * Planes of 64·k pixels (the copy form's condition); 12 channels (weights packed: rows of 48
 * bytes), 64 (weights copied); 2048 pixels (two 1024-pixel chunks a sample in the weight gradient).
 */
const CASES: [number[], number[]][] = [
  [[3, 12, 8, 8], [20, 12, 1, 1]],
  [[2, 64, 16, 12], [8, 64, 1, 1]],
  [[3, 16, 32, 64], [24, 16, 1, 1]],
  [[3, 8, 8, 16], [12, 8, 1, 1]],
];

async function bitwise(a: Tensor | null, b: Tensor, what: string): Promise<Float32Array> {
  assert.ok(a, `${what}: the copy form should apply`);
  const [da, db] = [await a.data(), await b.data()];
  assert.deepStrictEqual(da, db, `${what}: not bitwise the general path's`);
  a.dispose();
  b.dispose();
  return da as Float32Array;
}

async function checkCase(xs: number[], ws: number[], label: string, seed = 1): Promise<void> {
  const { x, w, dy, xt, wt, dyt, g, ys, dispose } = convOperands(xs, ws, {}, seed);
  const what = `${label} x[${xs}] w[${ws}]`;
  const ref = conv2dRef(x, xs, w, ws, null, geom());
  const y = await bitwise(pointwiseForward(xt, wt, g), conv2dForwardTexture(xt, wt, g), what);
  assertClose(y, ref.data, { what: `${what} forward`, atol: 1e-5, rtol: 1e-4 });
  const dx = await bitwise(
    pointwiseInputGradient(dyt, wt, g),
    conv2dBackwardDataTexture(dyt, wt, g),
    `${what} input grad`,
  );
  assertClose(dx, conv2dInputGradRef(dy, ys, w, ws, xs[2], xs[3], geom()), {
    what: `${what} input grad`,
    atol: 1e-5,
    rtol: 1e-4,
  });
  const dw = await bitwise(
    batchedWeightGradient(xt, dyt, g),
    conv2dBackwardWeightTexture(xt, dyt, g),
    `${what} weight grad`,
  );
  assertClose(dw, conv2dWeightGradRef(x, xs, dy, ys, 1, 1, geom()), {
    what: `${what} weight grad`,
    atol: 2e-5,
    rtol: 1e-4,
  });
  dispose();
}

Deno.test({
  name: "1×1 conv copy form: float64 references, bitwise the general texture path",
  // Only adapters whose matmul stages operands in textures (software ones) take texture paths.
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    for (const [xs, ws] of CASES) await checkCase(xs, ws, "whole");
    // 16 texture rows: samples two or one per product, weight-gradient chunks of 64 pixels one
    // per product (the sum then accumulates onto dW).
    await forcing(
      [[setConvTextureRowsForTests, 16]],
      () => checkCase([3, 8, 8, 16], [12, 8, 1, 1], "16 texture rows"),
    );
    // A binding of two samples' outputs: the forward's samples in groups of two and one.
    await forcing(
      [[setBindingLimitForTests, 2 * 4 * 12 * 128 + 256]],
      () => checkCase([3, 8, 8, 16], [12, 8, 1, 1], "binding of two samples"),
    );
  },
});

Deno.test({
  name:
    "1×1 conv copy form: random channels, planes and chunkings match float64 and the general path (fast-check)",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }),
          // Whole texels on both sides (the forward copies x's rows, the input gradient dy's),
          // at most 16 (a product's K fits 16 texture rows).
          c4: fc.integer({ min: 1, max: 4 }),
          o4: fc.integer({ min: 1, max: 4 }),
          // Planes of 64·k pixels, square or not.
          plane: fc.constantFrom([8, 8], [4, 16], [16, 8], [1, 64], [8, 24], [32, 32]),
          // Texture rows per product (null: the adapter's): samples and chunks split differently.
          // Not 24: weight-gradient chunks of 96 pixels leave a ragged last chunk on these planes,
          // which the copy form declines (tested below).
          rows: fc.constantFrom(null, 16),
          seed: fc.nat(1000),
        }),
        async (r) => {
          const xs = [r.n, 4 * r.c4, ...r.plane], ws = [4 * r.o4, 4 * r.c4, 1, 1];
          await forcing(
            [[setConvTextureRowsForTests, r.rows]],
            () => checkCase(xs, ws, `rows ${r.rows}`, r.seed),
          );
        },
      ),
      { numRuns: 15 },
    );
  },
});

Deno.test({
  name:
    "1×1 conv copy form with the epilogue (scale, shift, residual, ReLU): bitwise the general path",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    const { xt, wt, g, dispose } = convOperands([3, 12, 8, 8], [20, 12, 1, 1]);
    const ep = {
      scale: tensor(randArray(20, 5), [20]),
      shift: tensor(randArray(20, 6), [20]),
      residual: tensor(randArray(3 * 20 * 64, 7), [3, 20, 8, 8]),
      relu: true,
    };
    const y = await bitwise(
      pointwiseForward(xt, wt, g, ep),
      conv2dForwardTexture(xt, wt, g, ep),
      "epilogue",
    );
    assert.ok(y.some((v) => v === 0) && y.some((v) => v > 0), "ReLU applied, not all zero");
    for (const t of [ep.scale, ep.shift, ep.residual]) t.dispose();
    dispose();
  },
});

Deno.test({
  name: "1×1 conv copy form: weight gradient of 5×7 weights (a sum one weight a thread)",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    const xs = [2, 7, 8, 8];
    const { x, dy, xt, wt, dyt, g, ys, dispose } = convOperands(xs, [5, 7, 1, 1]);
    assert.strictEqual(pointwiseForward(xt, wt, g), null, "7 channels: not whole texels");
    const dw = await bitwise(
      batchedWeightGradient(xt, dyt, g),
      conv2dBackwardWeightTexture(xt, dyt, g),
      "5×7 weight grad",
    );
    assertClose(dw, conv2dWeightGradRef(x, xs, dy, ys, 1, 1, geom()), {
      what: "5×7 weight grad",
      atol: 2e-5,
      rtol: 1e-4,
    });
    dispose();
  },
});

Deno.test({
  name:
    "batched weight gradient of other windows (im2colᵀ stacked): float64, bitwise the texture path",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    const cases: [number[], number[], Record<string, number>, number | null][] = [
      [[2, 5, 16, 32], [4, 5, 3, 3], { stride: 2, padding: 1 }, null],
      [[2, 4, 32, 32], [8, 4, 7, 7], { stride: 2, padding: 3 }, null],
      [[2, 6, 16, 16], [8, 6, 1, 1], { stride: 2 }, null],
      [[2, 3, 40, 40], [4, 3, 3, 3], { padding: 1 }, null], // 1600 pixels: a ragged last chunk, declined
      [[3, 1, 16, 16], [4, 1, 3, 3], { stride: 2, padding: 1 }, 16], // one chunk per product
    ];
    for (const [xs, ws, o, rows] of cases) {
      await forcing([[setConvTextureRowsForTests, rows]], async () => {
        const { x, dy, xt, dyt, g, ys, dispose } = convOperands(xs, ws, o);
        const what = `x[${xs}] w[${ws}] ${JSON.stringify(o)} rows ${rows}`;
        const fast = batchedWeightGradient(xt, dyt, g);
        if ((g.OH * g.OW) % Math.min(1024, g.OH * g.OW)) {
          assert.strictEqual(fast, null, `${what}: a ragged last chunk is declined`);
        } else {
          const dw = await bitwise(fast, conv2dBackwardWeightTexture(xt, dyt, g), what);
          assertClose(dw, conv2dWeightGradRef(x, xs, dy, ys, ws[2], ws[3], geom(o)), {
            what,
            atol: 2e-5,
            rtol: 1e-4,
          });
        }
        dispose();
      });
    }
  },
});

Deno.test({
  name: "1×1 conv copy form declines layouts it cannot copy",
  ignore: matmulVariant() !== "texture",
  fn: () => {
    const c = convOperands([2, 8, 5, 5], [4, 8, 1, 1]);
    assert.strictEqual(pointwiseForward(c.xt, c.wt, c.g), null, "25-pixel planes");
    const s2 = convOperands([2, 8, 5, 5], [4, 8, 1, 1], { stride: 2 });
    assert.strictEqual(batchedWeightGradient(s2.xt, s2.dyt, s2.g), null, "9-pixel output planes");
    c.dispose();
    s2.dispose();
  },
});

Deno.test({
  name: "1×1 conv through the copy form passes finite differences (input and weight)",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    await forcing([[setConvPath, "texture"]], async () => {
      const before = dispatchStats().dispatches;
      await gradCheck(
        (x, w) => F.conv2d(x, w),
        [{ shape: [2, 4, 8, 8] }, { shape: [8, 4, 1, 1] }],
      );
      assert.ok(dispatchStats().dispatches > before, "the conv ran on the GPU");
    });
  },
});
