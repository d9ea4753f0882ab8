import fc from "fast-check";
import { backward, F, noGrad, requireGrad, type Tensor, tensor } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { batchNormBackwardRef, batchNormRef, layerNormRowsRef } from "../reference/norm.ts";
import assert from "node:assert";

await setup();

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

function throwsWith(fn: () => unknown, ...patterns: RegExp[]): void {
  let msg = "";
  try {
    fn();
  } catch (e) {
    msg = (e as Error).message;
  }
  for (const p of patterns) {
    if (!p.test(msg)) throw new Error(`expected an error matching ${p}, got "${msg}"`);
  }
}

Deno.test("batchNorm2d training matches float64 and updates running stats like PyTorch", async () => {
  // [2, 3, 4, 6], [3, 5, 24, 20]: planes of a multiple of 4 take the vec4 kernels (statistics,
  // normalise, backward); the latter has more vec4s per channel (360) than a workgroup has lanes.
  const shapes = [
    [2, 3, 5, 7],
    [3, 5, 1, 1],
    [2, 4, 67, 67],
    [1, 2, 1, 2],
    [2, 3, 4, 6],
    [3, 5, 24, 20],
  ];
  for (const shape of shapes) {
    const C = shape[1];
    // An offset far from zero checks the statistics do not cancel.
    const x = randArray(numel(shape), numel(shape), 99, 101);
    const w = randArray(C, 5, 0.5, 1.5), b = randArray(C, 6, -1, 1);
    const rm0 = randArray(C, 7, -1, 1), rv0 = randArray(C, 8, 0.5, 2);
    const rm = tensor(rm0), rv = tensor(rv0);
    const xt = tensor(x, shape), wt = tensor(w), bt = tensor(b);
    const y = F.batchNorm2d(xt, {
      weight: wt,
      bias: bt,
      runningMean: rm,
      runningVar: rv,
      training: true,
    });
    const ref = batchNormRef(x, shape, { weight: w, bias: b, eps: 1e-5 });
    assertClose(await y.data(), ref.y, { what: `bn train y [${shape}]`, atol: 5e-4, rtol: 1e-3 });
    assertClose(await rm.data(), Array.from(rm0, (v, c) => 0.9 * v + 0.1 * ref.mean[c]), {
      what: "running mean",
      atol: 1e-4,
    });
    assertClose(await rv.data(), Array.from(rv0, (v, c) => 0.9 * v + 0.1 * ref.varUnbiased[c]), {
      what: "running var (unbiased)",
      atol: 1e-4,
      rtol: 1e-3,
    });
    for (const t of [y, rm, rv, xt, wt, bt]) t.dispose();
  }
});

Deno.test("batchNorm2d eval uses running stats; no weight/bias and momentum work", async () => {
  const shape = [3, 6, 4, 5];
  const x = randArray(numel(shape), 11, -2, 2);
  const rm0 = randArray(6, 12, -1, 1), rv0 = randArray(6, 13, 0.2, 2);
  const rm = tensor(rm0), rv = tensor(rv0), xt = tensor(x, shape);
  const y = F.batchNorm2d(xt, { runningMean: rm, runningVar: rv, training: false, eps: 1e-3 });
  const ref = batchNormRef(x, shape, { mean: rm0, var: rv0, eps: 1e-3 });
  assertClose(await y.data(), ref.y, { what: "bn eval", atol: 1e-5 });
  assertClose(await rm.data(), rm0, { what: "eval leaves running mean", atol: 0, rtol: 0 });
  // Training without affine params and with another momentum.
  const y2 = F.batchNorm2d(xt, { runningMean: rm, runningVar: rv, training: true, momentum: 0.3 });
  const r2 = batchNormRef(x, shape, { eps: 1e-5 });
  assertClose(await y2.data(), r2.y, { what: "bn train no affine", atol: 1e-4 });
  assertClose(await rv.data(), Array.from(rv0, (v, c) => 0.7 * v + 0.3 * r2.varUnbiased[c]), {
    what: "momentum 0.3",
    atol: 1e-5,
  });
  // Training without running stats (torch allows it).
  const y3 = F.batchNorm2d(xt, { training: true });
  assertClose(await y3.data(), r2.y, { what: "bn train no running stats", atol: 1e-4 });
});

