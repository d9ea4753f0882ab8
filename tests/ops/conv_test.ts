import fc from "fast-check";
import { backward, F, requireGrad, type Tensor, tensor } from "../../engine/mod.ts";
import {
  convTiles,
  matmulVariant,
  setConvPath,
  setConvTextureRowsForTests,
  setConvTiles,
} from "../../engine/routing.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { forcing } from "../util/routing.ts";
import {
  conv2dInputGradRef,
  conv2dRef,
  conv2dWeightGradRef,
  convTranspose2dRef,
  geom,
} from "../reference/conv.ts";
import assert from "node:assert";

await setup();

type P2 = number | [number, number];
interface Case {
  xs: number[];
  ws: number[];
  o: { stride?: P2; padding?: P2; dilation?: P2; groups?: number };
  bias?: boolean;
}

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Awkward shapes: odd and prime sizes, size 1, batch > 1, stride 2, dilation 2, padding 0/1/3,
 * 1×1 and 7×7 kernels, channels not a multiple of 4, groups. */
const CASES: Case[] = [
  { xs: [2, 5, 9, 7], ws: [6, 5, 3, 3], o: { padding: 1 }, bias: true },
  { xs: [1, 3, 11, 13], ws: [7, 3, 7, 7], o: { stride: 2, padding: 3 }, bias: true },
  { xs: [3, 13, 5, 5], ws: [17, 13, 1, 1], o: {} },
  {
    xs: [2, 6, 8, 9],
    ws: [10, 3, 3, 2],
    o: { stride: [2, 1], padding: [0, 1], dilation: 2, groups: 2 },
    bias: true,
  },
  { xs: [1, 1, 1, 1], ws: [1, 1, 1, 1], o: {}, bias: true },
  { xs: [2, 7, 1, 6], ws: [3, 7, 1, 3], o: { padding: [0, 1] } },
  { xs: [1, 4, 10, 10], ws: [5, 4, 3, 3], o: { stride: 2, dilation: 2, padding: 3 }, bias: true },
  { xs: [2, 9, 6, 5], ws: [9, 1, 3, 3], o: { padding: 1, groups: 9 } },
  { xs: [1, 19, 7, 7], ws: [23, 19, 1, 1], o: { stride: 2 }, bias: true },
  // 1×1 stride 1 with planes of a multiple of 4 (the vec4 packs of the texture path), K = 7
  // channels (a partial texel), 20 pixels (chunks of 8 rows leave 4).
  { xs: [2, 7, 4, 5], ws: [8, 7, 1, 1], o: {} },
  { xs: [1, 8, 4, 4], ws: [12, 8, 1, 1], o: {} },
  // Unpadded 1×1 with unequal strides: the input gradient on the stride grid, zeros off it.
  { xs: [2, 6, 8, 7], ws: [5, 6, 1, 1], o: { stride: [3, 2] } },
];

/** Default (per-adapter) tiles, and small odd tiles so that every shape spans several blocks. */
const TILINGS: [string, ReturnType<typeof convTiles> | null, number | null][] = [
  // null: the adapter's default path (texture GEMMs on software adapters, kernels on GPUs).
  ["default path", null, null],
  ["conv kernels, default tiles", convTiles(), null],
  ["small odd tiles, split-K 3", {
    fwd: { wg: 16, rm: 3, rn: 5 },
    bwdData: { wg: 8, rm: 2, rn: 3 },
    bwdWeight: { wg: 16, ro: 3, rj: 5 },
  }, 3],
];

