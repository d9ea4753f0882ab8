/**
 * Dtype casts (engine/ops/cast.ts) on random values and shapes (fast-check) against the host's
 * exact conversions: f32 → i32 / u32 truncates toward zero (values inside the target's range; WGSL
 * saturates outside it, which nothing here relies on), i32 / u32 → f32 rounds to nearest
 * (Math.fround), through dense tensors and transposed views. The fixed cases:
 * tests/engine/tensor_test.ts.
 */
import fc from "fast-check";
import assert from "node:assert/strict";
import { F, tensor, tidy } from "../../engine/mod.ts";
import { randArray, setup } from "../util/gpu.ts";
import { mulberry32 } from "../../engine/mulberry32.ts";

await setup();

/** Column-major order of a row-major [r, c] array: what a transposed view reads. */
function transposed<T extends { length: number; [i: number]: number }>(
  a: T,
  r: number,
  c: number,
  out: T,
): T {
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = a[i * c + j];
  return out;
}

Deno.test("cast: random f32 ↔ i32 / u32 values, dense and transposed, equal the exact conversions (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        r: fc.integer({ min: 1, max: 40 }),
        c: fc.integer({ min: 1, max: 40 }),
        // Magnitudes past 2^24 (f32 integers spaced by more than 1) and past 2^31 for u32.
        scale: fc.constantFrom(2, 1e4, 3e7, 2e9),
        view: fc.boolean(),
        seed: fc.nat(1000),
      }),
      async ({ r, c, scale, view, seed }) => {
        const n = r * c, what = `[${r}, ${c}] ±${scale} view ${view}`;
        const f = randArray(n, seed, -scale, scale);
        const fu = randArray(n, seed + 1, 0, 2 * scale);
        const rnd = mulberry32(seed + 2);
        const ints = Int32Array.from({ length: n }, () => Math.floor((rnd() - 0.5) * 2 * scale));
        const uints = Uint32Array.from({ length: n }, () => Math.floor(rnd() * 2 * scale));
        const order = <T extends { length: number; [i: number]: number }>(a: T, out: T) =>
          view ? transposed(a, r, c, out) : a;
        const src = (t: ReturnType<typeof tensor>) => view ? F.transpose(t) : t;
        const [toI, toU, fromI, fromU] = tidy(() => [
          F.cast(src(tensor(f, [r, c])), "i32"),
          F.cast(src(tensor(fu, [r, c])), "u32"),
          F.cast(src(tensor(ints, [r, c])), "f32"),
          F.cast(src(tensor(uints, [r, c])), "f32"),
        ]);
        const wantI = Int32Array.from(order(f, new Float32Array(n)), Math.trunc);
        const wantU = Uint32Array.from(order(fu, new Float32Array(n)), Math.trunc);
        const wantFI = Float32Array.from(order(ints, new Int32Array(n)), Math.fround);
        const wantFU = Float32Array.from(order(uints, new Uint32Array(n)), Math.fround);
        assert.deepEqual(await toI.data(), wantI, `f32 → i32 ${what}`);
        assert.deepEqual(await toU.data(), wantU, `f32 → u32 ${what}`);
        assert.deepEqual(await fromI.data(), wantFI, `i32 → f32 ${what}`);
        assert.deepEqual(await fromU.data(), wantFU, `u32 → f32 ${what}`);
        for (const t of [toI, toU, fromI, fromU]) t.dispose();
      },
    ),
    { numRuns: 20 },
  );
});
