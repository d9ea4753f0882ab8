/**
 * SAM's attention through textures (engine/ops/attention_texture.ts: scores texture, bias softmax
 * into the product's texture, heads written merged) against the float64 reference, on awkward
 * shapes (one head, one query, odd query counts and head dims, key grids whose KW is odd, 14 or
 * 64), on strided q/k/v views of one projection, over several passes under a lowered binding limit,
 * and its refusals. No gradient check: the op has no backward (it refuses when one is recorded).
 */
import fc from "fast-check";
import assert from "node:assert";
import {
  F,
  noGrad,
  requireGrad,
  setBindingLimitForTests,
  type Tensor,
  tensor,
  tidy,
} from "../../engine/mod.ts";
import { relBiasTexturePeriod } from "../../kernels/softmax_relbias.ts";
import { attentionRef } from "../reference/attention.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

await setup();

interface Case {
  b: number;
  h: number;
  nq: number;
  kh: number;
  kw: number;
  d: number;
}

/**
 * q, k, v as strided [B, H, n, d] views of one [B, n, 3, H, d] projection when nq = nk (SAM's
 * layout), else as permuted views of [B, n, H, d] tensors; host copies [B·H, n, d] in f64.
 */
function operands(c: Case, seed: number) {
  const nk = c.kh * c.kw, g = c.b * c.h;
  const host = (x: Float32Array, n: number, stride: number, pick: number) => {
    const out = new Float64Array(g * n * c.d);
    for (let b = 0; b < c.b; b++) {
      for (let h = 0; h < c.h; h++) {
        for (let i = 0; i < n; i++) {
          for (let e = 0; e < c.d; e++) {
            out[((b * c.h + h) * n + i) * c.d + e] =
              x[((b * n + i) * stride + pick) * c.h * c.d + h * c.d + e];
          }
        }
      }
    }
    return out;
  };
  if (c.nq === nk) {
    const x = randArray(c.b * nk * 3 * c.h * c.d, seed, -2, 2);
    const make = () => {
      const p = F.permute(F.reshape(tensor(x, [c.b, nk, 3 * c.h * c.d]), [c.b, nk, 3, c.h, c.d]), [
        2,
        0,
        3,
        1,
        4,
      ]);
      return [0, 1, 2].map((i) => F.select(p, 0, i)) as [Tensor, Tensor, Tensor];
    };
    return { make, q: host(x, nk, 3, 0), k: host(x, nk, 3, 1), v: host(x, nk, 3, 2) };
  }
  const xq = randArray(c.b * c.nq * c.h * c.d, seed, -2, 2);
  const xk = randArray(c.b * nk * c.h * c.d, seed + 1, -2, 2);
  const xv = randArray(c.b * nk * c.h * c.d, seed + 2, -2, 2);
  const heads = (x: Float32Array, n: number) =>
    F.permute(tensor(x, [c.b, n, c.h, c.d]), [0, 2, 1, 3]);
  const make = () => [heads(xq, c.nq), heads(xk, nk), heads(xv, nk)] as [Tensor, Tensor, Tensor];
  return { make, q: host(xq, c.nq, 1, 0), k: host(xk, nk, 1, 0), v: host(xv, nk, 1, 0) };
}

async function check(c: Case, seed: number, limit: number | null = null): Promise<void> {
  const nk = c.kh * c.kw, g = c.b * c.h, scale = c.d ** -0.5;
  const o = operands(c, seed);
  const relH = randArray(g * c.nq * c.kh, seed + 5, -2, 2);
  const relW = randArray(g * c.nq * c.kw, seed + 6, -2, 2);
  const want = attentionRef({
    g,
    nq: c.nq,
    nk,
    d: c.d,
    q: o.q,
    k: o.k,
    v: o.v,
    scale,
    relH,
    relW,
    kh: c.kh,
    kw: c.kw,
  }).out;
  setBindingLimitForTests(limit);
  try {
    const got = tidy(() =>
      noGrad(() => {
        const [q, k, v] = o.make();
        const out = F.attentionTextureRaw(
          q,
          k,
          v,
          tensor(relH, [g, c.nq, c.kh]),
          tensor(relW, [g, c.nq, c.kw]),
          scale,
        );
        assert.deepStrictEqual(out.shape, [c.b, c.h, c.nq, c.d]);
        return F.reshape(out, [g, c.nq, c.d]);
      })
    );
    const d = await got.data() as Float32Array;
    got.dispose();
    assertClose(d, want, {
      atol: 2e-5,
      rtol: 2e-4,
      what: `attentionTexture ${JSON.stringify(c)} limit ${limit}`,
    });
  } finally {
    setBindingLimitForTests(null);
  }
}

