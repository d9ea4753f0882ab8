import fc from "fast-check";
import {
  backward,
  F,
  memoryStats,
  pool,
  requireGrad,
  type Tensor,
  tensor,
  tidy,
  tidyAsync,
} from "../../engine/mod.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { attentionGradRef, attentionRef, type AttnRefInput } from "../reference/attention.ts";

await setup();

interface Case {
  g: number;
  nq: number;
  nk: number;
  d: number;
  kh?: number;
  kw?: number;
  seed?: number;
  /** Spread of the inputs: larger gives peakier softmax rows. */
  amp?: number;
}

function makeCase(c: Case): AttnRefInput {
  const { g, nq, nk, d, seed = 1, amp = 1 } = c;
  const a: AttnRefInput = {
    g,
    nq,
    nk,
    d,
    q: randArray(g * nq * d, seed, -amp, amp),
    k: randArray(g * nk * d, seed + 1, -amp, amp),
    v: randArray(g * nk * d, seed + 2),
    scale: 1 / Math.sqrt(d),
  };
  if (c.kh && c.kw) {
    a.kh = c.kh;
    a.kw = c.kw;
    a.relH = randArray(g * nq * c.kh, seed + 3, -amp, amp);
    a.relW = randArray(g * nq * c.kw, seed + 4, -amp, amp);
  }
  return a;
}

function upload(
  a: AttnRefInput,
): { q: Tensor; k: Tensor; v: Tensor; relH?: Tensor; relW?: Tensor } {
  return {
    q: tensor(a.q, [a.g, a.nq, a.d]),
    k: tensor(a.k, [a.g, a.nk, a.d]),
    v: tensor(a.v, [a.g, a.nk, a.d]),
    relH: a.relH ? tensor(a.relH, [a.g, a.nq, a.kh!]) : undefined,
    relW: a.relW ? tensor(a.relW, [a.g, a.nq, a.kw!]) : undefined,
  };
}

/** The fused forward of case `a` (uploaded here): the output and each row's log-sum-exp. */
function rawForward(a: AttnRefInput, f16 = false): { out: Tensor; lse: Tensor } {
  const t = upload(a);
  return F.flashAttentionRaw(t.q, t.k, t.v, { scale: a.scale, relH: t.relH, relW: t.relW, f16 });
}

async function checkForward(c: Case, tol = 2e-5, f16 = false): Promise<void> {
  const a = makeCase(c);
  const ref = attentionRef(a);
  await tidyAsync(async () => {
    const { out, lse } = rawForward(a, f16);
    const what = `[${c.g}, ${c.nq}, ${c.nk}, ${c.d}]${c.kh ? ` grid ${c.kh}x${c.kw}` : ""}${
      f16 ? " f16" : ""
    }`;
    assertClose(await out.data(), ref.out, { what: `out ${what}`, atol: tol, rtol: tol });
    assertClose(await lse.data(), ref.lse, { what: `lse ${what}`, atol: tol, rtol: tol });
  });
}

Deno.test("flash attention forward matches float64 on awkward shapes", async () => {
  await checkForward({ g: 3, nq: 7, nk: 13, d: 5 });
  await checkForward({ g: 3, nq: 7, nk: 13, d: 5, kh: 13, kw: 1 });
  await checkForward({ g: 2, nq: 70, nk: 12, d: 16, kh: 3, kw: 4, amp: 3 });
  // Several key tiles (tile = 16 at d = 128) and a partial query block.
  await checkForward({ g: 1, nq: 65, nk: 37, d: 128, kh: 37, kw: 1 });
  await checkForward({ g: 2, nq: 7, nk: 100, d: 80, kh: 10, kw: 10 });
  // Mask-decoder shapes: few queries over many keys and the reverse.
  await checkForward({ g: 2, nq: 7, nk: 300, d: 16, amp: 2 });
  await checkForward({ g: 2, nq: 300, nk: 7, d: 16 });
  // Peaky rows: large logits must not overflow the running sum.
  await checkForward({ g: 1, nq: 9, nk: 50, d: 8, kh: 5, kw: 10, amp: 6 }, 1e-4);
});

