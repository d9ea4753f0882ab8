/**
 * SAM's attention (model/sam/attention.ts) on the composed path software adapters take: heads as
 * strided views of a projection ([B, H, N, d], read in place), the decomposed relative-position
 * bias and the scale applied inside the bias softmax, groups of heads under a lowered binding
 * limit; against a float64 reference, the fused kernel, and finite differences.
 */
import fc from "fast-check";
import assert from "node:assert";
import { F, setBindingLimitForTests, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import { attention, relPosIndex, setAttentionImpl } from "../../model/sam/attention.ts";
import { attentionRef } from "../reference/attention.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";

await setup();

interface Case {
  b: number;
  h: number;
  qh: number;
  qw: number;
  d: number;
  rel: boolean;
}

/** Host copy of the [B, N, 3, H, d] projection's q, k or v (which = 0, 1, 2) as [B·H, N, d]. */
function headsOf(x: Float32Array, c: Case, which: number): Float64Array {
  const n = c.qh * c.qw, out = new Float64Array(c.b * c.h * n * c.d);
  for (let b = 0; b < c.b; b++) {
    for (let h = 0; h < c.h; h++) {
      for (let i = 0; i < n; i++) {
        for (let e = 0; e < c.d; e++) {
          out[((b * c.h + h) * n + i) * c.d + e] =
            x[(((b * n + i) * 3 + which) * c.h + h) * c.d + e];
        }
      }
    }
  }
  return out;
}

/** Float64 relH / relW of q [G, N, d] for the gathered tables rh [qh, qh, d], rw [qw, qw, d]. */
function relRef(q: Float64Array, rh: Float32Array, rw: Float32Array, g: number, c: Case) {
  const n = c.qh * c.qw,
    relH = new Float64Array(g * n * c.qh),
    relW = new Float64Array(g * n * c.qw);
  for (let gi = 0; gi < g; gi++) {
    for (let y = 0; y < c.qh; y++) {
      for (let x = 0; x < c.qw; x++) {
        const i = y * c.qw + x, qb = (gi * n + i) * c.d;
        for (let k = 0; k < c.qh; k++) {
          let s = 0;
          for (let e = 0; e < c.d; e++) s += q[qb + e] * rh[(y * c.qh + k) * c.d + e];
          relH[(gi * n + i) * c.qh + k] = s;
        }
        for (let k = 0; k < c.qw; k++) {
          let s = 0;
          for (let e = 0; e < c.d; e++) s += q[qb + e] * rw[(x * c.qw + k) * c.d + e];
          relW[(gi * n + i) * c.qw + k] = s;
        }
      }
    }
  }
  return { relH, relW };
}

/** The strided q, k, v views of one projection tensor, as SAM's encoder makes them. */
function views(proj: Tensor, c: Case): [Tensor, Tensor, Tensor] {
  const n = c.qh * c.qw;
  const qkv = F.permute(F.reshape(proj, [c.b, n, 3, c.h, c.d]), [2, 0, 3, 1, 4]);
  return [F.select(qkv, 0, 0), F.select(qkv, 0, 1), F.select(qkv, 0, 2)];
}

function gathered(table: Tensor, size: number, d: number): Tensor {
  return F.reshape(
    F.indexSelect(table, 0, tensor(relPosIndex(size, size), [size * size], "i32")),
    [size, size, d],
  );
}

async function check(c: Case, seed: number, limit: number | null = null): Promise<void> {
  const n = c.qh * c.qw, g = c.b * c.h, scale = c.d ** -0.5;
  const x = randArray(c.b * n * 3 * c.h * c.d, seed, -2, 2);
  const th = randArray((2 * c.qh - 1) * c.d, seed + 1, -1, 1);
  const tw = randArray((2 * c.qw - 1) * c.d, seed + 2, -1, 1);
  const q = headsOf(x, c, 0), k = headsOf(x, c, 1), v = headsOf(x, c, 2);
  let rel = undefined;
  if (c.rel) {
    const rh = new Float32Array(c.qh * c.qh * c.d), rw = new Float32Array(c.qw * c.qw * c.d);
    const ih = relPosIndex(c.qh, c.qh), iw = relPosIndex(c.qw, c.qw);
    ih.forEach((r, j) => rh.set(th.subarray(r * c.d, (r + 1) * c.d), j * c.d));
    iw.forEach((r, j) => rw.set(tw.subarray(r * c.d, (r + 1) * c.d), j * c.d));
    rel = { ...relRef(q, rh, rw, g, c), kh: c.qh, kw: c.qw };
  }
  const want = attentionRef({ g, nq: n, nk: n, d: c.d, q, k, v, scale, ...rel }).out;
  setBindingLimitForTests(limit);
  try {
    for (const impl of ["composed", "fused", "texture"] as const) {
      setAttentionImpl(impl);
      const got = tidy(() => {
        const [q4, k4, v4] = views(tensor(x, [c.b, n, 3 * c.h * c.d]), c);
        const rp = c.rel
          ? {
            rh: gathered(tensor(th, [2 * c.qh - 1, c.d]), c.qh, c.d),
            rw: gathered(tensor(tw, [2 * c.qw - 1, c.d]), c.qw, c.d),
            qh: c.qh,
            qw: c.qw,
          }
          : undefined;
        const o4 = attention(q4, k4, v4, scale, rp);
        assert.deepStrictEqual(o4.shape, [c.b, c.h, n, c.d]);
        // The rank-3 form [B·H, N, d] gives the same result.
        const o3 = attention(
          F.reshape(q4, [g, n, c.d]),
          F.reshape(k4, [g, n, c.d]),
          F.reshape(v4, [g, n, c.d]),
          scale,
          rp,
        );
        return F.concat([F.reshape(o4, [g, n, c.d]), o3], 0);
      });
      const d = await got.data() as Float32Array;
      got.dispose();
      const what = `${impl} attention ${JSON.stringify(c)} limit ${limit}`;
      assertClose(d.subarray(0, want.length), want, { atol: 2e-5, rtol: 2e-4, what });
      assertClose(d.subarray(want.length), want, {
        atol: 2e-5,
        rtol: 2e-4,
        what: `${what}, rank 3`,
      });
    }
  } finally {
    setAttentionImpl(null);
    setBindingLimitForTests(null);
  }
}

Deno.test("SAM attention on strided heads matches float64 (with and without the relative-position bias)", async () => {
  await check({ b: 1, h: 3, qh: 4, qw: 5, d: 8, rel: true }, 1);
  await check({ b: 2, h: 2, qh: 3, qw: 3, d: 5, rel: true }, 2);
  await check({ b: 2, h: 3, qh: 1, qw: 7, d: 4, rel: false }, 3);
});

Deno.test("SAM attention: groups of heads under a lowered binding limit match float64", async () => {
  // One head's 20×20 scores are 1600 bytes: 4096 bytes allow one head per group, split per batch.
  await check({ b: 2, h: 3, qh: 4, qw: 5, d: 8, rel: true }, 4, 4096);
  await check({ b: 2, h: 3, qh: 4, qw: 5, d: 4, rel: false }, 5, 4096);
});

Deno.test("SAM attention: random shapes match float64 (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        b: fc.integer({ min: 1, max: 2 }),
        h: fc.integer({ min: 1, max: 3 }),
        qh: fc.integer({ min: 1, max: 5 }),
        qw: fc.integer({ min: 1, max: 6 }),
        d: fc.integer({ min: 1, max: 9 }),
        rel: fc.boolean(),
      }),
      async (c) => await check(c, c.b + 3 * c.h + 5 * c.qh + 7 * c.qw + 11 * c.d),
    ),
    { numRuns: 6 },
  );
});

