import fc from "fast-check";
import assert from "node:assert/strict";
import { F, noGrad, type Tensor, tensor, tidy, tidyAsync } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import {
  concatRef,
  flipRef,
  gatherRef,
  indexSelectRef,
  numelOf,
  padRef,
  repeatRef,
  rollRef,
  rot90Ref,
} from "../reference/shape.ts";

await setup();

const exact = { atol: 0, rtol: 0 };
const rand = (shape: number[], seed: number) => randArray(numelOf(shape), seed, -2, 2);

async function expectTensor(
  t: Tensor,
  data: ArrayLike<number>,
  shape: number[],
  what: string,
): Promise<void> {
  assert.deepEqual(t.shape, shape, `${what}: shape`);
  assertClose(await t.data(), data, { ...exact, what });
}

Deno.test("concat and stack match references on awkward shapes (any axis, size 0/1, i32)", async () => {
  const cases: [number[][], number][] = [
    [[[2, 3, 5], [2, 1, 5], [2, 7, 5]], 1],
    [[[1, 3], [4, 3]], 0],
    [[[3, 2, 5], [3, 2, 1], [3, 2, 0], [3, 2, 2]], -1],
    [[[7]], 0],
  ];
  await tidyAsync(async () => {
    for (const [shapes, axis] of cases) {
      const datas = shapes.map((s, k) => rand(s, 10 + k));
      const y = F.concat(datas.map((d, k) => tensor(d, shapes[k])), axis);
      const a = axis < 0 ? axis + shapes[0].length : axis;
      const ref = concatRef(datas, shapes, a);
      await expectTensor(y, ref.data, ref.shape, `concat ${JSON.stringify(shapes)} axis ${axis}`);
    }
    const ints = F.concat([tensor(Int32Array.of(1, 2, 3), [3]), tensor(Int32Array.of(-4), [1])]);
    assert.equal(ints.dtype, "i32");
    assert.deepEqual(Array.from(await ints.data()), [1, 2, 3, -4]);
    const a = rand([2, 3], 1), b = rand([2, 3], 2);
    const s = F.stack([tensor(a, [2, 3]), tensor(b, [2, 3])], 1);
    const ref = concatRef([a, b], [[2, 1, 3], [2, 1, 3]], 1);
    await expectTensor(s, ref.data, ref.shape, "stack axis 1");
    assert.throws(
      () => F.concat([tensor(a, [2, 3]), tensor(b, [3, 2])], 1),
      /concat: .*\[2,3\].*\[3,2\]/,
    );
  });
});

Deno.test("pad (positive, negative, non-zero value) and its gradient", async () => {
  await tidyAsync(async () => {
    const shape = [2, 3, 5];
    const x = rand(shape, 3);
    for (const pads of [[1, 2], [0, 1, 3, 0], [2, -1, -1, 2, 1, 0], [0, 0, 0, 0, 0, 0]]) {
      const y = F.pad(tensor(x, shape), pads, 0.5);
      // padRef handles negative amounts as crops.
      const ref = padRef(x, shape, pads, 0.5);
      await expectTensor(y, ref.data, ref.shape, `pad [${pads}]`);
    }
  });
  await gradCheck((x) => F.pad(x, [1, 2, -1, 1]), [{ shape: [2, 3, 4] }]);
});

Deno.test("flip, roll and rot90 match references (also on strided views)", async () => {
  await tidyAsync(async () => {
    const shape = [2, 3, 5];
    const x = rand(shape, 5);
    const xt = tensor(x, shape);
    for (const axes of [[0], [2], [0, 2], [0, 1, 2], []]) {
      await expectTensor(F.flip(xt, axes), flipRef(x, shape, axes), shape, `flip [${axes}]`);
    }
    for (const [shifts, axes] of [[[1], [2]], [[-7], [1]], [[2, 4], [0, 2]], [[0], [0]]]) {
      await expectTensor(
        F.roll(xt, shifts, axes),
        rollRef(x, shape, shifts, axes),
        shape,
        `roll [${shifts}] [${axes}]`,
      );
    }
    // Flattened roll (no axes) as torch.
    const flat = await F.roll(xt, 4).data();
    assertClose(flat, rollRef(x, [30], [4], [0]), { ...exact, what: "roll flattened" });
    for (const k of [-1, 0, 1, 2, 3, 5]) {
      for (const [a, b] of [[1, 2], [2, 0]]) {
        const ref = rot90Ref(x, shape, k, a, b);
        await expectTensor(
          F.rot90(xt, k, [a, b]),
          ref.data,
          ref.shape,
          `rot90 k=${k} axes [${a},${b}]`,
        );
      }
    }
    // A permuted (non-contiguous) input.
    const p = F.permute(xt, [2, 0, 1]);
    const pData = await p.data();
    const ref = rot90Ref(pData, [5, 2, 3], 1, 1, 2);
    await expectTensor(F.rot90(p, 1, [1, 2]), ref.data, ref.shape, "rot90 of a permuted view");
    assert.throws(() => F.flip(xt, [0, 0]), /flip: repeated axes/);
    assert.throws(() => F.roll(xt, [1, 2], [0]), /roll: shifts/);
  });
});

