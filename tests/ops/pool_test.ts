import fc from "fast-check";
import { backward, F, requireGrad, tensor } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import {
  adaptiveAvgPoolRef,
  avgPoolBackwardRef,
  avgPoolRef,
  maxPoolBackwardRef,
  maxPoolRef,
  type PoolGeom,
} from "../reference/pool.ts";

await setup();

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Distinct values (a shuffled ramp), so maxima are unique and finite differences stay inside. */
function distinct(n: number, seed: number, step = 0.1): Float32Array {
  const r = randArray(n, seed, 0, 1);
  const idx = [...Array(n).keys()].sort((a, b) => r[a] - r[b]);
  const out = new Float32Array(n);
  idx.forEach((k, i) => out[k] = (i - n / 2) * step);
  return out;
}

const geom = (k: number, s: number, p: number): PoolGeom => ({
  kh: k,
  kw: k,
  sh: s,
  sw: s,
  ph: p,
  pw: p,
});

Deno.test("maxPool2d forward/backward match float64 (ResNet 3x3 s2 p1 and others)", async () => {
  const cases: [number[], PoolGeom][] = [
    [[2, 3, 13, 11], geom(3, 2, 1)],
    [[1, 2, 112, 112], geom(3, 2, 1)],
    [[1, 1, 1, 1], geom(3, 2, 1)],
    [[2, 2, 7, 9], geom(2, 2, 0)],
    [[1, 3, 8, 5], { kh: 3, kw: 2, sh: 1, sw: 2, ph: 1, pw: 1 }],
    // Backward per block of sh×sw pixels: pixels no window covers (stride 3 > kernel 2), blocks
    // cut by the edge; stride 5 takes the per-pixel gather.
    [[1, 2, 11, 13], { kh: 2, kw: 2, sh: 3, sw: 3, ph: 0, pw: 0 }],
    [[2, 1, 12, 14], { kh: 5, kw: 4, sh: 4, sw: 3, ph: 2, pw: 1 }],
    [[1, 1, 12, 12], geom(5, 5, 2)],
  ];
  for (const [shape, g] of cases) {
    const x = randArray(numel(shape), numel(shape), -5, 5);
    const ref = maxPoolRef(x, shape, g);
    const xt = requireGrad(tensor(x, shape));
    const y = F.maxPool2d(xt, {
      kernel: [g.kh, g.kw],
      stride: [g.sh, g.sw],
      padding: [g.ph, g.pw],
    });
    if (y.shape.join() !== ref.shape.join()) {
      throw new Error(`shape [${y.shape}] != [${ref.shape}]`);
    }
    assertClose(await y.data(), ref.y, { what: `maxPool2d [${shape}]`, atol: 0, rtol: 0 });
    const gy = randArray(y.size, 9, -1, 1);
    backward(y, tensor(gy, y.shape));
    const dx = maxPoolBackwardRef(gy, ref.arg, shape, ref.shape[2] * ref.shape[3]);
    assertClose(await xt.grad!.data(), dx, { what: `maxPool2d dx [${shape}]`, atol: 1e-6 });
  }
});

Deno.test("maxPool2d pads with -inf: all-negative inputs never pick the padding", async () => {
  const x = tensor([-5, -4, -3, -2], [1, 1, 2, 2]);
  const y = F.maxPool2d(x, { kernel: 3, stride: 2, padding: 1 });
  assertClose(await y.data(), [-2], { atol: 0, rtol: 0 });
});

