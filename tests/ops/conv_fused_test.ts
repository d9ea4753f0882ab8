/**
 * The fused inference conv + BatchNorm (running statistics) [+ residual] [+ ReLU]
 * (engine/ops/conv_fused.ts) against a float64 reference (conv, then BN, then the add and ReLU,
 * from tests/reference/) on both conv paths: the conv kernels (default and small odd tiles) and
 * the texture GEMMs (software adapters; chunked rows too).
 *
 * Tolerance: atol 1e-4, rtol 1e-4. The f32 conv alone meets 1e-5 / 1e-4 (tests/ops/conv_test.ts);
 * the BN scale here reaches |γ|/√(var + eps) ≈ 1.5/√0.2 ≈ 3.4 and the shift adds |mean·scale| up
 * to ~3.4, whose f32 rounding (~4e-7 each) and the scaled conv error stay well inside 1e-4; a
 * wrong channel, index or missing term is off by O(1).
 */
import fc from "fast-check";
import assert from "node:assert/strict";
import { dispatchStats, noGrad, requireGrad, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import { conv2dBatchNormEval, foldBatchNorm } from "../../engine/ops/conv_fused.ts";
import { conv2dForwardRaw, conv2dGeometry } from "../../engine/ops/conv.ts";
import { applyConvEpilogueRaw } from "../../engine/ops/conv_epilogue.ts";
import {
  convTiles,
  matmulVariant,
  setBindingLimitForTests,
  setConvBnFusion,
  setConvPath,
  setConvTextureRowsForTests,
  setConvTiles,
} from "../../engine/routing.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";
import { conv2dRef, geom } from "../reference/conv.ts";
import { batchNormRef } from "../reference/norm.ts";
import { RESNET50_ADL, ResNetAdl } from "../../model/resnet_adl.ts";

await setup();

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
const TOL = { atol: 1e-4, rtol: 1e-4 };
const EPS = 1e-5;

interface Case {
  xs: number[];
  ws: number[];
  o: { stride?: number; padding?: number; groups?: number };
  relu: boolean;
  residual: boolean;
}

/**
 * Odd sizes, C or O = 1, stride 2, padding, 1×1, 3×3 and 7×7, with and without ReLU / residual,
 * and one shape large enough for the texture GEMM's big register tile.
 */
const CASES: Case[] = [
  { xs: [2, 5, 9, 7], ws: [6, 5, 3, 3], o: { padding: 1 }, relu: true, residual: false },
  {
    xs: [1, 3, 11, 13],
    ws: [7, 3, 7, 7],
    o: { stride: 2, padding: 3 },
    relu: true,
    residual: false,
  },
  { xs: [3, 13, 5, 5], ws: [17, 13, 1, 1], o: {}, relu: true, residual: true },
  { xs: [1, 1, 6, 5], ws: [4, 1, 3, 3], o: { stride: 2, padding: 1 }, relu: false, residual: true },
  { xs: [2, 7, 4, 3], ws: [1, 7, 1, 1], o: {}, relu: true, residual: true },
  { xs: [1, 1, 1, 1], ws: [1, 1, 1, 1], o: {}, relu: false, residual: false },
  { xs: [2, 19, 7, 7], ws: [23, 19, 1, 1], o: { stride: 2 }, relu: false, residual: false },
  {
    xs: [1, 4, 10, 10],
    ws: [9, 4, 3, 3],
    o: { stride: 2, padding: 1 },
    relu: true,
    residual: true,
  },
  // Grouped (the conv kernels take it on every path).
  { xs: [1, 6, 7, 7], ws: [4, 3, 3, 3], o: { padding: 1, groups: 2 }, relu: true, residual: true },
  // 64 channels × 143 pixels: the texture GEMM's large 12×12 register tile.
  { xs: [2, 8, 11, 13], ws: [64, 8, 1, 1], o: {}, relu: true, residual: true },
];

/** Random BN parameters and statistics for O channels (var in [0.2, 2], γ in [-1.5, 1.5]). */
function bnData(O: number, seed: number) {
  return {
    weight: randArray(O, seed, -1.5, 1.5),
    bias: randArray(O, seed + 1),
    mean: randArray(O, seed + 2),
    var: randArray(O, seed + 3, 0.2, 2),
  };
}

/** relu?(BN_eval(conv(x, w)) + residual) in float64. */
function reference(
  x: Float32Array,
  xs: number[],
  w: Float32Array,
  ws: number[],
  o: Case["o"],
  bn: ReturnType<typeof bnData>,
  residual: Float32Array | null,
  relu: boolean,
): { data: Float64Array; shape: number[] } {
  const conv = conv2dRef(x, xs, w, ws, null, geom(o));
  const { y } = batchNormRef(conv.data, conv.shape, { ...bn, eps: EPS });
  for (let i = 0; i < y.length; i++) {
    if (residual) y[i] += residual[i];
    if (relu) y[i] = Math.max(y[i], 0);
  }
  return { data: y, shape: conv.shape };
}

/**
 * One case against the reference: `fused` through conv2dBatchNormEval; `pass` through the plain
 * conv and then the epilogue as a pass of its own (applyConvEpilogueRaw, for conv paths whose
 * store lacks the epilogue).
 */
async function checkCase(
  c: Case,
  seed: number,
  what: string,
  mode: "fused" | "pass" = "fused",
): Promise<void> {
  const x = randArray(numel(c.xs), seed), w = randArray(numel(c.ws), seed + 1);
  const bn = bnData(c.ws[0], seed + 2);
  const ref0 = conv2dRef(x, c.xs, w, c.ws, null, geom(c.o));
  const res = c.residual ? randArray(numel(ref0.shape), seed + 9) : null;
  const ref = reference(x, c.xs, w, c.ws, c.o, bn, res, c.relu);
  const ts: Tensor[] = [];
  const t = (d: Float32Array, s: number[]) => {
    const v = tensor(d, s);
    ts.push(v);
    return v;
  };
  const bnT = {
    weight: t(bn.weight, [c.ws[0]]),
    bias: t(bn.bias, [c.ws[0]]),
    runningMean: t(bn.mean, [c.ws[0]]),
    runningVar: t(bn.var, [c.ws[0]]),
    eps: EPS,
  };
  const resT = res ? t(res, ref.shape) : undefined;
  const y = noGrad(() => {
    if (mode === "fused") {
      return conv2dBatchNormEval(t(x, c.xs), t(w, c.ws), bnT, {
        ...c.o,
        relu: c.relu,
        residual: resT,
      });
    }
    const xt = t(x, c.xs), wt = t(w, c.ws);
    const out = conv2dForwardRaw(xt, wt, null, conv2dGeometry("test", xt, wt, null, c.o));
    const { scale, shift } = foldBatchNorm(bnT, c.ws[0]);
    applyConvEpilogueRaw(out, { scale, shift, residual: resT, relu: c.relu });
    ts.push(scale, shift);
    return out;
  });
  assert.deepStrictEqual(y.shape, ref.shape, `${what}: output shape`);
  assertClose(await y.data(), ref.data, {
    ...TOL,
    what: `${what} x[${c.xs}] w[${c.ws}] ${JSON.stringify(c.o)} relu ${c.relu} res ${c.residual}`,
  });
  y.dispose();
  for (const v of ts) v.dispose();
}

/** Runs `fn` on each conv path this adapter has, with the path forced. */
async function onEachPath(fn: (path: string) => Promise<void>): Promise<void> {
  const paths: [string, () => void][] = [
    ["conv kernels", () => setConvPath("kernel")],
    [
      "conv kernels, small odd tiles",
      () => setConvTiles({ ...convTiles(), fwd: { wg: 16, rm: 3, rn: 5 } }),
    ],
  ];
  if (matmulVariant() === "texture") {
    paths.push(["texture GEMMs", () => setConvPath("texture")]);
    paths.push(["texture GEMMs, 7-row chunks", () => {
      setConvPath("texture");
      setConvTextureRowsForTests(7);
    }]);
  }
  for (const [name, force] of paths) {
    force();
    try {
      await fn(name);
    } finally {
      setConvPath(null);
      setConvTiles(null);
      setConvTextureRowsForTests(null);
    }
  }
}

Deno.test("conv2dBatchNormEval equals conv → BN (running stats) → +residual → ReLU in float64, both conv paths", async () => {
  await onEachPath(async (path) => {
    for (const [i, c] of CASES.entries()) await checkCase(c, 10 * i + 1, path);
  });
});

Deno.test("conv2dBatchNormEval equals the float64 reference for random geometries on both paths (fast-check)", async () => {
  await onEachPath(async (path) => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          n: fc.integer({ min: 1, max: 2 }),
          c: fc.integer({ min: 1, max: 6 }),
          o: fc.integer({ min: 1, max: 9 }),
          h: fc.integer({ min: 1, max: 9 }),
          w: fc.integer({ min: 1, max: 9 }),
          k: fc.constantFrom(1, 3, 7),
          stride: fc.integer({ min: 1, max: 2 }),
          pad: fc.integer({ min: 0, max: 3 }),
          relu: fc.boolean(),
          residual: fc.boolean(),
          seed: fc.nat(1000),
        }),
        async (r) => {
          const padding = Math.min(r.pad, r.k - 1);
          const OH = Math.floor((r.h + 2 * padding - r.k) / r.stride) + 1;
          const OW = Math.floor((r.w + 2 * padding - r.k) / r.stride) + 1;
          if (OH < 1 || OW < 1) return;
          await checkCase(
            {
              xs: [r.n, r.c, r.h, r.w],
              ws: [r.o, r.c, r.k, r.k],
              o: { stride: r.stride, padding },
              relu: r.relu,
              residual: r.residual,
            },
            r.seed,
            path,
          );
        },
      ),
      { numRuns: 6 },
    );
  });
});

