import fc from "fast-check";
import { backward, F, requireGrad, tensor } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { bilinearAARef, bilinearRef } from "../reference/resize.ts";

await setup();

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

async function check(shape: number[], out: [number, number], alignCorners: boolean, grad = true) {
  const [N, C] = shape;
  const x = randArray(numel(shape), numel(shape) + out[0], -1, 1);
  const gy = randArray(N * C * out[0] * out[1], 17, -1, 1);
  const ref = bilinearRef(x, shape, out, alignCorners, grad ? gy : undefined);
  const xt = requireGrad(tensor(x, shape));
  const y = F.interpolateBilinear(xt, out, { alignCorners });
  const what = `bilinear [${shape}] → [${out}] alignCorners=${alignCorners}`;
  assertClose(await y.data(), ref.y, { what, atol: 2e-6, rtol: 1e-5 });
  if (grad) {
    backward(y, tensor(gy, y.shape));
    assertClose(await xt.grad!.data(), ref.dx, { what: `${what} dx`, atol: 1e-5, rtol: 1e-5 });
    xt.grad!.dispose();
  }
  xt.dispose();
  y.dispose();
}

Deno.test("interpolateBilinear matches torch's known values", async () => {
  const x = tensor([0, 1, 2, 3], [1, 1, 2, 2]);
  assertClose(await F.interpolateBilinear(x, [4, 4]).data(), [
    0,
    0.25,
    0.75,
    1,
    0.5,
    0.75,
    1.25,
    1.5,
    1.5,
    1.75,
    2.25,
    2.5,
    2,
    2.25,
    2.75,
    3,
  ], { atol: 1e-7 });
  assertClose(await F.interpolateBilinear(x, [3, 3], { alignCorners: true }).data(), [
    0,
    0.5,
    1,
    1,
    1.5,
    2,
    2,
    2.5,
    3,
  ], { atol: 1e-7 });
});

Deno.test("interpolateBilinear forward/backward match float64 on awkward shapes", async () => {
  for (const ac of [false, true]) {
    await check([2, 3, 7, 5], [13, 3], ac);
    await check([1, 1, 1, 1], [3, 4], ac);
    await check([1, 2, 5, 9], [1, 1], ac);
    await check([2, 1, 6, 6], [6, 6], ac);
    await check([1, 2, 32, 32], [512, 512], ac); // EP-SAM CAM resize
    await check([1, 1, 97, 89], [23, 31], ac); // downsampling by non-integer factors
  }
});

Deno.test("interpolateBilinear SAM sizes: 256 → 1024 and 1024 → 256", async () => {
  await check([1, 1, 256, 256], [1024, 1024], false);
  await check([1, 1, 1024, 1024], [256, 256], false);
});

Deno.test("bilinear forward and gather backward match the float64 scatter on random sizes (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 40 }),
      fc.boolean(),
      async (H, W, OH, OW, ac) => {
        await check([1, 2, H, W], [OH, OW], ac);
      },
    ),
    { numRuns: 15 },
  );
});

Deno.test("interpolateBilinear gradient passes finite differences", async () => {
  await gradCheck((x) => F.interpolateBilinear(x, [7, 4]), [{ shape: [1, 2, 3, 5] }]);
  await gradCheck((x) => F.interpolateBilinear(x, [2, 3], { alignCorners: true }), [{
    shape: [2, 1, 5, 7],
  }]);
});

Deno.test("antialiased bilinear (torch antialias=True) matches float64 forward and backward", async () => {
  const cases: [number[], [number, number]][] = [
    [[1, 2, 64, 48], [16, 12]], // integer factor 4
    [[2, 1, 97, 89], [23, 31]], // non-integer factors
    [[1, 1, 9, 7], [20, 5]], // up in one dim, down in the other
    [[1, 1, 5, 6], [1, 1]],
  ];
  for (const [shape, out] of cases) {
    const x = randArray(numel(shape), 5, -1, 1);
    const gy = randArray(shape[0] * shape[1] * out[0] * out[1], 6, -1, 1);
    const ref = bilinearAARef(x, shape, out, gy);
    const xt = requireGrad(tensor(x, shape));
    const y = F.interpolateBilinear(xt, out, { antialias: true });
    const what = `antialias [${shape}] → [${out}]`;
    assertClose(await y.data(), ref.y, { what, atol: 1e-5, rtol: 1e-4 });
    backward(y, tensor(gy, y.shape));
    assertClose(await xt.grad!.data(), ref.dx, { what: `${what} dx`, atol: 1e-5, rtol: 1e-4 });
  }
  // Upsampling with antialias equals plain bilinear (as in torch).
  const x = randArray(2 * 5 * 4, 8, -1, 1);
  const xt = tensor(x, [1, 2, 5, 4]);
  assertClose(
    await F.interpolateBilinear(xt, [11, 9], { antialias: true }).data(),
    bilinearRef(x, [1, 2, 5, 4], [11, 9], false).y,
    { what: "antialias upsampling", atol: 1e-5 },
  );
  await gradCheck((x) => F.interpolateBilinear(x, [3, 2], { antialias: true }), [{
    shape: [1, 2, 7, 5],
  }]);
});

Deno.test("interpolateBilinear rejects bad sizes with clear errors", () => {
  let msg = "";
  try {
    F.interpolateBilinear(tensor([1, 2, 3, 4], [1, 1, 2, 2]), [0, 3]);
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!/interpolateBilinear/.test(msg) || !/\[0,3\]/.test(msg)) {
    throw new Error(`unclear error: ${msg}`);
  }
});