Deno.test("attentionTexture matches float64 on awkward shapes", async () => {
  const cases: Case[] = [
    { b: 1, h: 1, nq: 4, kh: 4, kw: 1, d: 1 }, // sizes 1: one head, KW 1, d 1
    { b: 1, h: 1, nq: 1, kh: 2, kw: 2, d: 4 }, // one query
    { b: 2, h: 3, nq: 7, kh: 4, kw: 3, d: 5 }, // odd queries, odd KW (period 12), odd d
    { b: 1, h: 2, nq: 20, kh: 4, kw: 5, d: 8 }, // SAM's layout (nq = nk), strided views
    { b: 1, h: 2, nq: 196, kh: 14, kw: 14, d: 16 }, // a ViT window (period 28)
    { b: 1, h: 1, nq: 130, kh: 2, kw: 64, d: 9 }, // global width 64, rows past one tile
    { b: 1, h: 1, nq: 1030, kh: 16, kw: 64, d: 3 }, // the big scores tile, rows past its last
  ];
  for (const [i, c] of cases.entries()) await check(c, 10 * i + 1);
});

Deno.test("attentionTexture: several passes under a lowered binding limit match float64", async () => {
  // 20×20 scores are 1600 bytes a slice: 4096 bytes (half: 2048) give one slice per pass.
  await check({ b: 2, h: 3, nq: 20, kh: 4, kw: 5, d: 8 }, 71, 4096);
  await check({ b: 1, h: 3, nq: 9, kh: 2, kw: 4, d: 3 }, 72, 1024);
});

Deno.test("attentionTexture: random shapes match float64 (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        b: fc.integer({ min: 1, max: 2 }),
        h: fc.integer({ min: 1, max: 3 }),
        nq: fc.integer({ min: 1, max: 40 }),
        kw: fc.integer({ min: 1, max: 9 }),
        khUnits: fc.integer({ min: 1, max: 3 }),
        d: fc.integer({ min: 1, max: 12 }),
      }),
      async (r) => {
        // KH: whole periods of lcm(KW, 4) keys.
        const per = (r.kw % 4 === 0 ? r.kw : r.kw % 2 === 0 ? 2 * r.kw : 4 * r.kw) / r.kw;
        const c = { b: r.b, h: r.h, nq: r.nq, kh: per * r.khUnits, kw: r.kw, d: r.d };
        assert.notStrictEqual(relBiasTexturePeriod(c.kh, c.kw), null);
        await check(c, r.b + 3 * r.h + 5 * r.nq + 7 * r.kw + 11 * r.d);
      },
    ),
    { numRuns: 8 },
  );
});

Deno.test("attentionTexture refuses what it cannot run, naming why", () => {
  tidy(() => {
    const q = F.zeros([1, 2, 6, 4]), kv = F.zeros([1, 2, 6, 4]);
    const rh = F.zeros([2, 6, 2]), rw = F.zeros([2, 6, 3]);
    // 2×3 keys: a row of 6 is not whole periods of lcm(3, 4) = 12.
    assert.match(F.attentionTextureRefusal(q, kv, kv, rh, rw) ?? "", /not whole periods/);
    assert.throws(() => F.attentionTextureRaw(q, kv, kv, rh, rw, 1), /attentionTexture: .*periods/);
    const q2 = requireGrad(F.zeros([1, 1, 4, 4]));
    const k2 = F.zeros([1, 1, 4, 4]);
    const rh2 = F.zeros([1, 4, 1]), rw2 = F.zeros([1, 4, 4]);
    assert.match(F.attentionTextureRefusal(q2, k2, k2, rh2, rw2) ?? "", /gradients/);
    assert.strictEqual(noGrad(() => F.attentionTextureRefusal(q2, k2, k2, rh2, rw2)), null);
    assert.match(
      F.attentionTextureRefusal(F.zeros([1, 1, 4, 3]), k2, k2, rh2, rw2) ?? "",
      /shapes/,
    );
  });
});