Deno.test("conv2dBatchNormEval with the batch split over a lowered binding limit (conv kernels, residual)", async () => {
  // Per sample 2 KiB fits, a whole batch does not: one dispatch per sample, residual included.
  setBindingLimitForTests(2048);
  setConvPath("kernel");
  try {
    await checkCase(CASES[2], 71, "split batch");
    const c = { xs: [4, 3, 8, 8], ws: [5, 3, 3, 3], o: { padding: 1 }, relu: true, residual: true };
    await checkCase(c, 72, "split batch");
  } finally {
    setBindingLimitForTests(null);
    setConvPath(null);
  }
});

Deno.test("the conv epilogue as a pass of its own equals the same reference (whole and split batch)", async () => {
  for (const [i, c] of CASES.entries()) await checkCase(c, 10 * i + 3, "epilogue pass", "pass");
  setBindingLimitForTests(2048);
  try {
    await checkCase(CASES[2], 73, "epilogue pass, split batch", "pass");
  } finally {
    setBindingLimitForTests(null);
  }
});

Deno.test("conv2dBatchNormEval refuses gradients, mismatched BN vectors and residuals, naming them", () => {
  const x = tensor(randArray(2 * 3 * 4 * 4, 1), [2, 3, 4, 4]);
  const w = requireGrad(tensor(randArray(5 * 3 * 3 * 3, 2), [5, 3, 3, 3]));
  const v = (n: number) => tensor(new Float32Array(n).fill(1), [n]);
  const bn = { runningMean: v(5), runningVar: v(5), eps: EPS };
  assert.throws(() => conv2dBatchNormEval(x, w, bn), /inference only/);
  noGrad(() => {
    assert.throws(
      () => conv2dBatchNormEval(x, w, { ...bn, runningVar: v(4) }),
      /runningVar must be f32 \[5\]/,
    );
    assert.throws(
      () =>
        conv2dBatchNormEval(x, w, bn, {
          padding: 1,
          residual: tensor(randArray(10, 3), [2, 5, 1, 1]),
        }),
      /residual must be f32 \[2,5,4,4\]/,
    );
  });
});

