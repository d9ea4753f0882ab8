import assert from "node:assert/strict";
import fc from "fast-check";
import { F, type Tensor, tensor } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { reduceRef, type RefReduceOp } from "../reference/reduce.ts";
import { stridesOf } from "../reference/shape.ts";

await setup();

/** Host copy of `data` (row-major `shape`) permuted by `perm`. */
function permuteHost(data: Float32Array, shape: number[], perm: number[]): Float32Array {
  const st = stridesOf(shape);
  const outShape = perm.map((p) => shape[p]);
  const out = new Float32Array(data.length);
  for (let i = 0; i < out.length; i++) {
    let rem = i, off = 0;
    for (let d = outShape.length - 1; d >= 0; d--) {
      off += (rem % outShape[d]) * st[perm[d]];
      rem = Math.floor(rem / outShape[d]);
    }
    out[i] = data[off];
  }
  return out;
}

function run(op: RefReduceOp, x: Tensor, axes: number[] | undefined, keepdim: boolean): Tensor {
  switch (op) {
    case "sum":
      return F.sum(x, axes, keepdim);
    case "mean":
      return F.mean(x, axes, keepdim);
    case "max":
      return F.max(x, axes, keepdim);
    case "min":
      return F.min(x, axes, keepdim);
    case "var":
      return F.variance(x, axes, { keepdim });
    case "argmax":
      return F.argmax(x, axes![0], keepdim);
    case "argmin":
      return F.argmin(x, axes![0], keepdim);
  }
}

async function checkReduce(
  op: RefReduceOp,
  data: Float32Array,
  shape: number[],
  axes: number[] | undefined,
  keepdim: boolean,
  x: Tensor = tensor(data, shape),
): Promise<void> {
  const y = run(op, x, axes, keepdim);
  const ref = reduceRef(op, data, shape, axes, { keepdim });
  const what = `${op} of [${shape}] over ${axes ? `[${axes}]` : "all"} keepdim=${keepdim}`;
  assert.deepEqual(y.shape, ref.shape, what);
  const got = await y.data();
  if (op === "argmax" || op === "argmin") {
    assert.equal(y.dtype, "i32", what);
    assert.deepEqual([...got], [...ref.data], what);
  } else {
    const inner = data.length / Math.max(1, ref.data.length);
    assertClose(got, ref.data, {
      atol: 2e-6 * Math.max(1, Math.sqrt(inner)) * 4,
      rtol: 1e-5,
      what,
    });
  }
  y.dispose();
}

const shapeArb = fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 });

Deno.test("reductions over any axes set, keepdim both ways, match float64 (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      shapeArb,
      fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      fc.boolean(),
      fc.boolean(),
      fc.nat(10_000),
      async (shape, pick, keepdim, negative, seed) => {
        let axes = shape.map((_, i) => i).filter((i) => pick[i]);
        if (!axes.length) axes = [seed % shape.length];
        if (negative) axes = axes.map((a) => a - shape.length);
        const data = randArray(shape.reduce((a, b) => a * b, 1), seed, -3, 3);
        const x = tensor(data, shape);
        for (const op of ["sum", "mean", "max", "min", "var"] as const) {
          if (
            op === "var" &&
            axes.reduce((p, a) => p * shape[(a + shape.length) % shape.length], 1) < 2
          ) continue;
          await checkReduce(op, data, shape, axes, keepdim, x);
        }
        for (const op of ["argmax", "argmin"] as const) {
          await checkReduce(op, data, shape, [axes[0]], keepdim, x);
        }
        await checkReduce("sum", data, shape, undefined, keepdim, x);
        x.dispose();
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("reductions of strided (permuted, sliced) inputs read through the strides", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 2, maxLength: 4 }),
      fc.nat(10_000),
      fc.boolean(),
      async (shape, seed, keepdim) => {
        const perm = shape.map((_, i) => i).sort((a, b) =>
          ((a * 7919 + seed) % 13) - ((b * 7919 + seed) % 13)
        );
        const data = randArray(shape.reduce((a, b) => a * b, 1), seed);
        const base = tensor(data, shape);
        const x = F.permute(base, perm);
        const host = permuteHost(data, shape, perm);
        const pshape = perm.map((p) => shape[p]);
        const axes = [seed % pshape.length];
        for (const op of ["sum", "max", "argmin"] as const) {
          await checkReduce(op, host, pshape, axes, keepdim, x);
        }
        await checkReduce("mean", host, pshape, undefined, keepdim, x);
        x.dispose();
        base.dispose();
      },
    ),
    { numRuns: 15 },
  );
  // A stepped slice: every other column of an offset window.
  const data = randArray(8 * 9, 3);
  const t = tensor(data, [8, 9]);
  const s = F.slice(F.slice(t, 1, 1, 9, 2), 0, 2, 7);
  const host = new Float32Array(5 * 4);
  for (let i = 0; i < 5; i++) {
    for (let j = 0; j < 4; j++) host[i * 4 + j] = data[(i + 2) * 9 + 1 + 2 * j];
  }
  await checkReduce("sum", host, [5, 4], [1], false, s);
  await checkReduce("max", host, [5, 4], [0], true, s);
  t.dispose();
});

