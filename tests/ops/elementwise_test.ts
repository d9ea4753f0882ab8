import fc from "fast-check";
import { backward, F, requireGrad, tensor } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { broadcastRef, erf } from "../reference/elementwise.ts";

await setup();

const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

Deno.test("unary ops match float64 references on an odd shape", async () => {
  const shape = [3, 7, 5];
  const x = randArray(105, 1, -3, 3);
  const cases: [
    string,
    (t: ReturnType<typeof tensor>) => ReturnType<typeof tensor>,
    (v: number) => number,
  ][] = [
    ["exp", F.exp, Math.exp],
    ["neg", F.neg, (v) => -v],
    ["abs", F.abs, Math.abs],
    ["relu", F.relu, (v) => Math.max(v, 0)],
    ["sigmoid", F.sigmoid, (v) => 1 / (1 + Math.exp(-v))],
    ["tanh", F.tanh, Math.tanh],
    ["gelu", F.gelu, gelu],
    ["square", F.square, (v) => v * v],
    ["clamp", (t) => F.clamp(t, -0.5, 1.25), (v) => Math.min(Math.max(v, -0.5), 1.25)],
  ];
  const xt = tensor(x, shape);
  for (const [name, op, ref] of cases) {
    const y = op(xt);
    assertClose(await y.data(), Array.from(x, ref), { what: name, atol: 2e-6, rtol: 2e-6 });
    y.dispose();
  }
  const pos = tensor(randArray(105, 2, 0.01, 4), shape);
  const p = await pos.data();
  for (
    const [name, op, ref] of [["log", F.log, Math.log], ["sqrt", F.sqrt, Math.sqrt], [
      "rsqrt",
      F.rsqrt,
      (v: number) => 1 / Math.sqrt(v),
    ]] as const
  ) {
    const y = op(pos);
    assertClose(await y.data(), Array.from(p, ref), { what: name, atol: 1e-6, rtol: 1e-5 });
    y.dispose();
  }
  xt.dispose();
  pos.dispose();
});

Deno.test("binary ops broadcast like PyTorch (fast-check over shapes)", async () => {
  const dimArb = fc.integer({ min: 1, max: 5 });
  await fc.assert(
    fc.asyncProperty(
      fc.array(dimArb, { minLength: 0, maxLength: 4 }),
      fc.nat(1000),
      fc.boolean(),
      async (shape, seed, dropLead) => {
        // b broadcasts: some dims set to 1, and optionally fewer leading dims.
        const bShape = shape.map((s, i) => ((seed >> i) & 1 ? 1 : s)).slice(dropLead ? 1 : 0);
        const n = shape.reduce((a, b) => a * b, 1), m = bShape.reduce((a, b) => a * b, 1);
        const a = randArray(n, seed, -2, 2), b = randArray(m, seed + 1, 0.5, 2);
        const at = tensor(a, shape), bt = tensor(b, bShape);
        for (
          const [op, f] of [
            ["add", (x: number, y: number) => x + y],
            ["mul", (x: number, y: number) => x * y],
            ["div", (x: number, y: number) => x / y],
            ["sub", (x: number, y: number) => x - y],
          ] as const
        ) {
          const y = F[op](at, bt);
          const ref = broadcastRef(a, shape, b, bShape, f);
          assertClose(await y.data(), ref.data, {
            what: `${op} [${shape}]∘[${bShape}]`,
            atol: 1e-6,
            rtol: 1e-6,
          });
          if (y.shape.join() !== ref.shape.join()) {
            throw new Error(
              `shape ${y.shape} != ${ref.shape}`,
            );
          }
          y.dispose();
        }
        at.dispose();
        bt.dispose();
      },
    ),
    { numRuns: 12 },
  );
});

Deno.test("gradients of elementwise ops pass finite differences", async () => {
  await gradCheck((a, b) => F.mul(F.gelu(a), F.sigmoid(b)), [{ shape: [3, 5] }, { shape: [5] }]);
  await gradCheck((a, b) => F.div(F.tanh(a), b), [{ shape: [2, 3, 1] }, {
    shape: [4],
    lo: 0.5,
    hi: 2,
  }]);
  await gradCheck((a) => F.sqrt(F.exp(a)), [{ shape: [7] }]);
  await gradCheck((a, b) => F.where(F.gt(a, b), F.square(a), F.neg(b)), [{ shape: [6] }, {
    shape: [6],
  }]);
});

Deno.test("relu's gradient is the incoming gradient where the output is positive, else exactly 0", async () => {
  // 4099 values (vec4 kernels plus a tail) including zeros, negatives and non-finite gradients.
  const n = 4099;
  const x = randArray(n, 31, -2, 2);
  for (let i = 0; i < n; i += 7) x[i] = 0;
  const g = randArray(n, 32, -3, 3);
  g[1] = NaN;
  g[2] = Infinity;
  x[1] = x[2] = -1;
  const xt = requireGrad(tensor(x, [n]));
  backward(F.relu(xt), tensor(g, [n]));
  const got = await xt.grad!.data();
  for (let i = 0; i < n; i++) {
    const want = x[i] > 0 ? g[i] : 0;
    if (!Object.is(got[i], Math.fround(want))) {
      throw new Error(`relu gradient [${i}]: ${got[i]}, expected ${want} (x ${x[i]}, g ${g[i]})`);
    }
  }
  // Finite differences away from the kink.
  await gradCheck((a) => F.relu(a), [{ shape: [3, 5], lo: 0.1, hi: 1 }]);
  await gradCheck((a) => F.relu(a), [{ shape: [6], lo: -1, hi: -0.1 }]);
});