Deno.test("flip/roll property: random shapes, axes and shifts (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
      fc.nat(1000),
      fc.integer({ min: -9, max: 9 }),
      async (shape, seed, shift) => {
        const axis = seed % shape.length;
        const x = rand(shape, seed);
        await tidyAsync(async () => {
          const xt = tensor(x, shape);
          assertClose(await F.roll(xt, shift, axis).data(), rollRef(x, shape, [shift], [axis]), {
            ...exact,
            what: "roll",
          });
          assertClose(await F.flip(xt, axis).data(), flipRef(x, shape, [axis]), {
            ...exact,
            what: "flip",
          });
          // roll then roll back is the identity.
          assertClose(await F.roll(F.roll(xt, shift, axis), -shift, axis).data(), x, {
            ...exact,
            what: "roll∘roll⁻¹",
          });
        });
      },
    ),
    { numRuns: 10 },
  );
});

Deno.test("indexSelect (repeated, negative, 2-D index) and gather match references", async () => {
  await tidyAsync(async () => {
    const shape = [3, 7, 2];
    const x = rand(shape, 8);
    const xt = tensor(x, shape);
    const idx = [6, 0, 0, -1, 3];
    const y = F.indexSelect(xt, 1, tensor(Int32Array.from(idx)));
    const ref = indexSelectRef(x, shape, 1, idx);
    await expectTensor(y, ref.data, ref.shape, "indexSelect axis 1");
    // A 2-D index: the result takes the index's shape in place of the axis.
    const y2 = F.indexSelect(xt, 0, tensor(Int32Array.of(2, 1, 2, 0), [2, 2]));
    const ref2 = indexSelectRef(x, shape, 0, [2, 1, 2, 0]);
    await expectTensor(y2, ref2.data, [2, 2, 7, 2], "indexSelect 2-D index");
    // Out of range gives 0.
    const y3 = await F.indexSelect(xt, 2, tensor(Int32Array.of(5))).data();
    assert.ok(y3.every((v) => v === 0));
    // gather with an index smaller than x off the axis.
    const gShape = [2, 4, 2];
    const gIdx = Int32Array.from({ length: 16 }, (_, i) => (i * 5) % 7);
    const g = F.gather(xt, 1, tensor(gIdx, gShape));
    await expectTensor(g, gatherRef(x, shape, 1, gIdx, gShape), gShape, "gather axis 1");
    assert.throws(
      () => F.indexSelect(xt, 0, tensor([1, 2])),
      /indexSelect: the index must be an i32 tensor/,
    );
    assert.throws(
      () => F.gather(xt, 0, tensor(Int32Array.of(0), [1])),
      /gather: index \[1\] must have the rank/,
    );
  });
});

Deno.test("arange, repeat and tile", async () => {
  await tidyAsync(async () => {
    assertClose(
      await F.arange(7, { start: -2, step: 0.5 }).data(),
      [-2, -1.5, -1, -0.5, 0, 0.5, 1],
      exact,
    );
    const ai = F.arange(5, { start: 3, step: -2, dtype: "i32" });
    assert.equal(ai.dtype, "i32");
    assert.deepEqual(Array.from(await ai.data()), [3, 1, -1, -3, -5]);
    assert.equal(F.arange(0).size, 0);
    const shape = [2, 3];
    const x = rand(shape, 9);
    for (const reps of [[2, 1], [1, 3], [3, 2, 2]]) {
      const ref = repeatRef(x, shape, reps);
      await expectTensor(F.repeat(tensor(x, shape), reps), ref.data, ref.shape, `repeat [${reps}]`);
    }
    const ref = repeatRef(x, shape, [1, 2]);
    await expectTensor(F.tile(tensor(x, shape), [2]), ref.data, ref.shape, "tile [2]");
  });
});

Deno.test("gradients of shape ops pass finite differences (repeated indices included)", async () => {
  await gradCheck((a, b) => F.concat([a, F.square(b), a], 1), [{ shape: [2, 3, 2] }, {
    shape: [2, 1, 2],
  }]);
  await gradCheck((a, b) => F.stack([a, b], 2), [{ shape: [3, 2] }, { shape: [3, 2] }]);
  const idx = Int32Array.of(4, 1, 1, 4, 0, 4);
  await gradCheck((x) => F.indexSelect(x, 1, tensor(idx)), [{ shape: [2, 5, 3] }], { coords: 6 });
  const gIdx = Int32Array.from({ length: 12 }, (_, i) => (i * 3) % 4);
  await gradCheck((x) => F.gather(x, 1, tensor(gIdx, [2, 3, 2])), [{ shape: [2, 4, 3] }], {
    coords: 6,
  });
  await gradCheck((x) => F.flip(F.square(x), [0, 2]), [{ shape: [3, 2, 5] }]);
  await gradCheck((x) => F.roll(F.square(x), [2, -1], [1, 2]), [{ shape: [2, 3, 5] }]);
  await gradCheck((x) => F.rot90(F.square(x), 1, [0, 1]), [{ shape: [3, 4] }]);
  await gradCheck((x) => F.repeat(F.square(x), [2, 1, 3]), [{ shape: [3, 2] }]);
  // No graph is recorded under noGrad.
  noGrad(() => tidy(() => assert.equal(F.flip(tensor([1, 2]), 0).requiresGrad, false)));
});
