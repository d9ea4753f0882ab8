import fc from "fast-check";
import assert from "node:assert";
import { backward, dispatchStats, F, requireGrad, type Tensor, tensor } from "../../engine/mod.ts";
import { noGrad } from "../../engine/autograd.ts";
import {
  convWinograd,
  setBindingLimitForTests,
  setConvPath,
  setConvTextureRowsForTests,
  setMatmulVariant,
  setWinogradRule,
  setWinogradTile,
} from "../../engine/routing.ts";
import { hasReadonlyStorageTextures } from "../../engine/texture_pool.ts";
import type { ConvGeometry } from "../../engine/ops/conv.ts";
import {
  conv2dBackwardDataWinograd,
  conv2dBackwardWeightWinograd,
  conv2dForwardWinograd,
  convWinogradFits,
  fitSpan,
  tileChunks,
} from "../../engine/ops/conv_winograd.ts";
import { WINOGRAD_MATRICES, type WinogradTile } from "../../kernels/conv/winograd.ts";
import { assertClose, gradCheck, maxAbs, randArray, setup } from "../util/gpu.ts";
import {
  conv2dInputGradRef,
  conv2dRef,
  conv2dWeightGradRef,
  convOutSize,
  geom,
} from "../reference/conv.ts";

await setup();

/** The Winograd path needs the texture GEMM (read-only storage textures). */
const ignore = !hasReadonlyStorageTextures();
const TILES: WinogradTile[] = [2, 4];

Deno.test("Winograd matrices: Aᵀ[(G g) ⊙ (Bᵀ d)] is the 1-D correlation (float64)", () => {
  for (const m of TILES) {
    const { BT, G, AT } = WINOGRAD_MATRICES[m];
    const a = m + 2;
    const d = Array.from(randArray(a, 10 + m), Number),
      g = Array.from(randArray(3, 20 + m), Number);
    const mul = (M: number[][], v: number[]) =>
      M.map((r) => r.reduce((s, c, i) => s + c * v[i], 0));
    const u = mul(G, g), v = mul(BT, d);
    const y = mul(AT, u.map((x, i) => x * v[i]));
    for (let i = 0; i < m; i++) {
      const direct = g[0] * d[i] + g[1] * d[i + 1] + g[2] * d[i + 2];
      assert.ok(Math.abs(y[i] - direct) < 1e-12, `F(${m},3) output ${i}: ${y[i]} vs ${direct}`);
    }
  }
});

interface Shape {
  N: number;
  C: number;
  H: number;
  W: number;
  O: number;
  p: [number, number];
}

function geometry(s: Shape): ConvGeometry {
  return {
    N: s.N,
    C: s.C,
    H: s.H,
    W: s.W,
    O: s.O,
    OH: convOutSize(s.H, 3, 1, s.p[0], 1),
    OW: convOutSize(s.W, 3, 1, s.p[1], 1),
    kh: 3,
    kw: 3,
    sh: 1,
    sw: 1,
    ph: s.p[0],
    pw: s.p[1],
    dh: 1,
    dw: 1,
    groups: 1,
  };
}

/**
 * Tolerance: F(4,3)'s rounding grows with the channel count (max abs error ~1e-5·max|y| at 64–512
 * channels on He-scaled filters, bench/conv.ts `winograd`); 1e-4·max|y| + 1e-6 bounds both tiles.
 */
function tolerance(ref: ArrayLike<number>) {
  return { atol: 1e-4 * maxAbs(ref) + 1e-6, rtol: 0 };
}

/**
 * Forward, input gradient and (texture GEMMs only: `weightGrad`) weight gradient of the Winograd
 * ops, tile m, against the float64 references.
 */