/** A small ResNet-ADL (width 8) in eval mode with random BN statistics, and its input. */
function smallResNet(): { m: ResNetAdl; x: Tensor } {
  const m = new ResNetAdl({ ...RESNET50_ADL, layers: [1, 1, 2, 1], width: 8 }).eval();
  let seed = 100;
  for (const [name, t] of m.stateDict()) {
    if (name.endsWith("running_var")) {
      m.assignParameter(name, tensor(randArray(t.size, seed++, 0.5, 2), t.shape.slice()));
    } else if (name.endsWith("running_mean") || (name.includes("bn") && name.endsWith("bias"))) {
      m.assignParameter(name, tensor(randArray(t.size, seed++, -0.2, 0.2), t.shape.slice()));
    }
  }
  return { m, x: tensor(randArray(2 * 3 * 40 * 40, 7, 0, 1), [2, 3, 40, 40]) };
}

Deno.test("ResNet-ADL eval: no-grad forwards fuse (fewer dispatches, same logits to rounding); gradient passes are unchanged bit for bit", async () => {
  const { m, x } = smallResNet();
  const run = (fuse: boolean, grad: boolean) => {
    setConvBnFusion(fuse);
    try {
      const before = dispatchStats().dispatches;
      const y = grad ? tidy(() => m.camRaw(x)) : tidy(() => noGrad(() => m.camRaw(x)));
      return { y, dispatches: dispatchStats().dispatches - before };
    } finally {
      setConvBnFusion(null);
    }
  };
  const fused = run(true, false), unfused = run(false, false);
  assert.ok(
    fused.dispatches < unfused.dispatches,
    `fused ${fused.dispatches} dispatches, unfused ${unfused.dispatches}`,
  );
  const u = await unfused.y.data();
  assertClose(await fused.y.data(), u, { atol: 1e-4, rtol: 1e-4, what: "fused vs unfused CAM" });
  // With gradients recorded (eval BN), fusion on or off must not change a bit.
  const g1 = run(true, true), g0 = run(false, true);
  assert.deepStrictEqual(await g1.y.data(), await g0.y.data());
  // Checkpointed blocks with gradients (eval BN): the graph-free first forward is no inference.
  m.setCheckpointing(true);
  const c1 = run(true, true), c0 = run(false, true);
  assert.deepStrictEqual(await c1.y.data(), await c0.y.data());
  assert.deepStrictEqual(await c1.y.data(), await g0.y.data());
  m.setCheckpointing(false);
  // Training mode under noGrad: batch statistics, never fused.
  m.train();
  m.setAdl(false);
  const t1 = run(true, false), t0 = run(false, false);
  assert.equal(t1.dispatches, t0.dispatches);
  assert.deepStrictEqual(await t1.y.data(), await t0.y.data());
  for (const r of [fused, unfused, g1, g0, c1, c0, t1, t0]) r.y.dispose();
  x.dispose();
  m.dispose();
});
