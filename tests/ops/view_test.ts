import assert from "node:assert/strict";
import fc from "fast-check";
import { backward, dispatchStats, F, requireGrad, type Tensor, tensor } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { stridesOf } from "../reference/shape.ts";

await setup();

/** Float64 CPU model of a strided view: storage, shape, strides, element offset. */
interface Model {
  data: Float64Array;
  shape: number[];
  strides: number[];
  offset: number;
}

function elements(m: Model): Float64Array {
  const n = m.shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let rem = i, off = m.offset;
    for (let d = m.shape.length - 1; d >= 0; d--) {
      off += (rem % m.shape[d]) * m.strides[d];
      rem = Math.floor(rem / m.shape[d]);
    }
    out[i] = m.data[off];
  }
  return out;
}

function materialize(m: Model): Model {
  return { data: elements(m), shape: m.shape.slice(), strides: stridesOf(m.shape), offset: 0 };
}

/** One random view op applied to both the tensor and the model; `copies` says if a kernel ran. */
type Step = { name: string; t: Tensor; m: Model; copies: boolean };

function applyOp(
  kind: number,
  r1: number,
  r2: number,
  r3: number,
  t: Tensor,
  m: Model,
): Step | null {
  const rank = m.shape.length;
  switch (kind) {
    case 0: { // permute
      if (rank < 2) return null;
      const perm = [...Array(rank).keys()].sort((a, b) =>
        ((a * 31 + r1) % 7) - ((b * 31 + r1) % 7) || a - b
      );
      return {
        name: `permute(${perm})`,
        t: F.permute(t, perm),
        m: { ...m, shape: perm.map((p) => m.shape[p]), strides: perm.map((p) => m.strides[p]) },
        copies: false,
      };
    }
    case 1: { // transpose
      if (rank < 2) return null;
      const a = r1 % rank, b = r2 % rank;
      const perm = [...Array(rank).keys()];
      [perm[a], perm[b]] = [perm[b], perm[a]];
      return {
        name: `transpose(${a},${b})`,
        t: F.transpose(t, a, b),
        m: { ...m, shape: perm.map((p) => m.shape[p]), strides: perm.map((p) => m.strides[p]) },
        copies: false,
      };
    }
    case 2: { // slice with step
      if (!rank) return null;
      const a = r1 % rank, n = m.shape[a];
      const start = r2 % n, step = 1 + (r3 % 3);
      const end = start + 1 + ((r2 >> 3) % (n - start));
      const len = Math.ceil((end - start) / step);
      const shape = m.shape.slice(), strides = m.strides.slice();
      shape[a] = len;
      strides[a] = m.strides[a] * step;
      return {
        name: `slice(${a}, ${start}, ${end}, ${step})`,
        t: F.slice(t, a, start, end, step),
        m: { ...m, shape, strides, offset: m.offset + start * m.strides[a] },
        copies: false,
      };
    }
    case 3: { // reshape: merge two adjacent dims, or split one
      const contiguous = t.isContiguous();
      const base = contiguous ? m : materialize(m);
      let shape: number[];
      if (rank >= 2 && r1 % 2 === 0) {
        const a = r2 % (rank - 1);
        shape = [...m.shape.slice(0, a), m.shape[a] * m.shape[a + 1], ...m.shape.slice(a + 2)];
      } else {
        if (!rank) shape = [1];
        else {
          const a = r2 % rank, n = m.shape[a];
          const f = [2, 3, 5].find((p) => n % p === 0) ?? 1;
          shape = [...m.shape.slice(0, a), f, n / f, ...m.shape.slice(a + 1)];
        }
      }
      if (shape.length > 6) return null;
      return {
        name: `reshape(${shape})${contiguous ? "" : " [copy]"}`,
        t: F.reshape(t, shape),
        m: { data: base.data, shape, strides: stridesOf(shape), offset: base.offset },
        copies: !contiguous,
      };
    }
    case 4: { // expand a size-1 dim, or add a leading broadcast dim
      const ones = m.shape.map((s, i) => s === 1 ? i : -1).filter((i) => i >= 0);
      const k = 2 + (r2 % 3);
      if (ones.length && r1 % 2 === 0) {
        const a = ones[r3 % ones.length];
        const shape = m.shape.slice(), strides = m.strides.slice();
        shape[a] = k;
        strides[a] = 0;
        return {
          name: `expand dim ${a} to ${k}`,
          t: F.expand(t, shape),
          m: { ...m, shape, strides },
          copies: false,
        };
      }
      if (rank >= 5) return null;
      const shape = [k, ...m.shape];
      return {
        name: `expand lead ${k}`,
        t: F.expand(t, shape),
        m: { ...m, shape, strides: [0, ...m.strides] },
        copies: false,
      };
    }
    case 5: { // unsqueeze
      if (rank >= 5) return null;
      const a = r1 % (rank + 1);
      const shape = m.shape.slice(), strides = m.strides.slice();
      shape.splice(a, 0, 1);
      strides.splice(a, 0, 0);
      // unsqueeze, squeeze and select are views whatever the strides (the stride of a size-1
      // dim is never used to address an element).
      return {
        name: `unsqueeze(${a})`,
        t: F.unsqueeze(t, a),
        m: { ...m, shape, strides },
        copies: false,
      };
    }
    case 6: { // squeeze one size-1 dim
      const ones = m.shape.map((s, i) => s === 1 ? i : -1).filter((i) => i >= 0);
      if (!ones.length) return null;
      const a = ones[r1 % ones.length];
      const shape = m.shape.filter((_, i) => i !== a);
      return {
        name: `squeeze(${a})`,
        t: F.squeeze(t, a),
        m: { ...m, shape, strides: m.strides.filter((_, i) => i !== a) },
        copies: false,
      };
    }
    case 7: { // select
      if (rank < 2) return null;
      const a = r1 % rank, i = r2 % m.shape[a];
      const shape = m.shape.filter((_, d) => d !== a);
      return {
        name: `select(${a}, ${i})`,
        t: F.select(t, a, i),
        m: {
          ...m,
          shape,
          strides: m.strides.filter((_, d) => d !== a),
          offset: m.offset + i * m.strides[a],
        },
        copies: false,
      };
    }
    default: { // dense
      const copies = !t.isDense();
      return { name: "dense", t: F.dense(t, true), m: copies ? materialize(m) : m, copies };
    }
  }
}