Deno.test("batchNorm2d training backward matches float64 (dx, dweight, dbias)", async () => {
  for (const shape of [[2, 3, 5, 7], [4, 2, 33, 31], [3, 5, 24, 20]]) {
    const C = shape[1];
    const x = randArray(numel(shape), 21, -2, 3), g = randArray(numel(shape), 22, -1, 1);
    const w = randArray(C, 23, 0.5, 1.5);
    const xt = requireGrad(tensor(x, shape)),
      wt = requireGrad(tensor(w)),
      bt = requireGrad(tensor(new Float32Array(C)));
    const y = F.batchNorm2d(xt, { weight: wt, bias: bt, training: true });
    backward(y, tensor(g, shape));
    const ref = batchNormBackwardRef(x, g, shape, w, 1e-5);
    assertClose(await xt.grad!.data(), ref.dx, {
      what: `bn dx [${shape}]`,
      atol: 2e-5,
      rtol: 1e-3,
    });
    assertClose(await wt.grad!.data(), ref.dw, { what: "bn dweight", atol: 1e-3, rtol: 1e-4 });
    assertClose(await bt.grad!.data(), ref.db, { what: "bn dbias", atol: 1e-3, rtol: 1e-4 });
  }
});

Deno.test("batchNorm2d gradients pass finite differences (training and eval, x/weight/bias)", async () => {
  await gradCheck(
    (x, w, b) => F.batchNorm2d(x, { weight: w, bias: b, training: true }),
    [{ shape: [2, 3, 3, 2] }, { shape: [3], lo: 0.5, hi: 1.5 }, { shape: [3] }],
    { coords: 6 },
  );
  const rm = tensor([0.1, -0.2, 0.3]), rv = tensor([0.5, 1.5, 2]);
  await gradCheck(
    (x, w, b) =>
      F.batchNorm2d(x, { weight: w, bias: b, runningMean: rm, runningVar: rv, training: false }),
    [{ shape: [2, 3, 2, 3] }, { shape: [3] }, { shape: [3] }],
    { coords: 6 },
  );
  await gradCheck((x) => F.batchNorm2d(x, { training: true }), [{ shape: [3, 2, 1, 3] }]);
  // Planes of 4 values: the vec4 statistics and backward sums.
  await gradCheck(
    (x, w) => F.batchNorm2d(x, { weight: w, training: true }),
    [{ shape: [2, 3, 2, 2] }, { shape: [3], lo: 0.5, hi: 1.5 }],
    { coords: 6 },
  );
});

Deno.test("batchNorm2d rejects bad inputs with clear errors", () => {
  const x = tensor(new Float32Array(24), [2, 3, 2, 2]);
  throwsWith(
    () => F.batchNorm2d(x, { weight: tensor([1, 1]), training: true }),
    /batchNorm2d/,
    /weight/,
    /\[2\]/,
    /\[3\]/,
  );
  throwsWith(() => F.batchNorm2d(x, { training: false }), /eval mode needs runningMean/);
  throwsWith(
    () => F.batchNorm2d(tensor([1, 2], [1, 2, 1, 1]), { training: true }),
    /more than 1 value per channel/,
  );
  throwsWith(() => F.batchNorm2d(tensor([1, 2], [2]), { training: true }), /NCHW/, /\[2\]/);
});