Deno.test("SAM attention (composed) gradients pass finite differences: projection and both tables", async () => {
  const c = { b: 1, h: 2, qh: 2, qw: 3, d: 4 };
  const n = c.qh * c.qw;
  setAttentionImpl("composed");
  try {
    await gradCheck(
      (proj, th, tw) => {
        const [q, k, v] = views(proj, { ...c, rel: true });
        const rp = { rh: gathered(th, c.qh, c.d), rw: gathered(tw, c.qw, c.d), qh: c.qh, qw: c.qw };
        return attention(q, k, v, 0.7, rp);
      },
      [
        { shape: [c.b, n, 3 * c.h * c.d] },
        { shape: [2 * c.qh - 1, c.d] },
        { shape: [2 * c.qw - 1, c.d] },
      ],
    );
    await gradCheck(
      (proj) => {
        const [q, k, v] = views(proj, { ...c, rel: false });
        return attention(q, k, v, 0.7);
      },
      [{ shape: [c.b, n, 3 * c.h * c.d] }],
    );
  } finally {
    setAttentionImpl(null);
  }
});

Deno.test("SAM attention rejects mismatched operands with a clear error", () => {
  const q = tensor(new Float32Array(24), [2, 3, 4]);
  assert.throws(() => attention(q, F.zeros([2, 5, 3]), F.zeros([2, 5, 3]), 1), /k, v \[G, Nk, d\]/);
  assert.throws(() => attention(q, F.zeros([1, 2, 5, 4]), F.zeros([1, 2, 5, 4]), 1), /got q/);
  q.dispose();
});