Deno.test("large rows use the workgroup path; many tiny rows the per-thread path", async () => {
  const cases: [number[], number[]][] = [
    [[1, 10007], [1]],
    [[3, 70000], [1]],
    [[10007, 3], [0]], // large strided inner
    [[3000, 40], [1]], // many outputs, inner 40: one thread per output
    [[5, 40], [1]], // few outputs, inner 40: a workgroup per output
    [[4100, 2], [1]],
    [[2, 3, 257], [0, 2]],
    // ADL's channel mean: 2·8·8 outputs of 2048 over a strided dim (a thread per output on
    // software adapters, a running offset), and 2·5·5 outputs (a workgroup each everywhere).
    [[2, 2048, 8, 8], [1]],
    [[2, 300, 5, 5], [1]],
    [[2, 5000, 4, 4], [1]], // past 4096: a workgroup per output on software adapters too
  ];
  for (const [shape, axes] of cases) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = randArray(n, n % 97, -1, 1);
    // A unique extremum somewhere deep in the row tests argmax/argmin across threads.
    data[n - 5] = 5;
    data[Math.floor(n / 3)] = -5;
    const x = tensor(data, shape);
    for (const op of ["sum", "mean", "max", "min", "var"] as const) {
      await checkReduce(op, data, shape, axes, false, x);
    }
    if (axes.length === 1) {
      for (const op of ["argmax", "argmin"] as const) {
        await checkReduce(op, data, shape, axes, true, x);
      }
    }
    x.dispose();
  }
});

Deno.test("argmax/argmin return the first index on ties; constant input gives no NaN", async () => {
  const x = tensor([1, 3, 3, 0, 0, 2], [2, 3]);
  assert.deepEqual([...(await F.argmax(x, 1).data())], [1, 2]);
  assert.deepEqual([...(await F.argmin(x, 1).data())], [0, 0]);
  assert.deepEqual([...(await F.argmax(x, 0).data())], [0, 0, 0]);
  for (const [shape, c] of [[[1, 10007], 0.1], [[300, 7], -2.5], [[64], 1e3]] as const) {
    const n = shape.reduce((a: number, b: number) => a * b, 1);
    const t = tensor(new Float32Array(n).fill(c), shape as unknown as number[]);
    for (const y of [F.variance(t, -1), F.mean(t, -1), F.max(t, -1), F.min(t), F.sum(t)]) {
      const v = await y.data();
      assert.ok(v.every((e) => Number.isFinite(e)), `finite on constant input [${shape}]`);
      y.dispose();
    }
    const v = await F.variance(t, -1).data();
    assert.ok(
      v.every((e) => Math.abs(e) < 1e-6 * Math.max(1, c * c)),
      "variance of a constant is ~0",
    );
    assert.ok((await F.argmax(t, -1).data()).every((i) => i === 0));
    t.dispose();
  }
  assert.throws(() => F.max(tensor(new Float32Array(0), [2, 0]), 1), /empty dimension/);
  x.dispose();
});

Deno.test("variance: correction 0 and 1, keepdim", async () => {
  const data = randArray(4 * 6, 11);
  const x = tensor(data, [4, 6]);
  for (const correction of [0, 1]) {
    const y = F.variance(x, 1, { correction, keepdim: true });
    assert.deepEqual(y.shape, [4, 1]);
    assertClose(await y.data(), reduceRef("var", data, [4, 6], [1], { correction }).data, {
      atol: 1e-6,
    });
    y.dispose();
  }
  x.dispose();
});

Deno.test("gradients of sum, mean, max, min and variance pass finite differences", async () => {
  await gradCheck((a) => F.sum(a, [0, 2]), [{ shape: [3, 4, 5] }]);
  await gradCheck((a) => F.mean(a, 1, true), [{ shape: [2, 7] }]);
  await gradCheck((a) => F.variance(a, [1, 2]), [{ shape: [2, 3, 4] }]);
  // Distinct values spaced 0.1 apart, so ±eps never changes which element is the extremum.
  const spaced = (n: number, seed: number) => {
    const v = Float32Array.from({ length: n }, (_, i) => (i - n / 2) * 0.1);
    const r = randArray(n, seed);
    const idx = [...v.keys()].sort((a, b) => r[a] - r[b]);
    return Float32Array.from(idx, (i) => v[i]);
  };
  await gradCheck((a) => F.max(a, 1), [{ shape: [3, 6], data: spaced(18, 1) }], { eps: 1e-2 });
  await gradCheck((a) => F.min(a, [0, 1]), [{ shape: [3, 6], data: spaced(18, 2) }], { eps: 1e-2 });
  // Ties share the gradient evenly (torch.amax).
  const { backward, requireGrad } = await import("../../engine/mod.ts");
  const t = requireGrad(tensor([2, 5, 5, 1]));
  const m = F.max(t);
  backward(m);
  assertClose(await t.grad!.data(), [0, 0.5, 0.5, 0]);
  t.grad!.dispose();
  t.dispose();
  m.dispose();
});

Deno.test("rows over REDUCE_CHUNK elements reduce in chunks (llvmpipe ends loops after 65535 iterations)", async () => {
  const { REDUCE_CHUNK } = await import("../../engine/ops/reduce.ts");
  const n = REDUCE_CHUNK + 4099;
  const data = randArray(2 * n, 5, -1, 1);
  data[n + 17] = 9; // the max of row 1 in its first chunk
  data[n - 3] = -9; // the min of row 0 in its last chunk
  const x = tensor(data, [2, n]);
  for (const op of ["sum", "max", "min", "mean"] as const) {
    await checkReduce(op, data, [2, n], [1], false, x);
  }
  await checkReduce("sum", data, [2, n], undefined, true, x);
  // Strided: reduce over axis 0 of the transpose.
  const xt = F.transpose(x);
  const host = permuteHost(data, [2, n], [1, 0]);
  await checkReduce("max", host, [n, 2], [0], false, xt);
  assert.throws(() => F.argmax(x, 1), /elements per output exceed/);
  x.dispose();
});