async function checkShape(
  s: Shape,
  m: WinogradTile,
  what: string,
  weightGrad = true,
): Promise<void> {
  const g = geometry(s);
  const x = randArray(s.N * s.C * s.H * s.W, 1);
  const w = randArray(s.O * s.C * 9, 2, -Math.sqrt(6 / (9 * s.C)), Math.sqrt(6 / (9 * s.C)));
  const dy = randArray(s.N * s.O * g.OH * g.OW, 3);
  const gg = geom({ padding: s.p });
  const ref = conv2dRef(x, [s.N, s.C, s.H, s.W], w, [s.O, s.C, 3, 3], null, gg);
  const dref = conv2dInputGradRef(dy, ref.shape, w, [s.O, s.C, 3, 3], s.H, s.W, gg);
  const xt = tensor(x, [s.N, s.C, s.H, s.W]), wt = tensor(w, [s.O, s.C, 3, 3]);
  const dyt = tensor(dy, ref.shape);
  const y = noGrad(() => conv2dForwardWinograd(xt, wt, g, m));
  const dx = noGrad(() => conv2dBackwardDataWinograd(dyt, wt, g, m));
  const label = `${what} F(${m},3) ${JSON.stringify(s)}`;
  assert.deepStrictEqual(y.shape, ref.shape, `${label}: output shape`);
  assertClose(await y.data(), ref.data, { what: `${label} forward`, ...tolerance(ref.data) });
  assertClose(await dx.data(), dref, { what: `${label} input grad`, ...tolerance(dref) });
  for (const t of [wt, y, dx]) t.dispose();
  if (weightGrad) {
    const wref = conv2dWeightGradRef(x, [s.N, s.C, s.H, s.W], dy, ref.shape, 3, 3, gg);
    const dw = noGrad(() => conv2dBackwardWeightWinograd(xt, dyt, g, m));
    assertClose(await dw.data(), wref, { what: `${label} weight grad`, ...tolerance(wref) });
    dw.dispose();
  }
  xt.dispose();
  dyt.dispose();
}

/** Odd sizes, H or W of 1 or 2, ragged tiles, C or O of 1, batch > 1, padding 0, 1, mixed. */
const SHAPES: Shape[] = [
  { N: 2, C: 5, H: 9, W: 7, O: 6, p: [1, 1] },
  { N: 1, C: 1, H: 1, W: 1, O: 1, p: [1, 1] },
  { N: 1, C: 3, H: 2, W: 5, O: 4, p: [1, 1] },
  { N: 3, C: 7, H: 13, W: 11, O: 1, p: [0, 0] },
  { N: 2, C: 4, H: 1, W: 6, O: 3, p: [1, 1] },
  { N: 1, C: 9, H: 4, W: 8, O: 5, p: [0, 0] },
  { N: 1, C: 3, H: 5, W: 10, O: 2, p: [0, 1] },
  { N: 2, C: 1, H: 6, W: 3, O: 7, p: [1, 0] },
  { N: 1, C: 64, H: 11, W: 9, O: 12, p: [1, 1] },
];

Deno.test({
  name: "Winograd forward, input and weight gradients match float64 references on awkward shapes",
  ignore,
  fn: async () => {
    for (const m of TILES) for (const s of SHAPES) await checkShape(s, m, "whole");
  },
});

Deno.test({
  name: "Winograd in chunks: few texture rows split tiles across samples and the components",
  ignore,
  fn: async () => {
    // 40 rows: 7 filters → 5 of 16 (36) components per texture, 8 (7) tiles per chunk.
    setConvTextureRowsForTests(40);
    try {
      for (const m of TILES) {
        await checkShape({ N: 3, C: 6, H: 9, W: 7, O: 7, p: [1, 1] }, m, "chunked");
        await checkShape({ N: 2, C: 5, H: 5, W: 6, O: 3, p: [0, 1] }, m, "chunked");
      }
    } finally {
      setConvTextureRowsForTests(null);
    }
  },
});

/**
 * Shapes past one chunk at the adapter's own limits (no lowered limit): F(2,3)'s forward and
 * input-gradient chunks hold maxTextureDimension2D / 16 tiles (1024 at 16384 rows), F(4,3)'s
 * / 36 (455); the weight gradient sums 256 (F(2,3)) or 64 (F(4,3)) tiles per GEMM and accumulates
 * the chunks; 512 filters split F(4,3)'s 36 components into two texture groups.
 */