async function lnCheck(
  label: string,
  run: (x: Tensor, w?: Tensor, b?: Tensor) => Tensor,
  shape: number[],
  rows: number,
  L: number,
  inner: number,
  affine: boolean,
  eps: number,
) {
  const x = randArray(numel(shape), rows + L, -3, 5), g = randArray(numel(shape), 77, -1, 1);
  const w = affine ? randArray(L, 3, 0.5, 1.5) : undefined;
  const b = affine ? randArray(L, 4, -1, 1) : undefined;
  const xt = requireGrad(tensor(x, shape));
  const wt = w ? requireGrad(tensor(w)) : undefined, bt = b ? requireGrad(tensor(b)) : undefined;
  const y = run(xt, wt, bt);
  const ref = layerNormRowsRef(x, rows, L, inner, w, b, eps, g);
  assertClose(await y.data(), ref.y, { what: `${label} y`, atol: 1e-4, rtol: 1e-4 });
  backward(y, tensor(g, shape));
  assertClose(await xt.grad!.data(), ref.dx, { what: `${label} dx`, atol: 1e-4, rtol: 1e-3 });
  if (wt) {
    assertClose(await wt.grad!.data(), ref.dw, { what: `${label} dw`, atol: 1e-3, rtol: 1e-4 });
  }
  if (bt) {
    assertClose(await bt.grad!.data(), ref.db, { what: `${label} db`, atol: 1e-3, rtol: 1e-4 });
  }
}

Deno.test("layerNorm forward and backward match float64 on awkward shapes", async () => {
  const cases: [number[], number[], boolean, number][] = [
    [[3, 4099], [4099], true, 1e-5], // rows longer than a workgroup
    [[2, 3, 5], [3, 5], true, 1e-6], // two normalised dims
    [[7, 1], [1], true, 1e-5], // rows of one element: y = bias
    [[5, 40], [40], false, 1e-5],
    [[1, 13], [13], true, 1e-5],
  ];
  for (const [shape, ns, affine, eps] of cases) {
    const L = numel(ns);
    await lnCheck(
      `layerNorm [${shape}] over [${ns}]`,
      (x, w, b) => F.layerNorm(x, ns, w && F.reshape(w, ns), b && F.reshape(b, ns), eps),
      shape,
      numel(shape) / L,
      L,
      1,
      affine,
      eps,
    );
  }
});

Deno.test("layerNorm2d (SAM) forward and backward match float64 in both row modes", async () => {
  for (const shape of [[2, 40, 3, 5], [1, 96, 8, 8], [2, 3, 4, 5], [1, 1, 2, 3]]) {
    const [N, C, H, W] = shape;
    await lnCheck(
      `layerNorm2d [${shape}]`,
      (x, w, b) => F.layerNorm2d(x, w, b, 1e-6),
      shape,
      N * H * W,
      C,
      H * W,
      true,
      1e-6,
    );
  }
});

Deno.test("layerNorm of shifted random rows matches float64 (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 2, max: 600 }),
      fc.double({ min: -1000, max: 1000, noNaN: true }),
      fc.nat(1000),
      async (rows, L, shift, seed) => {
        const x = randArray(rows * L, seed, -2, 2).map((v) => v + shift);
        const xt = tensor(x, [rows, L]);
        const y = noGrad(() => F.layerNorm(xt, [L], undefined, undefined, 1e-6));
        const v = await y.data();
        const ref = layerNormRowsRef(x, rows, L, 1, undefined, undefined, 1e-6);
        assertClose(v, ref.y, {
          what: `layerNorm [${rows}, ${L}] + ${shift}`,
          atol: 2e-3,
          rtol: 1e-3,
        });
        xt.dispose();
        y.dispose();
      },
    ),
    { numRuns: 10 },
  );
});

Deno.test("layerNorm / layerNorm2d gradients pass finite differences (x, weight, bias)", async () => {
  await gradCheck(
    (x, w, b) => F.layerNorm(x, [5], w, b),
    [{ shape: [3, 5] }, { shape: [5], lo: 0.5, hi: 1.5 }, { shape: [5] }],
    { coords: 6 },
  );
  await gradCheck(
    (x, w, b) => F.layerNorm2d(x, w, b),
    [{ shape: [2, 4, 2, 3] }, { shape: [4], lo: 0.5, hi: 1.5 }, { shape: [4] }],
    { coords: 6 },
  );
  await gradCheck((x) => F.layerNorm(x, [2, 3]), [{ shape: [2, 2, 3] }]);
});

