// LayerNorm's vec4 rows (kernels/norm/layer_norm.ts: the thread row mode, inner = 1, L a multiple
// of 4; taken from 128 rows on software adapters) against float64, with the backward, and the
// same rows with the vec4 form turned off; rows that cannot take it (L of every other residue mod 4)
// still match (fixed cases and fast-check, weight and bias gradients too); finite differences.
import fc from "fast-check";
import { backward, F, requireGrad, tensor } from "../../engine/mod.ts";
import { setLayerNormVec4Rows } from "../../kernels/norm/layer_norm.ts";
import { layerNormRowsRef } from "../reference/norm.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";

await setup();

Deno.test("layerNorm: 130+ rows of vec4s match float64, forward and backward, shifted rows", async () => {
  for (const vec4 of [true, false]) {
    const old = setLayerNormVec4Rows(vec4);
    try {
      for (
        const [rows, L, affine, shift] of [[130, 768, true, 0], [131, 12, false, 300], [
          129,
          7,
          true,
          -50,
        ]] as const
      ) {
        const x = randArray(rows * L, rows + L, -3, 5).map((v) => v + shift);
        const g = randArray(rows * L, 77);
        const w = affine ? randArray(L, 3, 0.5, 1.5) : undefined;
        const b = affine ? randArray(L, 4, -1, 1) : undefined;
        const xt = requireGrad(tensor(x, [rows, L]));
        const wt = w && tensor(w), bt = b && tensor(b);
        const y = F.layerNorm(xt, [L], wt, bt, 1e-6);
        const ref = layerNormRowsRef(x, rows, L, 1, w, b, 1e-6, g);
        const what = `layerNorm [${rows}, ${L}] + ${shift} vec4 ${vec4}`;
        assertClose(await y.data(), ref.y, { what: `${what} y`, atol: 1e-4, rtol: 1e-4 });
        backward(y, tensor(g, [rows, L]));
        assertClose(await xt.grad!.data(), ref.dx, { what: `${what} dx`, atol: 1e-4, rtol: 1e-3 });
        for (const t of [xt.grad!, xt, y, wt, bt]) t?.dispose();
      }
    } finally {
      setLayerNormVec4Rows(old);
    }
  }
});

/**
 * Rows whose values are a shuffled ramp over [−3, 5] plus jitter, shifted: every row's σ ≥ ~2
 * whatever L. A near-constant row's dx is ill-conditioned in f32 (its centering error u·|μ|/σ is
 * amplified by 1/σ: ~1e-3 relative at L = 2, σ ~ 1e-3, measured), which is f32 arithmetic, not the
 * indexing and vec4 handling this test is after; the forward on arbitrary rows: norm_test.ts.
 */
function spreadRows(rows: number, L: number, seed: number, shift: number): Float32Array {
  const r = randArray(rows * L, seed, 0, 1), out = new Float32Array(rows * L);
  for (let row = 0; row < rows; row++) {
    const idx = [...Array(L).keys()].sort((a, b) => r[row * L + a] - r[row * L + b]);
    idx.forEach((k, i) => {
      const ramp = L === 1 ? 1 : -3 + (8 * i) / (L - 1);
      out[row * L + k] = ramp + 0.2 * (r[row * L + ((k + 1) % L)] - 0.5) + shift;
    });
  }
  return out;
}

Deno.test("layerNorm rows of every length mod 4 (vec4 or scalar, thread rows) match float64 (fast-check)", async () => {
  // 128+ rows: the thread row mode on software adapters; L of every residue mod 4 (L % 4 = 0 takes
  // vec4 rows unless turned off). Tolerances as the test above for y and dx (f32 mean and variance
  // of ≤ 40 values shifted by ≤ 100: errors ~1e-5); dweight and dbias sum ≤ 160 rows of terms
  // |g·x̂| ≲ 6 (sums ≲ 160 · 6): f32 rounding ≲ 160 · 6e-8 · 960 ≈ 1e-5, well under 2e-4.
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        rows: fc.integer({ min: 128, max: 160 }),
        L: fc.integer({ min: 1, max: 40 }),
        affine: fc.boolean(),
        vec4: fc.boolean(),
        shift: fc.integer({ min: -100, max: 100 }),
        seed: fc.nat(1000),
      }),
      async ({ rows, L, affine, vec4, shift, seed }) => {
        const old = setLayerNormVec4Rows(vec4);
        try {
          const x = spreadRows(rows, L, seed, shift);
          const g = randArray(rows * L, seed + 1);
          const w = affine ? randArray(L, seed + 2, 0.5, 1.5) : undefined;
          const b = affine ? randArray(L, seed + 3, -1, 1) : undefined;
          const xt = requireGrad(tensor(x, [rows, L]));
          const wt = w && requireGrad(tensor(w)), bt = b && requireGrad(tensor(b));
          const y = F.layerNorm(xt, [L], wt, bt, 1e-5);
          backward(y, tensor(g, [rows, L]));
          const ref = layerNormRowsRef(x, rows, L, 1, w, b, 1e-5, g);
          const what = `layerNorm [${rows}, ${L}] + ${shift} vec4 ${vec4} affine ${affine}`;
          assertClose(await y.data(), ref.y, { what: `${what} y`, atol: 1e-4, rtol: 1e-4 });
          assertClose(await xt.grad!.data(), ref.dx, {
            what: `${what} dx`,
            atol: 1e-4,
            rtol: 1e-3,
          });
          if (wt && bt) {
            assertClose(await wt.grad!.data(), ref.dw, {
              what: `${what} dw`,
              atol: 2e-4,
              rtol: 1e-4,
            });
            assertClose(await bt.grad!.data(), ref.db, {
              what: `${what} db`,
              atol: 2e-4,
              rtol: 1e-4,
            });
          }
          for (const t of [xt.grad, wt?.grad, bt?.grad, xt, y, wt, bt]) t?.dispose();
        } finally {
          setLayerNormVec4Rows(old);
        }
      },
    ),
    { numRuns: 20 },
  );
});

Deno.test("layerNorm in vec4 thread rows passes finite differences (x, weight, bias)", async () => {
  // 128 rows of 8: the vec4 thread rows on software adapters.
  await gradCheck(
    (x, w, b) => F.layerNorm(x, [8], w, b),
    [{ shape: [128, 8] }, { shape: [8], lo: 0.5, hi: 1.5 }, { shape: [8] }],
    { coords: 6 },
  );
});