const LARGE: Shape[] = [
  // 2024 F(2,3) tiles (2 chunks, the last ragged), 528 F(4,3) (2 chunks); odd H, W; C, O ∤ 4.
  { N: 4, C: 7, H: 45, W: 43, O: 5, p: [1, 1] },
  // 2178 F(2,3) tiles (3 chunks), 578 F(4,3); padding 0 on one axis.
  { N: 2, C: 3, H: 67, W: 65, O: 9, p: [0, 1] },
  // 512 filters: F(4,3)'s forward in two component groups.
  { N: 2, C: 6, H: 9, W: 11, O: 512, p: [1, 1] },
];

Deno.test({
  name: "Winograd past one chunk: ≥ 1024 tiles, several chunks and component groups",
  ignore,
  fn: async () => {
    // The shapes reach the paths: at least two chunks (or two component groups) of 3 dispatches
    // each besides the filter transform.
    for (const m of TILES) {
      for (const s of LARGE) {
        // 512 filters split the components only for F(4,3) (16 of F(2,3)'s fit one texture).
        if (s.O === 512 && m === 2) continue;
        const g = geometry(s);
        const x = tensor(randArray(s.N * s.C * s.H * s.W, 1), [s.N, s.C, s.H, s.W]);
        const w = tensor(randArray(s.O * s.C * 9, 2), [s.O, s.C, 3, 3]);
        const dy = tensor(randArray(s.N * s.O * g.OH * g.OW, 3), [s.N, s.O, g.OH, g.OW]);
        const passes: [string, () => Tensor][] = [
          ["forward", () => conv2dForwardWinograd(x, w, g, m)],
          ["weight grad", () => conv2dBackwardWeightWinograd(x, dy, g, m)],
        ];
        for (const [what, run] of passes) {
          const before = dispatchStats().dispatches;
          noGrad(run).dispose();
          const n = dispatchStats().dispatches - before;
          assert.ok(n >= 7, `F(${m},3) ${what} ${JSON.stringify(s)}: ${n} dispatches, one chunk`);
        }
        for (const t of [x, w, dy]) t.dispose();
      }
    }
    for (const m of TILES) for (const s of LARGE) await checkShape(s, m, "large");
    // A 128 KiB binding limit on top: chunks that straddle samples at arbitrary tiles.
    setBindingLimitForTests(128 * 1024);
    try {
      for (const m of TILES) await checkShape(LARGE[0], m, "large, 128 KiB bindings");
    } finally {
      setBindingLimitForTests(null);
    }
  },
});

Deno.test("Winograd chunks stay inside one sample where two do not fit a binding", async () => {
  // The plan alone: one sample fits, two do not. Halving used to end at one tile a chunk (a 2560²
  // image took minutes); now a chunk is a sample's tiles (or the cap), never crossing a sample.
  const tps = 1280 * 1280, CHW = 2 * 2560 * 2560, OHW = 3 * 2560 * 2560;
  const plan = fitSpan(4096, tps, CHW, OHW, 128 * 2 ** 20);
  assert.deepStrictEqual(plan, { Tc: 4096, aligned: true });
  const chunks = [...tileChunks(2 * tps, tps, plan)];
  assert.strictEqual(chunks.length, 2 * Math.ceil(tps / 4096));
  let next = 0;
  for (const [T0, tc] of chunks) {
    assert.strictEqual(T0, next, "chunks cover every tile in order");
    assert.ok(
      Math.floor(T0 / tps) === Math.floor((T0 + tc - 1) / tps),
      `chunk ${T0}+${tc} crosses`,
    );
    next = T0 + tc;
  }
  assert.strictEqual(next, 2 * tps);
  // Where two samples fit, the plan is the one of before (unaligned chunks of the halved cap).
  assert.deepStrictEqual(fitSpan(64, 10, 100, 100, 1 << 20), { Tc: 64, aligned: false });
  assert.deepStrictEqual(
    fitSpan(64, 10, 100, 100, 600),
    { Tc: 1, aligned: false },
    "one sample too big",
  );
  // On the adapter: a binding limit between one sample's output (2.3 KiB) and two (4.4 KiB).
  setBindingLimitForTests(4096);
  try {
    for (const m of TILES) {
      await checkShape({ N: 2, C: 3, H: 12, W: 11, O: 4, p: [1, 1] }, m, "sample-aligned chunks");
    }
  } finally {
    setBindingLimitForTests(null);
  }
});