Deno.test("flash attention forward: random small shapes (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 80 }),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 1, max: 40 }),
      fc.boolean(),
      fc.nat(1000),
      async (g, nq, kh, kw, d, bias, seed) => {
        await checkForward({
          g,
          nq,
          nk: kh * kw,
          d,
          kh: bias ? kh : undefined,
          kw: bias ? kw : undefined,
          seed,
        }, 3e-5);
      },
    ),
    { numRuns: 12 },
  );
});

Deno.test("flash attention forward: G=2, N=1000, d=64 on a few rows", async () => {
  const a = makeCase({ g: 2, nq: 1000, nk: 1000, d: 64, kh: 25, kw: 40, amp: 2 });
  const rows: [number, number][] = [[0, 0], [0, 511], [1, 999], [1, 64], [0, 63]];
  const ref = attentionRef(a, rows);
  await tidyAsync(async () => {
    const { out, lse } = rawForward(a);
    const o = await out.data(), l = await lse.data();
    const got = new Float64Array(rows.length * 64), gotL = new Float64Array(rows.length);
    rows.forEach(([g, i], r) => {
      got.set(o.subarray((g * 1000 + i) * 64, (g * 1000 + i + 1) * 64), r * 64);
      gotL[r] = l[g * 1000 + i];
    });
    assertClose(got, ref.out, { what: "out rows", atol: 2e-5, rtol: 1e-4 });
    assertClose(gotL, ref.lse, { what: "lse rows", atol: 2e-5, rtol: 1e-5 });
  });
});

Deno.test("flash attention forward: f16-staged K/V stays close", async () => {
  const { gpu } = await import("../../engine/mod.ts");
  if (!gpu().features.f16) return;
  await checkForward({ g: 2, nq: 33, nk: 20, d: 24, kh: 4, kw: 5 }, 5e-3, true);
});

async function checkBackward(c: Case, tol = 5e-5): Promise<void> {
  const a = makeCase(c);
  const dOut = randArray(a.g * a.nq * a.d, 99);
  const ref = attentionGradRef(a, dOut);
  const t = upload(a);
  const leaves = [t.q, t.k, t.v, ...(t.relH ? [t.relH, t.relW!] : [])];
  leaves.forEach((x) => requireGrad(x));
  const y = F.flashAttention(t.q, t.k, t.v, { scale: a.scale, relH: t.relH, relW: t.relW });
  const dt = tensor(dOut, y.shape);
  backward(y, dt);
  const names = ["dq", "dk", "dv", "dRelH", "dRelW"] as const;
  for (let n = 0; n < leaves.length; n++) {
    const what = `${names[n]} [${c.g}, ${c.nq}, ${c.nk}, ${c.d}]${
      c.kh ? ` grid ${c.kh}x${c.kw}` : ""
    }`;
    assertClose(await leaves[n].grad!.data(), ref[names[n]], { what, atol: tol, rtol: tol });
  }
  for (const x of [...leaves, y, dt]) {
    x.grad?.dispose();
    x.dispose();
  }
}

Deno.test("flash attention backward matches float64 gradients", async () => {
  await checkBackward({ g: 3, nq: 7, nk: 13, d: 5 });
  await checkBackward({ g: 3, nq: 7, nk: 13, d: 5, kh: 13, kw: 1 });
  await checkBackward({ g: 2, nq: 70, nk: 12, d: 16, kh: 3, kw: 4, amp: 2 });
  await checkBackward({ g: 1, nq: 20, nk: 90, d: 64, kh: 9, kw: 10 });
  await checkBackward({ g: 1, nq: 67, nk: 66, d: 128, kh: 6, kw: 11 });
  await checkBackward({ g: 2, nq: 7, nk: 200, d: 16 });
  await checkBackward({ g: 2, nq: 200, nk: 7, d: 16 });
});

Deno.test("flash attention gradCheck (G=3, Nq=7, Nk=13, d=5), with and without the bias", async () => {
  const scale = 1 / Math.sqrt(5);
  await gradCheck(
    (q, k, v) => F.flashAttention(q, k, v, { scale }),
    [{ shape: [3, 7, 5] }, { shape: [3, 13, 5] }, { shape: [3, 13, 5] }],
  );
  await gradCheck(
    (q, k, v, rh, rw) => F.flashAttention(q, k, v, { scale, relH: rh, relW: rw, kGrid: [13, 1] }),
    [{ shape: [3, 7, 5] }, { shape: [3, 13, 5] }, { shape: [3, 13, 5] }, { shape: [3, 7, 13] }, {
      shape: [3, 7, 1],
    }],
    { coords: 5 },
  );
  // A strided q (a transposed view) and a 2×6 key grid.
  await gradCheck(
    (q, k, v, rh, rw) =>
      F.flashAttention(F.transpose(q, 0, 1), k, v, { scale, relH: rh, relW: rw }),
    [{ shape: [7, 3, 5] }, { shape: [3, 12, 5] }, { shape: [3, 12, 5] }, { shape: [3, 7, 2] }, {
      shape: [3, 7, 6],
    }],
    { coords: 5 },
  );
});