Deno.test("avgPool2d and adaptiveAvgPool2d match float64 forward and backward", async () => {
  const x = randArray(2 * 3 * 9 * 7, 3, -1, 1);
  const xt = tensor(x, [2, 3, 9, 7]);
  const a = F.avgPool2d(xt, { kernel: 3, stride: 2, padding: 1 });
  assertClose(await a.data(), avgPoolRef(x, [2, 3, 9, 7], geom(3, 2, 1)), {
    what: "avgPool2d",
    atol: 1e-6,
  });
  for (
    const [shape, out] of [
      [[2, 3, 9, 7], [1, 1]],
      [[1, 2, 10, 7], [3, 4]],
      [[1, 1, 3, 2], [5, 7]],
      [[2, 5, 32, 32], [1, 1]],
    ]
  ) {
    const xs = randArray(numel(shape), numel(shape), -1, 1);
    const gy = randArray(numel([shape[0], shape[1], ...out]), 4, -1, 1);
    const t = requireGrad(tensor(xs, shape));
    const y = F.adaptiveAvgPool2d(t, out as [number, number]);
    const ref = adaptiveAvgPoolRef(xs, shape, out, gy);
    assertClose(await y.data(), ref.y, {
      what: `adaptiveAvgPool2d [${shape}] → [${out}]`,
      atol: 1e-6,
    });
    backward(y, tensor(gy, y.shape));
    assertClose(await t.grad!.data(), ref.dx, {
      what: `adaptiveAvgPool2d dx [${shape}] → [${out}]`,
      atol: 1e-6,
    });
  }
});

Deno.test("maxPool2d output matches the reference for random geometries (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 0, max: 2 }),
      fc.integer({ min: 4, max: 12 }),
      fc.integer({ min: 4, max: 12 }),
      fc.nat(1000),
      async (k, s, p, H, W, seed) => {
        const pad = Math.min(p, Math.floor(k / 2));
        const shape = [2, 2, H, W];
        const x = randArray(numel(shape), seed, -3, 3);
        const xt = tensor(x, shape);
        const y = F.maxPool2d(xt, { kernel: k, stride: s, padding: pad });
        const ref = maxPoolRef(x, shape, geom(k, s, pad));
        assertClose(await y.data(), ref.y, {
          what: `k${k} s${s} p${pad} [${shape}]`,
          atol: 0,
          rtol: 0,
        });
        xt.dispose();
        y.dispose();
      },
    ),
    { numRuns: 10 },
  );
});