async function checkCase(c: Case, label: string): Promise<void> {
  const x = randArray(numel(c.xs), 1), w = randArray(numel(c.ws), 2);
  const b = c.bias ? randArray(c.ws[0], 3) : null;
  const g = geom(c.o);
  const ref = conv2dRef(x, c.xs, w, c.ws, b, g);
  const xt = requireGrad(tensor(x, c.xs)), wt = requireGrad(tensor(w, c.ws));
  const bt = b ? requireGrad(tensor(b, [c.ws[0]])) : null;
  const y = F.conv2d(xt, wt, bt, c.o);
  const what = `${label} x[${c.xs}] w[${c.ws}] ${JSON.stringify(c.o)}`;
  assert.deepStrictEqual(y.shape, ref.shape, `${what}: output shape`);
  assertClose(await y.data(), ref.data, { what: `${what} forward`, atol: 1e-5, rtol: 1e-4 });
  const dy = randArray(y.size, 4);
  const dyt = tensor(dy, y.shape);
  backward(y, dyt);
  assertClose(
    await xt.grad!.data(),
    conv2dInputGradRef(dy, ref.shape, w, c.ws, c.xs[2], c.xs[3], g),
    {
      what: `${what} input grad`,
      atol: 1e-5,
      rtol: 1e-4,
    },
  );
  assertClose(
    await wt.grad!.data(),
    conv2dWeightGradRef(x, c.xs, dy, ref.shape, c.ws[2], c.ws[3], g),
    {
      what: `${what} weight grad`,
      atol: 2e-5,
      rtol: 1e-4,
    },
  );
  if (bt) {
    const [N, O, OH, OW] = ref.shape;
    const db = new Float64Array(O);
    for (let n = 0; n < N; n++) {
      for (let o = 0; o < O; o++) {
        for (let i = 0; i < OH * OW; i++) db[o] += dy[(n * O + o) * OH * OW + i];
      }
    }
    assertClose(await bt.grad!.data(), db, { what: `${what} bias grad`, atol: 1e-5, rtol: 1e-4 });
  }
  for (const t of [xt, wt, bt, y, dyt, xt.grad, wt.grad, bt?.grad]) t?.dispose();
}

Deno.test("conv2d forward, input and weight gradients match float64 references on awkward shapes", async () => {
  for (const [label, tiles, splits] of TILINGS) {
    await forcing([[setConvTiles, tiles, splits]], async () => {
      for (const c of CASES) await checkCase(c, label);
    });
  }
});

Deno.test({
  name: "texture conv path (every pass forced), whole and in chunks of a few pixels",
  // Only adapters whose matmul stages operands in textures (software ones) take this path.
  ignore: matmulVariant() !== "texture",
  fn: async () => {
    // Chunks starting at multiples of 4 rows (8) keep the vec4 packs; 5 rows do not.
    for (const rows of [null, 5, 8]) {
      await forcing([[setConvPath, "texture"], [setConvTextureRowsForTests, rows]], async () => {
        for (const c of CASES) await checkCase(c, `texture path, chunks of ${rows ?? "all"} rows`);
      });
    }
  },
});

Deno.test("split-K weight gradient: every split count gives the same sums", async () => {
  const c: Case = { xs: [2, 5, 13, 11], ws: [6, 5, 3, 3], o: { padding: 1, stride: [1, 2] } };
  for (const s of [1, 2, 7, 64]) {
    setConvTiles(convTiles(), s);
    try {
      await checkCase(c, `split ${s}`);
    } finally {
      setConvTiles(null);
    }
  }
});

const T_CASES: {
  xs: number[];
  ws: number[];
  o: Case["o"] & { outputPadding?: P2 };
  bias?: boolean;
}[] = [
  // SAM's mask decoder upscaling: ConvTranspose2d(k=2, s=2).
  { xs: [2, 8, 5, 7], ws: [8, 6, 2, 2], o: { stride: 2 }, bias: true },
  {
    xs: [1, 5, 4, 3],
    ws: [5, 3, 3, 3],
    o: { stride: 2, padding: 1, outputPadding: 1 },
    bias: true,
  },
  {
    xs: [2, 4, 3, 5],
    ws: [4, 3, 3, 2],
    o: { stride: [1, 3], padding: [1, 0], dilation: 2, groups: 2, outputPadding: [0, 2] },
  },
  { xs: [1, 3, 1, 1], ws: [3, 7, 1, 1], o: {}, bias: true },
];