Deno.test("flash attention rejects mismatched shapes with a clear error", () => {
  tidy(() => {
    const q = F.zeros([2, 3, 4]), k = F.zeros([2, 5, 4]);
    const bad = (f: () => unknown, re: RegExp) => {
      try {
        f();
      } catch (e) {
        if (!re.test((e as Error).message)) throw e;
        return;
      }
      throw new Error(`expected an error matching ${re}`);
    };
    bad(() => F.flashAttention(q, F.zeros([2, 5, 3]), k, { scale: 1 }), /k, v \[G, Nk, d\]/);
    bad(
      () =>
        F.flashAttention(q, k, k, { scale: 1, relH: F.zeros([2, 3, 2]), relW: F.zeros([2, 3, 2]) }),
      /kh·kw/,
    );
    bad(
      () => F.flashAttention(q, k, k, { scale: 1, relH: F.zeros([2, 3, 5]) }),
      /both relH and relW/,
    );
  });
});

Deno.test("flash attention never allocates the score matrix (peak memory, N=2048)", async () => {
  // The G=12, N=4096, d=64 version of this check takes minutes on lavapipe: bench/attention.ts.
  const [g, n, d] = [1, 2048, 32];
  const bytes = g * n * d * 4;
  const q = tensor(randArray(g * n * d, 5), [g, n, d]);
  const k = tensor(randArray(g * n * d, 6), [g, n, d]);
  const v = tensor(randArray(g * n * d, 7), [g, n, d]);
  pool.resetPeak();
  const before = memoryStats().liveBytes;
  const { out, lse } = F.flashAttentionRaw(q, k, v, { scale: 0.125 });
  const row = (await out.data()).subarray(0, d);
  const peak = memoryStats().peakBytes - before;
  // Output + lse + running-sum scratch; one score slice alone would be n·n·4 = 64× the output.
  if (peak > 1.5 * bytes) {
    throw new Error(`forward allocated ${peak} bytes beyond its inputs (output is ${bytes})`);
  }
  if (!row.every(Number.isFinite)) throw new Error("non-finite output");
  for (const t of [q, k, v, out, lse]) t.dispose();
});

Deno.test("flash attention: chunked dispatches (software loop cap) agree with one dispatch", async () => {
  // Long loops are split over dispatches on lavapipe; force small chunks so the carry of the
  // running max/sum, dQ, dK/dV and a dRelH row split across a chunk boundary are all exercised.
  const a = makeCase({ g: 2, nq: 21, nk: 30, d: 6, kh: 5, kw: 6 });
  const dOut = randArray(a.g * a.nq * a.d, 98);
  const ref = attentionGradRef(a, dOut);
  const fwd = attentionRef(a);
  for (const chunk of [1, 7, 64]) {
    await tidyAsync(async () => {
      const t = upload(a);
      const opts = { scale: a.scale, relH: t.relH, relW: t.relW, chunk };
      const { out, lse } = F.flashAttentionRaw(t.q, t.k, t.v, opts);
      assertClose(await out.data(), fwd.out, {
        what: `out chunk ${chunk}`,
        atol: 2e-5,
        rtol: 2e-5,
      });
      const r = F.flashAttentionBackwardRaw(t.q, t.k, t.v, out, lse, tensor(dOut, out.shape), opts);
      const got = { dq: r.dq, dk: r.dk!, dv: r.dv!, dRelH: r.dRelH!, dRelW: r.dRelW! };
      for (const [name, x] of Object.entries(got)) {
        assertClose(await x.data(), ref[name as keyof typeof ref], {
          what: `${name} chunk ${chunk}`,
          atol: 5e-5,
          rtol: 5e-5,
        });
      }
    });
  }
});