Deno.test("layerNorm rejects mismatched shapes with clear errors", () => {
  const x = tensor(new Float32Array(12), [3, 4]);
  throwsWith(() => F.layerNorm(x, [3]), /layerNorm/, /\[3\]/, /\[3, 4\]/);
  throwsWith(() => F.layerNorm(x, [4], tensor([1, 1, 1])), /weight/, /\[3\]/);
  throwsWith(() => F.layerNorm2d(x, tensor([1])), /layerNorm2d/, /NCHW/);
});

Deno.test("batchNorm2d with relu (and residual): bitwise relu(batchNorm2d (+ r)), gradients too", async () => {
  const { setBindingLimitForTests } = await import("../../engine/routing.ts");
  const cases: [number[], boolean, number | null, boolean][] = [
    [[2, 3, 5, 7], true, null, false], // odd planes: scalar kernels
    [[3, 5, 8, 4], true, null, false], // planes of 32: vec4 kernels
    [[3, 5, 8, 4], true, 5 * 32 * 4 + 256, false], // a sample per binding: split sums
    [[2, 3, 4, 4], false, null, false], // eval: the mask as a pass of its own
    [[2, 3, 5, 7], true, null, true], // + residual (a bottleneck's bn3)
    [[3, 5, 8, 4], true, 5 * 32 * 4 + 256, true],
    [[2, 3, 4, 4], false, null, true],
  ];
  for (const [shape, training, limit, withRes] of cases) {
    const C = shape[1];
    const x = randArray(numel(shape), 31, -2, 2), g = randArray(numel(shape), 32, -1, 1);
    const r = randArray(numel(shape), 35, -1, 1);
    const w = randArray(C, 33, 0.5, 1.5), b = randArray(C, 34, -0.3, 0.3);
    const run = async (fused: boolean) => {
      const xt = requireGrad(tensor(x, shape)), wt = requireGrad(tensor(w));
      const bt = requireGrad(tensor(b)), rt = requireGrad(tensor(r, shape));
      const rm = tensor(new Float32Array(C).fill(0.1)), rv = tensor(new Float32Array(C).fill(1.5));
      const opts = { weight: wt, bias: bt, training, runningMean: rm, runningVar: rv };
      const residual = withRes ? rt : undefined;
      const y = fused
        ? F.batchNorm2d(xt, { ...opts, relu: true, residual })
        : F.relu(residual ? F.add(F.batchNorm2d(xt, opts), rt) : F.batchNorm2d(xt, opts));
      backward(y, tensor(g, shape));
      const out = [y, xt.grad!, wt.grad!, bt.grad!];
      if (residual) out.push(rt.grad!);
      const data = await Promise.all(out.map((t) => t.data()));
      for (const t of [xt, wt, bt, rt, rm, rv, ...out]) t.dispose();
      return data;
    };
    setBindingLimitForTests(limit);
    try {
      const [a, f] = [await run(false), await run(true)];
      const names = ["y", "dx", "dweight", "dbias", "dresidual"];
      a.forEach((v, i) =>
        assert.deepStrictEqual(f[i], v, `[${shape}] training ${training}: ${names[i]} differs`)
      );
      assert.ok(a[0].some((v) => v === 0) && a[1].some((v) => v !== 0), "mask and gradient live");
    } finally {
      setBindingLimitForTests(null);
    }
  }
  await gradCheck(
    (x, w, b) => F.batchNorm2d(x, { weight: w, bias: b, training: true, relu: true }),
    [{ shape: [2, 3, 2, 2] }, { shape: [3], lo: 0.5, hi: 1.5 }, { shape: [3] }],
    { coords: 6 },
  );
  await gradCheck(
    (x, w, r) => F.batchNorm2d(x, { weight: w, training: true, relu: true, residual: r }),
    [{ shape: [2, 3, 2, 2] }, { shape: [3], lo: 0.5, hi: 1.5 }, { shape: [2, 3, 2, 2] }],
    { coords: 6 },
  );
});

