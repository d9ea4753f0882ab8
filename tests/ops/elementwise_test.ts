import fc from "fast-check";
import { backward, F, requireGrad, tensor, view } from "../../engine/mod.ts";
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

Deno.test("broadcasts with a contiguous or broadcast innermost dim (four at a time) match float64", async () => {
  // Inner dims of 8 and 4 (the four-at-a-time strided kernel: vec4 loads, splats), and operands
  // it must leave to the general kernel (an offset of 1, a transposed inner dim).
  const cases: [number[], number[]][] = [
    [[2, 3, 4, 8], [2, 1, 4, 8]], // ADL's x·m: vec4, vec4
    [[2, 3, 4, 8], [2, 3, 4, 1]], // splat
    [[2, 3, 4, 8], [3, 1, 1]], // splat of a per-channel value
    [[3, 8], [8]],
    [[5, 4], [5, 1]],
  ];
  for (const [as, bs] of cases) {
    const a = randArray(as.reduce((x, y) => x * y, 1), 41, -2, 2);
    const b = randArray(bs.reduce((x, y) => x * y, 1), 42, 0.5, 2);
    for (const [x, y, xs, ys] of [[a, b, as, bs], [b, a, bs, as]] as const) {
      const out = F.mul(tensor(x, xs), tensor(y, ys));
      const ref = broadcastRef(x, xs, y, ys, (p, q) => p * q);
      assertClose(await out.data(), ref.data, { what: `[${xs}]·[${ys}]`, atol: 1e-6, rtol: 1e-6 });
    }
  }
  // A view at element offset 1 and a transposed view: the general strided kernel.
  const base = tensor(randArray(1 + 2 * 3 * 8, 43, -1, 1), [1 + 48]);
  const shifted = view(base, [2, 3, 8], [24, 8, 1], 1);
  const m = randArray(2 * 8, 44, -1, 1);
  const host = (await base.data()).slice(1);
  const r1 = F.add(shifted, tensor(m, [2, 1, 8]));
  assertClose(await r1.data(), broadcastRef(host, [2, 3, 8], m, [2, 1, 8], (p, q) => p + q).data, {
    what: "offset view",
    atol: 1e-6,
    rtol: 1e-6,
  });
  const t = F.transpose(tensor(host, [2, 3, 8]), 1, 2); // [2, 8, 3], inner stride 8
  const tRef = Float64Array.from({ length: 48 }, (_, i) => {
    const n = Math.floor(i / 24), c = Math.floor(i / 3) % 8, j = i % 3;
    return host[n * 24 + j * 8 + c] * 2;
  });
  assertClose(await F.mul(t, tensor([2], [1])).data(), tRef, {
    what: "transposed",
    atol: 1e-6,
    rtol: 1e-6,
  });
  // where(c, a, b) with a broadcast condition and scalar b: three operands, vec4 and splats.
  const c = Float32Array.from({ length: 2 * 8 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0);
  const aw = randArray(2 * 3 * 8, 45, -1, 1);
  const w = F.where(tensor(c, [2, 1, 8]), tensor(aw, [2, 3, 8]), tensor([-5], [1]));
  const wRef = Float64Array.from(
    { length: 48 },
    (_, i) => c[Math.floor(i / 24) * 8 + i % 8] ? aw[i] : -5,
  );
  assertClose(await w.data(), wRef, { what: "where", atol: 0, rtol: 0 });
});