Deno.test("convTranspose2d matches PyTorch semantics (float64 reference) with its gradients", async () => {
  for (const [label, tiles, splits] of TILINGS) {
    setConvTiles(tiles, splits);
    try {
      for (const c of T_CASES) {
        const x = randArray(numel(c.xs), 5), w = randArray(numel(c.ws), 6);
        const b = c.bias ? randArray(c.ws[1] * (c.o.groups ?? 1), 7) : null;
        const g = geom(c.o);
        const op = c.o.outputPadding ?? 0;
        const ref = convTranspose2dRef(
          x,
          c.xs,
          w,
          c.ws,
          b,
          g,
          typeof op === "number" ? [op, op] : op,
        );
        const xt = requireGrad(tensor(x, c.xs)), wt = requireGrad(tensor(w, c.ws));
        const bt = b ? tensor(b, [b.length]) : null;
        const y = F.convTranspose2d(xt, wt, bt, c.o);
        const what = `${label} convT x[${c.xs}] w[${c.ws}] ${JSON.stringify(c.o)}`;
        assert.deepStrictEqual(y.shape, ref.shape, what);
        assertClose(await y.data(), ref.data, { what, atol: 1e-5, rtol: 1e-4 });
        // convT is conv2d's adjoint: its gradients are conv2d forward and weight gradient.
        const dy = randArray(y.size, 8);
        const dyt = tensor(dy, y.shape);
        backward(y, dyt);
        const conv = conv2dRef(dy, ref.shape, w, c.ws, null, g);
        assertClose(await xt.grad!.data(), conv.data, {
          what: `${what} input grad`,
          atol: 1e-5,
          rtol: 1e-4,
        });
        const dw = conv2dWeightGradRef(dy, ref.shape, x, c.xs, c.ws[2], c.ws[3], g);
        assertClose(await wt.grad!.data(), dw, {
          what: `${what} weight grad`,
          atol: 2e-5,
          rtol: 1e-4,
        });
        for (const t of [xt, wt, bt, y, dyt, xt.grad, wt.grad]) t?.dispose();
      }
    } finally {
      setConvTiles(null);
    }
  }
});