Deno.test("Winograd on buffers and the batched matmul (the GPU variant), whole and chunked", async () => {
  // Off the texture matmul the transforms write buffers and the GEMMs are one batched matmul.
  setMatmulVariant("register");
  try {
    for (const m of TILES) {
      for (const s of SHAPES.slice(0, 5)) await checkShape(s, m, "buffers", false);
    }
    // A binding limit of 16 KiB: chunks of a few tiles spanning samples.
    setBindingLimitForTests(16 * 1024);
    for (const m of TILES) {
      await checkShape({ N: 3, C: 6, H: 9, W: 7, O: 7, p: [1, 1] }, m, "buffers chunked", false);
    }
  } finally {
    setBindingLimitForTests(null);
    setMatmulVariant(null);
  }
});

Deno.test("Winograd on buffers past the workgroup grid: over 16·65535 tiles in one call", async () => {
  // The transforms run a thread per tile along x: a chunk holds at most 16 × the adapter's
  // workgroups per dimension (65535 here). 1 × 2052 × 2050 outputs: 1026 × 1025 F(2,3) tiles.
  setMatmulVariant("register");
  try {
    const H = 2052, W = 2050;
    const s: Shape = { N: 1, C: 1, H, W, O: 1, p: [1, 1] };
    const x = randArray(H * W, 8), w = randArray(9, 9);
    const xt = tensor(x, [1, 1, H, W]), wt = tensor(w, [1, 1, 3, 3]);
    const y = await noGrad(() => conv2dForwardWinograd(xt, wt, geometry(s), 2)).data();
    // The direct correlation at every 997th output and the last ones (the second chunk's).
    const at = (i: number, j: number) => i < 0 || j < 0 || i >= H || j >= W ? 0 : x[i * W + j];
    let worst = 0;
    for (let k = 0; k < H * W; k += k < H * W - 4096 ? 997 : 1) {
      const i = Math.floor(k / W), j = k % W;
      let ref = 0;
      for (let a = 0; a < 3; a++) {
        for (let b = 0; b < 3; b++) ref += w[a * 3 + b] * at(i + a - 1, j + b - 1);
      }
      worst = Math.max(worst, Math.abs(y[k] - ref));
    }
    assert.ok(worst < 1e-5, `max error ${worst}`);
    xt.dispose();
    wt.dispose();
  } finally {
    setMatmulVariant(null);
  }
});

Deno.test({
  name: "Winograd equals the float64 reference for random shapes and tiles (fast-check)",
  ignore,
  fn: async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          N: fc.integer({ min: 1, max: 3 }),
          C: fc.integer({ min: 1, max: 9 }),
          O: fc.integer({ min: 1, max: 9 }),
          H: fc.integer({ min: 1, max: 12 }),
          W: fc.integer({ min: 1, max: 12 }),
          ph: fc.integer({ min: 0, max: 2 }),
          pw: fc.integer({ min: 0, max: 2 }),
          m: fc.constantFrom<WinogradTile>(2, 4),
        }),
        async (r) => {
          const s: Shape = { N: r.N, C: r.C, H: r.H, W: r.W, O: r.O, p: [r.ph, r.pw] };
          const g = geometry(s);
          if (g.OH < 1 || g.OW < 1) return;
          await checkShape(s, r.m, "random");
        },
      ),
      { numRuns: 20 },
    );
  },
});

