/**
 * relPosTerms (engine/ops/attention.ts): SAM's decomposed relative-position terms from q read in
 * place (dense, transposed and permuted-projection layouts) against float64, and its gradients.
 */
import fc from "fast-check";
import assert from "node:assert";
import { F, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";

await setup();

/** Float64 relH / relW of q [G, qh·qw, d] (row-major host data) and tables rh, rw. */
function relRef(
  q: ArrayLike<number>,
  rh: ArrayLike<number>,
  rw: ArrayLike<number>,
  G: number,
  qh: number,
  qw: number,
  kh: number,
  kw: number,
  d: number,
): { relH: Float64Array; relW: Float64Array } {
  const n = qh * qw, relH = new Float64Array(G * n * kh), relW = new Float64Array(G * n * kw);
  for (let g = 0; g < G; g++) {
    for (let y = 0; y < qh; y++) {
      for (let x = 0; x < qw; x++) {
        const i = g * n + y * qw + x;
        for (let k = 0; k < kh; k++) {
          let s = 0;
          for (let c = 0; c < d; c++) s += q[i * d + c] * rh[(y * kh + k) * d + c];
          relH[i * kh + k] = s;
        }
        for (let k = 0; k < kw; k++) {
          let s = 0;
          for (let c = 0; c < d; c++) s += q[i * d + c] * rw[(x * kw + k) * d + c];
          relW[i * kw + k] = s;
        }
      }
    }
  }
  return { relH, relW };
}

type Layout = "dense" | "transposed" | "projection";

/**
 * q with the values `data` ([B·H, N, d] row-major) laid out as: dense [B·H, N, d]; a transpose of
 * a [B·H, d, N] tensor; or the q third of a [B, N, 3, H, d] projection seen as [B, H, N, d].
 */
function layout(data: Float32Array, B: number, H: number, n: number, d: number, l: Layout): Tensor {
  if (l === "dense") return tensor(data, [B * H, n, d]);
  if (l === "transposed") {
    const t = new Float32Array(data.length);
    for (let g = 0; g < B * H; g++) {
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < d; c++) t[(g * d + c) * n + i] = data[(g * n + i) * d + c];
      }
    }
    return F.transpose(tensor(t, [B * H, d, n]), 1, 2);
  }
  const p = randArray(B * n * 3 * H * d, 99);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < d; c++) {
          p[(((b * n + i) * 3) * H + h) * d + c] = data[(((b * H + h) * n) + i) * d + c];
        }
      }
    }
  }
  const qkv = F.permute(F.reshape(tensor(p, [B, n, 3 * H * d]), [B, n, 3, H, d]), [2, 0, 3, 1, 4]);
  return F.select(qkv, 0, 0);
}

async function check(
  B: number,
  H: number,
  qh: number,
  qw: number,
  kh: number,
  kw: number,
  d: number,
  l: Layout,
  seed: number,
) {
  const n = qh * qw, G = B * H;
  const q = randArray(G * n * d, seed, -2, 2);
  const rh = randArray(qh * kh * d, seed + 1), rw = randArray(qw * kw * d, seed + 2);
  const want = relRef(q, rh, rw, G, qh, qw, kh, kw, d);
  const [h, w] = tidy(() => {
    const qt = layout(q, B, H, n, d, l);
    if (l === "projection") assert.ok(!qt.isContiguous(), "the projection layout is strided");
    const r = F.relPosTerms(qt, tensor(rh, [qh, kh, d]), tensor(rw, [qw, kw, d]), qh, qw);
    return [r.relH, r.relW];
  });
  assert.deepStrictEqual(h.shape, [G, n, kh]);
  assert.deepStrictEqual(w.shape, [G, n, kw]);
  const what = `relPosTerms B${B} H${H} ${qh}×${qw} k ${kh}/${kw} d${d} ${l}`;
  assertClose(await h.data(), want.relH, { atol: 1e-5, rtol: 1e-4, what: `${what} relH` });
  assertClose(await w.data(), want.relW, { atol: 1e-5, rtol: 1e-4, what: `${what} relW` });
  h.dispose();
  w.dispose();
}

Deno.test("relPosTerms matches float64 on awkward shapes, q dense, transposed or a strided projection", async () => {
  // Without gradients: the one-pass kernel (vec4 and scalar items), then the batched matmuls.
  for (const composed of [false, true]) {
    const old = F.setRelPosTermsComposed(composed);
    try {
      await check(1, 1, 1, 1, 1, 1, 1, "dense", 1);
      await check(1, 3, 4, 5, 4, 5, 8, "transposed", 2);
      await check(2, 3, 3, 7, 5, 13, 6, "projection", 3);
      await check(3, 2, 14, 14, 14, 14, 16, "projection", 4);
      await check(1, 2, 6, 2, 11, 3, 5, "dense", 5);
      await check(1, 2, 4, 4, 7, 7, 12, "dense", 6);
    } finally {
      F.setRelPosTermsComposed(old);
    }
  }
});

Deno.test("relPosTerms: random shapes and layouts match float64 (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 3 })),
      fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 })),
      fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 })),
      fc.integer({ min: 1, max: 12 }),
      fc.constantFrom<Layout>("dense", "transposed", "projection"),
      async ([B, H], [qh, qw], [kh, kw], d, l) =>
        await check(B, H, qh, qw, kh, kw, d, l, B + H + qh + qw + kh + kw + d),
    ),
    { numRuns: 10 },
  );
});

Deno.test("relPosTerms gradients pass finite differences (q strided, both tables)", async () => {
  const [B, H, qh, qw, d] = [1, 2, 2, 3, 4];
  await gradCheck(
    (p, rh, rw) => {
      const q = F.select(
        F.permute(F.reshape(p, [B, qh * qw, 3, H, d]), [2, 0, 3, 1, 4]),
        0,
        1,
      );
      const r = F.relPosTerms(q, rh, rw, qh, qw);
      return F.concat([F.reshape(r.relH, [-1]), F.reshape(r.relW, [-1])], 0);
    },
    [{ shape: [B, qh * qw, 3 * H * d] }, { shape: [qh, 3, d] }, { shape: [qw, 5, d] }],
  );
});

Deno.test("relPosTerms rejects mismatched shapes with a clear error", () => {
  const q = F.zeros([2, 6, 4]);
  assert.throws(
    () => F.relPosTerms(q, F.zeros([2, 3, 4]), F.zeros([3, 3, 4]), 3, 3),
    /q \[G, 3·3, d\]/,
  );
  assert.throws(
    () => F.relPosTerms(q, F.zeros([2, 3, 5]), F.zeros([3, 3, 4]), 2, 3),
    /rh \[2, kh, d\]/,
  );
  q.dispose();
});