Deno.test("maxPool2d and avgPool2d forward and backward equal float64 for random windows (fast-check)", async () => {
  // Strides 1–6: the max-pool backward's block kernel (strides ≤ MAXPOOL_BLOCK_MAX_STRIDE = 4,
  // kernels/pool.ts) and its per-pixel gather past it, strides past the kernel (uncovered pixels),
  // unequal axes, planes down to 1×1. Distinct inputs (a shuffled ramp) keep each window's
  // maximum unique, so max pooling and its gradient are exact; the average's f32 sums of ≤ 25
  // terms of |x| ≤ 1 (or of gy/k² in backward) round by ≲ 1e-6: atol 1e-6, rtol 1e-5.
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 1, max: 2 }),
        c: fc.integer({ min: 1, max: 3 }),
        kh: fc.integer({ min: 1, max: 5 }),
        kw: fc.integer({ min: 1, max: 5 }),
        sh: fc.integer({ min: 1, max: 6 }),
        sw: fc.integer({ min: 1, max: 6 }),
        pad: fc.nat(2),
        h: fc.integer({ min: 1, max: 13 }),
        w: fc.integer({ min: 1, max: 13 }),
        seed: fc.nat(1000),
      }),
      async (r) => {
        const ph = Math.min(r.pad, r.kh >> 1), pw = Math.min(r.pad, r.kw >> 1);
        // Planes at least the window (less the padding) so there is an output.
        const H = Math.max(r.h, r.kh - 2 * ph), W = Math.max(r.w, r.kw - 2 * pw);
        const shape = [r.n, r.c, H, W];
        const g: PoolGeom = { kh: r.kh, kw: r.kw, sh: r.sh, sw: r.sw, ph, pw };
        const opts = {
          kernel: [r.kh, r.kw] as [number, number],
          stride: [r.sh, r.sw] as [number, number],
          padding: [ph, pw] as [number, number],
        };
        const what = `[${shape}] ${JSON.stringify(g)}`;
        const x = distinct(numel(shape), r.seed, 1 / numel(shape));
        const ref = maxPoolRef(x, shape, g);
        const gy = randArray(numel(ref.shape), r.seed + 1);
        const xm = requireGrad(tensor(x, shape)), xa = requireGrad(tensor(x, shape));
        const ym = F.maxPool2d(xm, opts), ya = F.avgPool2d(xa, opts);
        backward(ym, tensor(gy, ref.shape));
        backward(ya, tensor(gy, ref.shape));
        const exact = { atol: 0, rtol: 0 };
        assertClose(await ym.data(), ref.y, { ...exact, what: `maxPool2d ${what}` });
        const dxm = maxPoolBackwardRef(gy, ref.arg, shape, ref.shape[2] * ref.shape[3]);
        // Sums of at most ⌈k/s⌉² gradients land on one pixel: f32 rounding ≲ 1e-6.
        assertClose(await xm.grad!.data(), dxm, { atol: 1e-6, what: `maxPool2d dx ${what}` });
        const tol = { atol: 1e-6, rtol: 1e-5 };
        assertClose(await ya.data(), avgPoolRef(x, shape, g), {
          ...tol,
          what: `avgPool2d ${what}`,
        });
        assertClose(await xa.grad!.data(), avgPoolBackwardRef(gy, shape, g), {
          ...tol,
          what: `avgPool2d dx ${what}`,
        });
        for (const t of [xm.grad!, xa.grad!, xm, xa, ym, ya]) t.dispose();
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("adaptiveAvgPool2d forward and backward equal float64 for random sizes (fast-check)", async () => {
  // Output sizes below, equal to and above the input's (overlapping and repeated bins), global
  // pooling (the vec4 backward where H·W is a multiple of 4). Sums of ≤ 13 terms of |x| ≤ 1 per
  // axis: atol 1e-6, rtol 1e-5.
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 1, max: 2 }),
        c: fc.integer({ min: 1, max: 3 }),
        h: fc.integer({ min: 1, max: 13 }),
        w: fc.integer({ min: 1, max: 13 }),
        oh: fc.integer({ min: 1, max: 9 }),
        ow: fc.integer({ min: 1, max: 9 }),
        global: fc.boolean(),
        seed: fc.nat(1000),
      }),
      async (r) => {
        const shape = [r.n, r.c, r.h, r.w], out = r.global ? [1, 1] : [r.oh, r.ow];
        const x = randArray(numel(shape), r.seed);
        const gy = randArray(r.n * r.c * out[0] * out[1], r.seed + 1);
        const xt = requireGrad(tensor(x, shape));
        const y = F.adaptiveAvgPool2d(xt, out as [number, number]);
        backward(y, tensor(gy, y.shape));
        const ref = adaptiveAvgPoolRef(x, shape, out, gy);
        const what = `adaptiveAvgPool2d [${shape}] → [${out}]`;
        assertClose(await y.data(), ref.y, { what, atol: 1e-6, rtol: 1e-5 });
        assertClose(await xt.grad!.data(), ref.dx, { what: `${what} dx`, atol: 1e-6, rtol: 1e-5 });
        for (const t of [xt.grad!, xt, y]) t.dispose();
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("pooling gradients pass finite differences", async () => {
  await gradCheck((x) => F.maxPool2d(x, { kernel: 3, stride: 2, padding: 1 }), [
    { shape: [1, 2, 5, 6], data: distinct(60, 1) },
  ], { eps: 1e-3 });
  await gradCheck((x) => F.avgPool2d(x, { kernel: 3, stride: 2, padding: 1 }), [{
    shape: [2, 1, 5, 4],
  }]);
  await gradCheck((x) => F.adaptiveAvgPool2d(x, [2, 3]), [{ shape: [1, 2, 5, 7] }]);
  await gradCheck((x) => F.adaptiveAvgPool2d(x, [1, 1]), [{ shape: [2, 3, 4, 3] }]);
});

Deno.test("pooling rejects bad geometry with clear errors", () => {
  const x = tensor(new Float32Array(16), [1, 1, 4, 4]);
  const msg = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as Error).message;
    }
    return "";
  };
  for (
    const [m, re] of [
      [msg(() => F.maxPool2d(x, { kernel: 3, padding: 2 })), /maxPool2d.*half the kernel/],
      [msg(() => F.maxPool2d(tensor([1, 2], [2]), { kernel: 1 })), /maxPool2d.*NCHW.*\[2\]/],
      [msg(() => F.maxPool2d(x, { kernel: 5 })), /too small/],
      [msg(() => F.adaptiveAvgPool2d(x, [0, 1])), /adaptiveAvgPool2d/],
    ] as const
  ) {
    if (!re.test(m)) throw new Error(`expected ${re}, got "${m}"`);
  }
});
