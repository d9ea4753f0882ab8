import assert from "node:assert/strict";
import fc from "fast-check";
import {
  alias,
  contiguousStrides,
  empty,
  F,
  f16ToF32,
  f32ToF16,
  gpu,
  memoryStats,
  numel,
  tensor,
  view,
} from "../../engine/mod.ts";
import { setup } from "../util/gpu.ts";

await setup();

Deno.test("upload/download round trips f32, i32 and u32 exactly", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.float({ noNaN: true }), { minLength: 1, maxLength: 300 }),
      async (v) => {
        const t = tensor(v);
        assert.deepEqual([...(await t.data())], [...Float32Array.from(v)]);
        t.dispose();
      },
    ),
    { numRuns: 20 },
  );
  const i = tensor(new Int32Array([-2147483648, -1, 0, 7, 2147483647]));
  assert.equal(i.dtype, "i32");
  assert.deepEqual([...(await i.data())], [-2147483648, -1, 0, 7, 2147483647]);
  const u = tensor(new Uint32Array([0, 1, 4294967295]));
  assert.equal(u.dtype, "u32");
  assert.deepEqual([...(await u.data())], [0, 1, 4294967295]);
  const s = tensor([3.5], []);
  assert.equal(s.rank, 0);
  assert.equal(await s.item(), 3.5);
  for (const t of [i, u, s]) t.dispose();
});

Deno.test("f16 tensors: IEEE half conversion (round to nearest even, subnormals, inf, NaN)", async () => {
  const cases = [
    0,
    -0,
    1,
    -2.5,
    65504,
    1e-7,
    6.1e-5,
    5.96e-8,
    70000,
    Infinity,
    -Infinity,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
  ];
  const back = f16ToF32(f32ToF16(Float32Array.from(cases)));
  assert.deepEqual(
    [...back],
    [
      0,
      -0,
      1,
      -2.5,
      65504,
      1.1920928955078125e-7,
      6.097555160522461e-5,
      5.960464477539063e-8,
      Infinity,
      Infinity,
      -Infinity,
      1,
      1 + 2 ** -9,
    ],
  );
  assert.ok(Number.isNaN(f16ToF32(f32ToF16(new Float32Array([NaN])))[0]));
  // Every half value survives f16 → f32 → f16.
  const all = new Uint16Array(65536).map((_, i) => i);
  const rt = f32ToF16(f16ToF32(all));
  for (let i = 0; i < 65536; i++) {
    const nan = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (!nan) assert.equal(rt[i], i, `half bits ${i.toString(16)}`);
  }
  // Three halves = 6 bytes: the upload pads the odd tail.
  const h = tensor([1.5, -3, 0.25], [3], "f16");
  assert.equal(h.dtype, "f16");
  assert.deepEqual([...(await h.data())], [1.5, -3, 0.25]);
  h.dispose();
});

Deno.test("shapes, strides, contiguity and density", () => {
  assert.equal(numel([]), 1);
  assert.equal(numel([2, 0, 3]), 0);
  assert.deepEqual(contiguousStrides([2, 3, 4]), [12, 4, 1]);
  const t = empty([4, 8]);
  assert.equal(t.isContiguous(), true);
  assert.equal(t.isDense(), true);
  const tr = F.transpose(t);
  assert.equal(tr.isContiguous(), false);
  const align = gpu().limits.minStorageBufferOffsetAlignment / 4;
  // A contiguous view at an unaligned element offset is contiguous but not bindable.
  const off = view(t, [8], [1], 1);
  assert.equal(off.isContiguous(), true);
  assert.equal(off.isDense(), align === 1);
  assert.throws(() => tr.binding(), /is a strided view: make it dense first/);
  // Size-1 dims may have any stride.
  const one = view(t, [1, 8], [999, 1], 0);
  assert.equal(one.isContiguous(), true);
  assert.match(t.toString(), /^Tensor#\d+\(f32\[4,8\]\)$/);
  for (const v of [t, tr, off, one]) v.dispose();
});

Deno.test("alias shares storage with its own lifetime; zero-size tensors work", async () => {
  const base = memoryStats().liveBytes;
  const a = tensor([1, 2, 3]);
  const b = alias(a);
  assert.equal(b.storage, a.storage);
  assert.notEqual(b.id, a.id);
  a.dispose();
  assert.deepEqual([...(await b.data())], [1, 2, 3]);
  assert.throws(() => alias(a), /used after dispose/);
  b.dispose();
  assert.equal(memoryStats().liveBytes, base);
  const z = tensor([], [0, 3]);
  assert.equal(z.size, 0);
  assert.deepEqual([...(await z.data())], []);
  assert.deepEqual([...(await F.exp(z).data())], []);
  assert.deepEqual([...(await F.sum(z, 0).data())], [0, 0, 0]);
  z.dispose();
});

Deno.test("cast between f32, i32 and u32 truncates toward zero", async () => {
  const x = tensor([-2.7, -0.5, 0.5, 3.9]);
  const i = F.cast(x, "i32");
  assert.equal(i.dtype, "i32");
  assert.deepEqual([...(await i.data())], [-2, 0, 0, 3]);
  const back = F.cast(i, "f32");
  assert.deepEqual([...(await back.data())], [-2, 0, 0, 3]);
  assert.equal(F.cast(x, "f32"), x);
  assert.throws(() => F.cast(x, "f16"), /f16 tensors are kernel-internal/);
  // Cast of a strided view reads through the strides.
  const m = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  assert.deepEqual([...(await F.cast(F.transpose(m), "i32").data())], [1, 4, 2, 5, 3, 6]);
  for (const t of [x, i, back, m]) t.dispose();
});