Deno.test("view chains give the elements of a float64 strided model; views never copy (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
      fc.array(fc.tuple(fc.nat(8), fc.nat(1000), fc.nat(1000), fc.nat(1000)), {
        minLength: 1,
        maxLength: 6,
      }),
      fc.nat(1000),
      async (shape, ops, seed) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const data = randArray(n, seed);
        let t = tensor(data, shape);
        let m: Model = {
          data: Float64Array.from(data),
          shape: shape.slice(),
          strides: stridesOf(shape),
          offset: 0,
        };
        const made: Tensor[] = [t];
        const names: string[] = [];
        for (const [kind, r1, r2, r3] of ops) {
          const before = dispatchStats().dispatches;
          const step = applyOp(kind, r1, r2, r3, t, m);
          if (!step) continue;
          names.push(step.name);
          const ran = dispatchStats().dispatches - before;
          if (!step.copies) {
            assert.equal(ran, 0, `${names.join(" → ")}: a view ran ${ran} kernels`);
            assert.equal(step.t.storage, t.storage, `${names.join(" → ")}: a view shares storage`);
          } else {
            assert.notEqual(step.t.storage, t.storage, `${names.join(" → ")}: copied`);
          }
          assert.deepEqual(step.t.shape, step.m.shape, names.join(" → "));
          t = step.t;
          m = step.m;
          made.push(t);
        }
        assertClose(await t.data(), elements(m), { atol: 0, rtol: 0, what: names.join(" → ") });
        for (const x of made) x.dispose();
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("data() of strided views; reshape of a non-contiguous view copies, of a contiguous one does not", async () => {
  const x = tensor([0, 1, 2, 3, 4, 5], [2, 3]);
  const xt = F.transpose(x);
  assert.equal(xt.isContiguous(), false);
  assert.deepEqual([...(await xt.data())], [0, 3, 1, 4, 2, 5]);
  const before = dispatchStats().dispatches;
  const r = F.reshape(xt, [6]);
  assert.equal(dispatchStats().dispatches, before + 1);
  assert.notEqual(r.storage, x.storage);
  assert.deepEqual([...(await r.data())], [0, 3, 1, 4, 2, 5]);
  const before2 = dispatchStats().dispatches;
  const r2 = F.reshape(x, [3, -1]);
  assert.equal(dispatchStats().dispatches, before2);
  assert.equal(r2.storage, x.storage);
  assert.deepEqual(r2.shape, [3, 2]);
  // An offset view (row 1) reads from its offset.
  const row = F.select(x, 0, 1);
  assert.equal(row.offset, 3);
  assert.deepEqual([...(await row.data())], [3, 4, 5]);
  // Negative slice bounds, an empty slice, and expand's stride 0.
  assert.deepEqual([...(await F.slice(x, 1, -2).data())], [1, 2, 4, 5]);
  assert.deepEqual(F.slice(x, 1, 2, 1).shape, [2, 0]);
  const e = F.expand(F.reshape(tensor([7, 8]), [2, 1]), [3, 2, 4]);
  assert.deepEqual(e.strides, [0, 1, 0]);
  assert.deepEqual([...(await e.data())], [
    7,
    7,
    7,
    7,
    8,
    8,
    8,
    8,
    7,
    7,
    7,
    7,
    8,
    8,
    8,
    8,
    7,
    7,
    7,
    7,
    8,
    8,
    8,
    8,
  ]);
  for (const t of [x, xt, r, r2, row, e]) t.dispose();
});

Deno.test("view ops reject bad arguments with clear errors", () => {
  const x = tensor(new Float32Array(12), [3, 4]);
  assert.throws(
    () => F.reshape(x, [5, -1]),
    /reshape: cannot view \[3,4\] \(12 elements\) as \[5,-1\]/,
  );
  assert.throws(() => F.permute(x, [0, 0]), /not a permutation/);
  assert.throws(() => F.slice(x, 2, 0), /axis 2 is out of range for rank 2/);
  assert.throws(() => F.slice(x, 0, 0, 2, 0), /step must be a positive integer/);
  assert.throws(() => F.squeeze(x, 0), /dim 0 of \[3,4\] is not 1/);
  assert.throws(() => F.expand(x, [3, 5]), /cannot expand \[3,4\] to \[3,5\]/);
  x.dispose();
});

Deno.test("gradients flow back through views (slice with step, permute, expand, select)", async () => {
  await gradCheck((a) => F.mul(F.slice(F.permute(a, [1, 0, 2]), 2, 1, 5, 2), 3), [{
    shape: [2, 3, 5],
  }]);
  await gradCheck((a) => F.expand(F.reshape(a, [3, 1]), [2, 3, 4]), [{ shape: [3] }]);
  await gradCheck((a) => F.square(F.select(F.transpose(a), 1, 2)), [{ shape: [4, 3] }]);
  // Slice backward scatters into zeros.
  const a = requireGrad(tensor([1, 2, 3, 4, 5, 6]));
  const s = F.sum(F.slice(a, 0, 1, 6, 2));
  backward(s);
  assertClose(await a.grad!.data(), [0, 1, 0, 1, 0, 1]);
  a.grad!.dispose();
  a.dispose();
  s.dispose();
});

Deno.test("unflatten splits a dim of a strided tensor as a view, gradients flow back", async () => {
  const x = F.permute(tensor(randArray(24, 3), [2, 3, 4]), [2, 0, 1]); // [4, 2, 3], strided
  const before = dispatchStats().dispatches;
  const y = F.unflatten(x, 0, [2, 2]);
  assert.equal(dispatchStats().dispatches, before, "unflatten runs no kernel");
  assert.deepStrictEqual(y.shape, [2, 2, 2, 3]);
  assertClose(await y.data(), await x.data(), { atol: 0, rtol: 0, what: "unflatten elements" });
  assert.throws(() => F.unflatten(x, 1, [3]), /does not split dim 1/);
  await gradCheck((t) => F.unflatten(F.transpose(t, 0, 1), 1, [2, 2]), [{ shape: [4, 4] }]);
});
