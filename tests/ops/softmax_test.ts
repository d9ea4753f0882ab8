import fc from "fast-check";
import { backward, F, requireGrad, tensor } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { softmaxRef } from "../reference/softmax.ts";

await setup();

Deno.test("softmax / logSoftmax match float64 along every axis of awkward shapes", async () => {
  const cases: [number[], number][] = [
    [[3, 4099], -1], // rows longer than a workgroup
    [[5, 1], -1], // rows of one element
    [[2, 7, 13], 1], // middle axis, short rows (thread per row)
    [[2, 37, 3], 1], // middle axis, workgroup per row
    [[2, 300, 33], 1], // channel softmax of an image: thread per row, strided
    [[11, 5], 0],
    [[1, 100000], -1],
    [[97], 0],
  ];
  for (const [shape, axis] of cases) {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = randArray(n, n + axis, -20, 20);
    const xt = tensor(x, shape);
    for (const log of [false, true]) {
      const y = log ? F.logSoftmax(xt, axis) : F.softmax(xt, axis);
      assertClose(await y.data(), softmaxRef(x, shape, axis, log), {
        what: `${log ? "logSoftmax" : "softmax"} [${shape}] axis ${axis}`,
        atol: log ? 2e-5 : 1e-6,
        rtol: 1e-4,
      });
      y.dispose();
    }
    xt.dispose();
  }
});

Deno.test("softmax is stable for huge logits and rows sum to one (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 5 }),
      fc.integer({ min: 1, max: 300 }),
      fc.double({ min: -1e4, max: 1e4, noNaN: true }),
      fc.nat(1000),
      async (rows, len, shift, seed) => {
        const x = randArray(rows * len, seed, -30, 30).map((v) => v + shift);
        const xt = tensor(x, [rows, len]);
        const y = F.softmax(xt);
        const v = await y.data();
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let k = 0; k < len; k++) {
            if (!Number.isFinite(v[r * len + k])) {
              throw new Error(`non-finite softmax at ${r},${k}`);
            }
            s += v[r * len + k];
          }
          if (Math.abs(s - 1) > 1e-4) throw new Error(`row ${r} sums to ${s}`);
        }
        xt.dispose();
        y.dispose();
      },
    ),
    { numRuns: 10 },
  );
});

Deno.test("softmax / logSoftmax gradients pass finite differences", async () => {
  await gradCheck((x) => F.softmax(x), [{ shape: [3, 5] }]);
  await gradCheck((x) => F.softmax(x, 1), [{ shape: [2, 40, 3] }], { eps: 1e-2 });
  await gradCheck((x) => F.logSoftmax(x), [{ shape: [2, 70] }]);
  await gradCheck((x) => F.logSoftmax(x, 0), [{ shape: [4, 3] }]);
});

Deno.test("softmax backward of a one-hot gradient matches the analytic Jacobian", async () => {
  const x = randArray(6, 3, -2, 2);
  const xt = requireGrad(tensor(x, [6]));
  const y = F.softmax(xt);
  const g = new Float32Array(6);
  g[2] = 1;
  backward(y, tensor(g, [6]));
  const s = softmaxRef(x, [6], 0);
  assertClose(await xt.grad!.data(), Array.from(s, (v, i) => (i === 2 ? v * (1 - v) : -v * s[2])), {
    atol: 1e-6,
  });
});

Deno.test("softmax rejects bad axes with a clear error", () => {
  const x = tensor([1, 2, 3], [3]);
  let msg = "";
  try {
    F.softmax(x, 2);
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!/softmax/.test(msg) || !/axis 2/.test(msg)) throw new Error(`unclear error: ${msg}`);
});