Deno.test("batchNorm2d with relu / residual equals float64 for random shapes, training and eval (fast-check)", async () => {
  // The fused options against the float64 reference directly (the test above compares them with
  // the unfused ops bit for bit): y = relu(bn(x) [+ r]); backward through the mask the kernel
  // applied (y > 0 from the GPU, so a pre-activation within rounding of 0 cannot flip it), then
  // batchNormBackwardRef (training) or the affine map of the running statistics (eval).
  // Tolerances as this file's BatchNorm tests: y atol 5e-4 rtol 1e-3 (f32 batch statistics),
  // dx atol 1e-4 rtol 1e-3, dweight / dbias sums over ≤ 3·49 pixels atol 1e-3 rtol 1e-4.
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 1, max: 3 }),
        c: fc.integer({ min: 1, max: 5 }),
        h: fc.integer({ min: 1, max: 7 }),
        w: fc.integer({ min: 2, max: 7 }),
        training: fc.boolean(),
        residual: fc.boolean(),
        seed: fc.nat(1000),
      }),
      async (r) => {
        const shape = [r.n, r.c, r.h, r.w], C = r.c, HW = r.h * r.w, eps = 1e-5;
        const x = randArray(numel(shape), r.seed, -2, 2), g = randArray(numel(shape), r.seed + 1);
        const res = randArray(numel(shape), r.seed + 2);
        const w = randArray(C, r.seed + 3, 0.5, 1.5), b = randArray(C, r.seed + 4, -0.3, 0.3);
        const rm0 = randArray(C, r.seed + 5, -0.5, 0.5), rv0 = randArray(C, r.seed + 6, 0.5, 2);
        const xt = requireGrad(tensor(x, shape)), wt = requireGrad(tensor(w));
        const bt = requireGrad(tensor(b)), rt = requireGrad(tensor(res, shape));
        const rm = tensor(rm0), rv = tensor(rv0);
        const y = F.batchNorm2d(xt, {
          weight: wt,
          bias: bt,
          training: r.training,
          runningMean: rm,
          runningVar: rv,
          relu: true,
          residual: r.residual ? rt : undefined,
        });
        backward(y, tensor(g, shape));
        const what = `[${shape}] training ${r.training} residual ${r.residual}`;
        const bn = batchNormRef(x, shape, {
          weight: w,
          bias: b,
          eps,
          ...(r.training ? {} : { mean: rm0, var: rv0 }),
        }).y;
        const yRef = bn.map((v, i) => Math.max(0, v + (r.residual ? res[i] : 0)));
        const yGot = await y.data() as Float32Array;
        assertClose(yGot, yRef, { what: `${what} y`, atol: 5e-4, rtol: 1e-3 });
        const gm = g.map((v, i) => yGot[i] > 0 ? v : 0);
        let ref: { dx: Float64Array; dw: Float64Array; db: Float64Array };
        if (r.training) ref = batchNormBackwardRef(x, gm, shape, w, eps);
        else {
          ref = {
            dx: new Float64Array(x.length),
            dw: new Float64Array(C),
            db: new Float64Array(C),
          };
          for (let i = 0; i < x.length; i++) {
            const ch = Math.floor(i / HW) % C, is = 1 / Math.sqrt(rv0[ch] + eps);
            ref.dx[i] = gm[i] * w[ch] * is;
            ref.dw[ch] += gm[i] * (x[i] - rm0[ch]) * is;
            ref.db[ch] += gm[i];
          }
        }
        assertClose(await xt.grad!.data(), ref.dx, { what: `${what} dx`, atol: 1e-4, rtol: 1e-3 });
        assertClose(await wt.grad!.data(), ref.dw, { what: `${what} dw`, atol: 1e-3, rtol: 1e-4 });
        assertClose(await bt.grad!.data(), ref.db, { what: `${what} db`, atol: 1e-3, rtol: 1e-4 });
        if (r.residual) {
          assertClose(await rt.grad!.data(), gm, { what: `${what} dresidual`, atol: 0, rtol: 0 });
        }
        for (const t of [xt.grad, wt.grad, bt.grad, rt.grad, xt, wt, bt, rt, rm, rv, y]) {
          t?.dispose();
        }
      },
    ),
    { numRuns: 20 },
  );
});