Deno.test("conv2d equals the float64 reference for random geometries and tiles (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 1, max: 2 }),
        cg: fc.integer({ min: 1, max: 5 }),
        og: fc.integer({ min: 1, max: 6 }),
        groups: fc.integer({ min: 1, max: 3 }),
        h: fc.integer({ min: 1, max: 9 }),
        w: fc.integer({ min: 1, max: 9 }),
        kh: fc.integer({ min: 1, max: 4 }),
        kw: fc.integer({ min: 1, max: 4 }),
        sh: fc.integer({ min: 1, max: 3 }),
        sw: fc.integer({ min: 1, max: 3 }),
        dil: fc.integer({ min: 1, max: 2 }),
        pad: fc.integer({ min: 0, max: 3 }),
        rm: fc.integer({ min: 1, max: 4 }),
        rn: fc.integer({ min: 1, max: 5 }),
        seed: fc.nat(1000),
      }),
      async (r) => {
        const xs = [r.n, r.cg * r.groups, r.h, r.w], ws = [r.og * r.groups, r.cg, r.kh, r.kw];
        const o = {
          stride: [r.sh, r.sw] as [number, number],
          padding: Math.min(r.pad, r.kh - 1, r.kw - 1),
          dilation: r.dil,
          groups: r.groups,
        };
        const g = geom(o);
        const OH = Math.floor((r.h + 2 * g.padding[0] - r.dil * (r.kh - 1) - 1) / r.sh) + 1;
        const OW = Math.floor((r.w + 2 * g.padding[1] - r.dil * (r.kw - 1) - 1) / r.sw) + 1;
        if (OH < 1 || OW < 1) return;
        const x = randArray(numel(xs), r.seed), w = randArray(numel(ws), r.seed + 1);
        setConvTiles({ ...convTiles(), fwd: { wg: 8, rm: r.rm, rn: r.rn } });
        try {
          const xt = tensor(x, xs), wt = tensor(w, ws);
          const y = F.conv2d(xt, wt, null, o);
          assertClose(await y.data(), conv2dRef(x, xs, w, ws, null, g).data, {
            what: `x[${xs}] w[${ws}] ${JSON.stringify(o)} rm${r.rm} rn${r.rn}`,
            atol: 1e-5,
            rtol: 1e-4,
          });
          for (const t of [xt, wt, y]) t.dispose();
        } finally {
          setConvTiles(null);
        }
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("conv2d and convTranspose2d gradients pass finite differences (input, weight, bias)", async () => {
  await gradCheck(
    (x, w, b) => F.conv2d(x, w, b, { stride: 2, padding: 1, dilation: [1, 2] }),
    [{ shape: [2, 3, 7, 6] }, { shape: [5, 3, 3, 2] }, { shape: [5] }],
  );
  await gradCheck(
    (x, w, b) => F.conv2d(x, w, b, { padding: [1, 0], groups: 2 }),
    [{ shape: [1, 4, 5, 5] }, { shape: [6, 2, 3, 3] }, { shape: [6] }],
  );
  // Unpadded 1×1 stride 2 (a ResNet downsample): the input gradient through the subsampled GEMM.
  await gradCheck(
    (x, w) => F.conv2d(x, w, null, { stride: 2 }),
    [{ shape: [2, 3, 5, 6] }, { shape: [4, 3, 1, 1] }],
  );
  await gradCheck(
    (x, w, b) => F.convTranspose2d(x, w, b, { stride: 2, padding: 1, outputPadding: 1 }),
    [{ shape: [2, 3, 4, 3] }, { shape: [3, 4, 3, 3] }, { shape: [4] }],
  );
  await gradCheck(
    (x, w, b) => F.convTranspose2d(x, w, b, { stride: 2 }),
    [{ shape: [1, 4, 3, 5] }, { shape: [4, 2, 2, 2] }, { shape: [2] }],
  );
});

Deno.test("conv2d accepts strided views (a permuted input) and their gradients flow back", async () => {
  const xs = [2, 3, 6, 5], ws = [4, 3, 3, 3];
  const x = randArray(numel(xs), 11), w = randArray(numel(ws), 12);
  // Stored as [N, H, C, W], viewed as [N, C, H, W].
  const xStored = new Float32Array(x.length);
  for (let n = 0; n < 2; n++) {
    for (let c = 0; c < 3; c++) {
      for (let h = 0; h < 6; h++) {
        for (let v = 0; v < 5; v++) {
          xStored[((n * 6 + h) * 3 + c) * 5 + v] = x[((n * 3 + c) * 6 + h) * 5 + v];
        }
      }
    }
  }
  const base = requireGrad(tensor(xStored, [2, 6, 3, 5]));
  const wt = tensor(w, ws);
  const y = F.conv2d(F.permute(base, [0, 2, 1, 3]), wt, null, { padding: 1 });
  const ref = conv2dRef(x, xs, w, ws, null, geom({ padding: 1 }));
  assertClose(await y.data(), ref.data, { what: "strided input", atol: 1e-5, rtol: 1e-4 });
  backward(F.sum(y));
  assert.deepStrictEqual(base.grad!.shape, [2, 6, 3, 5]);
  for (const t of [base, wt, y, base.grad]) t?.dispose();
});

Deno.test("conv ops reject bad shapes with errors naming the op and shapes", () => {
  const x = tensor(new Float32Array(2 * 3 * 5 * 5), [2, 3, 5, 5]);
  const w = tensor(new Float32Array(4 * 2 * 3 * 3), [4, 2, 3, 3]);
  const w7 = tensor(new Float32Array(4 * 3 * 7 * 7), [4, 3, 7, 7]);
  const b = tensor(new Float32Array(3), [3]);
  const wt = tensor(new Float32Array(3 * 2 * 3 * 3), [3, 2, 3, 3]);
  const bad: [() => Tensor, RegExp][] = [
    [() => F.conv2d(x, w), /conv2d: input \[2,3,5,5\] has 3 channels but weight \[4,2,3,3\]/],
    [() => F.conv2d(x, w7), /conv2d: input \[2,3,5,5\] is too small for kernel 7x7/],
    [() => F.conv2d(x, w, null, { groups: 2 }), /conv2d: groups=2 must divide/],
    [
      () => F.conv2d(x, tensor(new Float32Array(4 * 3 * 9), [4, 3, 3, 3]), b),
      /conv2d: bias \[3\] must have 4 elements/,
    ],
    [() => F.conv2d(x, w, null, { stride: 0 }), /conv2d: stride must be an integer >= 1/],
    [
      () => F.conv2d(tensor(new Float32Array(3), [3]), w),
      /conv2d: input must have rank 4, got \[3\]/,
    ],
    [
      () => F.convTranspose2d(x, w),
      /convTranspose2d: input \[2,3,5,5\] has 3 channels but weight \[4,2,3,3\] expects 4/,
    ],
    [
      () => F.convTranspose2d(x, wt, null, { stride: 2, outputPadding: 2 }),
      /convTranspose2d: outputPadding \(2,2\) must be smaller/,
    ],
  ];
  for (const [f, re] of bad) assert.throws(f, re);
  for (const t of [x, w, w7, b, wt]) t.dispose();
});
