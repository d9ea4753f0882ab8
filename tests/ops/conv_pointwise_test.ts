/**
 * The 1×1 copy form of the texture conv passes (engine/ops/conv_pointwise.ts): against the float64
 * references, and bit for bit against the general texture path it replaces, whole and with the
 * samples (chunks) in several product dispatches.
 */
import { type Tensor, tensor } from "../../engine/mod.ts";
import {
  matmulVariant,
  setBindingLimitForTests,
  setConvTextureRowsForTests,
} from "../../engine/routing.ts";
import { conv2dGeometry } from "../../engine/ops/conv.ts";
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
import { assertClose, randArray, setup } from "../util/gpu.ts";
import { conv2dInputGradRef, conv2dRef, conv2dWeightGradRef, geom } from "../reference/conv.ts";
import assert from "node:assert";

await setup();

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

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

async function checkCase(xs: number[], ws: number[], label: string): Promise<void> {
  const x = randArray(numel(xs), 1), w = randArray(numel(ws), 2);
  const xt = tensor(x, xs), wt = tensor(w, ws);
  const g = conv2dGeometry("conv2d", xt, wt, null, {});
  const ys = [g.N, g.O, g.OH, g.OW];
  const dy = randArray(numel(ys), 3), dyt = tensor(dy, ys);
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
  for (const t of [xt, wt, dyt]) t.dispose();
}

Deno.test({
  name: "1×1 conv copy form: float64 references, bitwise the general texture path",
  // Only adapters whose matmul stages operands in textures (software ones) take texture paths.
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    for (const [xs, ws] of CASES) await checkCase(xs, ws, "whole");
    // 16 texture rows: samples two or one per product, weight-gradient chunks of 64 pixels one
    // per product (the sum then accumulates onto dW).
    setConvTextureRowsForTests(16);
    try {
      await checkCase([3, 8, 8, 16], [12, 8, 1, 1], "16 texture rows");
    } finally {
      setConvTextureRowsForTests(null);
    }
    // A binding of two samples' outputs: the forward's samples in groups of two and one.
    setBindingLimitForTests(2 * 4 * 12 * 128 + 256);
    try {
      await checkCase([3, 8, 8, 16], [12, 8, 1, 1], "binding of two samples");
    } finally {
      setBindingLimitForTests(null);
    }
  },
});

Deno.test({
  name:
    "1×1 conv copy form with the epilogue (scale, shift, residual, ReLU): bitwise the general path",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    const xs = [3, 12, 8, 8], ws = [20, 12, 1, 1];
    const xt = tensor(randArray(numel(xs), 1), xs), wt = tensor(randArray(numel(ws), 2), ws);
    const g = conv2dGeometry("conv2d", xt, wt, null, {});
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
    for (const t of [xt, wt, ep.scale, ep.shift, ep.residual]) t.dispose();
  },
});

Deno.test({
  name: "1×1 conv copy form: weight gradient of 5×7 weights (a sum one weight a thread)",
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    const xs = [2, 7, 8, 8], ws = [5, 7, 1, 1], ys = [2, 5, 8, 8];
    const x = randArray(numel(xs), 1), dy = randArray(numel(ys), 3);
    const xt = tensor(x, xs), wt = tensor(randArray(35, 2), ws), dyt = tensor(dy, ys);
    const g = conv2dGeometry("conv2d", xt, wt, null, {});
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
    for (const t of [xt, wt, dyt]) t.dispose();
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
      setConvTextureRowsForTests(rows);
      try {
        const x = randArray(numel(xs), 1);
        const xt = tensor(x, xs), wt = tensor(randArray(numel(ws), 2), ws);
        const g = conv2dGeometry("conv2d", xt, wt, null, o);
        const ys = [g.N, g.O, g.OH, g.OW];
        const dy = randArray(numel(ys), 3), dyt = tensor(dy, ys);
        const what = `x[${xs}] w[${ws}] ${JSON.stringify(o)} rows ${rows}`;
        const fast = batchedWeightGradient(xt, dyt, g);
        if ((g.OH * g.OW) % Math.min(1024, g.OH * g.OW)) {
          assert.strictEqual(fast, null, `${what}: a ragged last chunk is declined`);
          for (const t of [xt, wt, dyt]) t.dispose();
          continue;
        }
        const dw = await bitwise(fast, conv2dBackwardWeightTexture(xt, dyt, g), what);
        assertClose(dw, conv2dWeightGradRef(x, xs, dy, ys, ws[2], ws[3], geom(o)), {
          what,
          atol: 2e-5,
          rtol: 1e-4,
        });
        for (const t of [xt, wt, dyt]) t.dispose();
      } finally {
        setConvTextureRowsForTests(null);
      }
    }
  },
});

Deno.test({
  name: "1×1 conv copy form declines layouts it cannot copy",
  ignore: matmulVariant() !== "texture",
  fn: () => {
    const xt = tensor(randArray(2 * 8 * 25, 1), [2, 8, 5, 5]);
    const wt = tensor(randArray(4 * 8, 2), [4, 8, 1, 1]);
    const g = conv2dGeometry("conv2d", xt, wt, null, {});
    assert.strictEqual(pointwiseForward(xt, wt, g), null, "25-pixel planes");
    const g3 = conv2dGeometry("conv2d", xt, wt, null, { stride: 2 });
    assert.strictEqual(batchedWeightGradient(xt, xt, g3), null, "9-pixel output planes");
    xt.dispose();
    wt.dispose();
  },
});