Deno.test({
  name:
    "routing: 3×3 stride-1 passes take Winograd where turned on (F(4,3) up to 128 channels, F(2,3) for weight gradients), others do not",
  ignore,
  fn: () => {
    const base = geometry({ N: 1, C: 64, H: 16, W: 16, O: 64, p: [1, 1] });
    const route = (
      g: ConvGeometry,
      pass: "forward" | "input" | "weight" = "forward",
      bias = false,
    ) => convWinograd(g, pass, bias, () => convWinogradFits(g, pass));
    // On by default (unless the environment turns it off); off when turned off.
    const envOn = !["off", "0"].includes(Deno.env.get("ENGINE_WINOGRAD") ?? "");
    assert.strictEqual(route(base) !== null, envOn, "the default");
    setWinogradRule(false);
    try {
      assert.strictEqual(route(base), null, "turned off");
      setConvPath("winograd");
      try {
        assert.strictEqual(route(base), 4, "forced while the rule is off");
      } finally {
        setConvPath(null);
      }
    } finally {
      setWinogradRule(null);
    }
    setWinogradRule(true);
    try {
      assert.strictEqual(route(base), 4);
      assert.strictEqual(route({ ...base, C: 256, O: 256 }, "input"), 2);
      assert.strictEqual(route(base, "weight"), 2);
      assert.strictEqual(route({ ...base, O: 512 }), 2);
      assert.strictEqual(route(base, "forward", true), null, "bias");
      assert.strictEqual(route({ ...base, sh: 2, OH: 8 }), null, "stride 2");
      assert.strictEqual(route({ ...base, dh: 2, dw: 2, ph: 2, pw: 2 }), null, "dilation 2");
      assert.strictEqual(route({ ...base, groups: 2 }), null, "groups");
      assert.strictEqual(route({ ...base, kh: 1, kw: 1, ph: 0, pw: 0 }), null, "1×1");
      // The weight gradient's sums [36, O, C] must fit a binding (576 KiB here).
      setBindingLimitForTests(512 * 1024);
      try {
        assert.strictEqual(route(base, "weight"), null, "weight-gradient sums past the binding");
        assert.strictEqual(route(base), 4, "the forward chunks its tiles instead");
      } finally {
        setBindingLimitForTests(null);
      }
      for (const p of ["kernel", "texture"] as const) {
        setConvPath(p);
        try {
          assert.strictEqual(route(base), null, `forced ${p}`);
        } finally {
          setConvPath(null);
        }
      }
      setWinogradTile(2);
      try {
        assert.strictEqual(route(base), 2, "forced tile");
      } finally {
        setWinogradTile(null);
      }
    } finally {
      setWinogradRule(null);
    }
  },
});

Deno.test({
  name:
    "conv2d through Winograd: autograd's gradients match the references and pass finite differences",
  ignore,
  fn: async () => {
    for (const m of TILES) {
      setConvPath("winograd");
      setWinogradTile(m);
      try {
        const s: Shape = { N: 2, C: 3, H: 7, W: 6, O: 4, p: [1, 1] };
        assert.strictEqual(convWinograd(geometry(s), "input", false, () => true), m);
        const x = randArray(2 * 3 * 7 * 6, 5), w = randArray(4 * 3 * 9, 6);
        const xt = requireGrad(tensor(x, [2, 3, 7, 6])), wt = requireGrad(tensor(w, [4, 3, 3, 3]));
        const y = F.conv2d(xt, wt, null, { padding: 1 });
        const ref = conv2dRef(x, [2, 3, 7, 6], w, [4, 3, 3, 3], null, geom({ padding: 1 }));
        assertClose(await y.data(), ref.data, {
          what: `F(${m},3) forward`,
          atol: 1e-5,
          rtol: 1e-4,
        });
        const dy = randArray(y.size, 7);
        const dyt = tensor(dy, y.shape);
        backward(y, dyt);
        const dref = conv2dInputGradRef(dy, ref.shape, w, [4, 3, 3, 3], 7, 6, geom({ padding: 1 }));
        assertClose(await xt.grad!.data(), dref, {
          what: `F(${m},3) input grad`,
          atol: 1e-5,
          rtol: 1e-4,
        });
        const wref = conv2dWeightGradRef(
          x,
          [2, 3, 7, 6],
          dy,
          ref.shape,
          3,
          3,
          geom({ padding: 1 }),
        );
        assertClose(await wt.grad!.data(), wref, {
          what: `F(${m},3) weight grad`,
          atol: 2e-5,
          rtol: 1e-4,
        });
        for (const t of [xt, wt, y, dyt, xt.grad, wt.grad]) t?.dispose();
        await gradCheck(
          (a, b) => F.conv2d(a, b, null, { padding: [1, 0] }),
          [{ shape: [2, 3, 6, 5] }, { shape: [2, 3, 3, 3] }],
        );
      } finally {
        setConvPath(null);
        setWinogradTile(null);
      }
    }
  },
});
