import assert from "node:assert/strict";
import fc from "fast-check";
import { F, type Tensor, tensor, tidyAsync } from "../../engine/mod.ts";
import { readSafetensors, toFloat32 } from "../../engine/io/safetensors.ts";
import { highFrequency, highFrequencyFft } from "../../model/highfreq.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { dftAxis, dftRows, highFrequencyRef } from "../reference/fft.ts";

await setup();

/** max |a − e| / max |e| (relative to the spectrum's scale). */
function relErr(a: ArrayLike<number>, e: ArrayLike<number>): number {
  let err = 0, mx = 1e-30;
  for (let i = 0; i < e.length; i++) {
    err = Math.max(err, Math.abs(a[i] - e[i]));
    mx = Math.max(mx, Math.abs(e[i]));
  }
  return err / mx;
}

async function checkComplex(
  c: F.Complex,
  ref: { re: ArrayLike<number>; im: ArrayLike<number> },
  tol: number,
  what: string,
) {
  const e = Math.max(relErr(await c.re.data(), ref.re), relErr(await c.im.data(), ref.im));
  assert.ok(e < tol, `${what}: relative error ${e.toExponential(2)} > ${tol}`);
}

Deno.test("fft along the last axis matches a float64 DFT (pow2 and Bluestein sizes, both directions)", async () => {
  const rows = 3;
  for (const n of [1, 2, 3, 5, 7, 8, 12, 64, 100, 127, 256, 512]) {
    const re = randArray(rows * n, n, -1, 1), im = randArray(rows * n, 1000 + n, -1, 1);
    await tidyAsync(async () => {
      const x = { re: tensor(re, [rows, n]), im: tensor(im, [rows, n]) };
      await checkComplex(F.fft(x), dftRows(re, im, n), 1e-5, `fft n=${n}`);
      await checkComplex(F.ifft(x), dftRows(re, im, n, true, 1 / n), 1e-5, `ifft n=${n}`);
    });
  }
});

Deno.test("fft: long rows (multi-pass 2048, Bluestein 700), middle axis, strided and real inputs, norms", async () => {
  await tidyAsync(async () => {
    for (const n of [2048, 700]) {
      const re = randArray(n, n, -1, 1), im = randArray(n, n + 1, -1, 1);
      await checkComplex(
        F.fft({ re: tensor(re, [1, n]), im: tensor(im, [1, n]) }),
        dftRows(re, im, n),
        1e-5,
        `fft n=${n}`,
      );
    }
    // Along a middle axis of [2, 5, 3] with a real input, every norm.
    const shape = [2, 5, 3];
    const x = randArray(30, 4, -1, 1);
    for (
      const [norm, fwd, inv] of [["backward", 1, 1 / 5], ["forward", 1 / 5, 1], [
        "ortho",
        1 / Math.sqrt(5),
        1 / Math.sqrt(5),
      ]] as const
    ) {
      await checkComplex(
        F.fft(tensor(x, shape), 1, { norm }),
        dftAxis(x, null, shape, 1, false, fwd),
        1e-5,
        `fft axis 1 ${norm}`,
      );
      await checkComplex(
        F.fft(tensor(x, shape), -2, { norm, inverse: true }),
        dftAxis(x, null, shape, 1, true, inv),
        1e-5,
        `ifft axis 1 ${norm}`,
      );
    }
    // A permuted (non-contiguous) input: the transform of its dense copy.
    const p = F.permute(tensor(x, shape), [2, 0, 1]);
    const pd = await p.data();
    await checkComplex(
      F.fft(p, 0),
      dftAxis(pd, null, [3, 2, 5], 0),
      1e-5,
      "fft of a permuted view",
    );
    assert.throws(
      () => F.fft({ re: tensor(x, shape), im: tensor(x, [30]) }),
      /fft: real part \[2,5,3\] and imaginary part \[30\]/,
    );
    assert.throws(() => F.fft(tensor(x, shape), 0, { norm: "none" as F.FftNorm }), /unknown norm/);
  });
});

Deno.test("fft2/ifft2 round trip and Parseval (fast-check over shapes and norms)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 1, max: 12 }),
      fc.constantFrom<F.FftNorm>("backward", "forward", "ortho"),
      fc.nat(1000),
      async (b, h, w, norm, seed) => {
        const shape = [b, h, w];
        const n = b * h * w;
        const re = randArray(n, seed, -1, 1), im = randArray(n, seed + 1, -1, 1);
        await tidyAsync(async () => {
          const x = { re: tensor(re, shape), im: tensor(im, shape) };
          const X = F.fft2(x, { norm });
          // 2-D reference: DFT along W then H.
          const s = norm === "forward" ? 1 / (h * w) : norm === "ortho" ? 1 / Math.sqrt(h * w) : 1;
          const r1 = dftAxis(re, im, shape, 2);
          const r2 = dftAxis(r1.re, r1.im, shape, 1, false, s);
          await checkComplex(X, r2, 2e-5, `fft2 [${shape}] ${norm}`);
          const back = F.ifft2(X, { norm });
          assertClose(await back.re.data(), re, { atol: 2e-5, rtol: 0, what: "ifft2(fft2(x)).re" });
          assertClose(await back.im.data(), im, { atol: 2e-5, rtol: 0, what: "ifft2(fft2(x)).im" });
          if (norm === "ortho") {
            const e0 = re.reduce((a, v) => a + v * v, 0) + im.reduce((a, v) => a + v * v, 0);
            const xr = Float64Array.from(await X.re.data()),
              xi = Float64Array.from(await X.im.data());
            const e1 = xr.reduce((a, v) => a + v * v, 0) + xi.reduce((a, v) => a + v * v, 0);
            assert.ok(Math.abs(e1 - e0) < 1e-4 * e0, `Parseval ${e0} vs ${e1}`);
          }
        });
      },
    ),
    { numRuns: 12 },
  );
});

Deno.test("fftshift / ifftshift roll by floor(n/2) like numpy (odd and even sizes)", async () => {
  await tidyAsync(async () => {
    const a5 = F.arange(5), a4 = F.arange(4);
    assert.deepEqual(Array.from(await F.fftshift(a5).data()), [3, 4, 0, 1, 2]);
    assert.deepEqual(Array.from(await F.ifftshift(a5).data()), [2, 3, 4, 0, 1]);
    assert.deepEqual(Array.from(await F.fftshift(a4).data()), [2, 3, 0, 1]);
    assert.deepEqual(Array.from(await F.ifftshift(a4).data()), [2, 3, 0, 1]);
    // 2-D over chosen axes, on a complex pair; ifftshift undoes fftshift.
    const x = randArray(3 * 5 * 4, 1);
    const c = { re: tensor(x, [3, 5, 4]), im: tensor(x.map((v) => -v), [3, 5, 4]) };
    const s = F.fftshift(c, [-2, -1]);
    const u = F.ifftshift(s, [-2, -1]);
    assertClose(await u.re.data(), x, { atol: 0, rtol: 0 });
    assertClose(await u.im.data(), x.map((v) => -v), { atol: 0, rtol: 0 });
    const sr = await s.re.data();
    // numpy: shifted[i, j] = x[(i - 2) mod 5, (j - 2) mod 4].
    assert.equal(sr[0 * 4 + 0], x[3 * 4 + 2]);
    assert.equal(sr[2 * 4 + 2], x[0]);
  });
});

Deno.test("fft gradients pass finite differences (fft2 w.r.t. re and im, Bluestein axis, real input)", async () => {
  const pack = (c: F.Complex): Tensor => F.stack([c.re, c.im]);
  for (const norm of ["backward", "forward", "ortho"] as const) {
    await gradCheck((a, b) => pack(F.fft2({ re: a, im: b }, { norm })), [{ shape: [2, 4, 8] }, {
      shape: [2, 4, 8],
    }], { coords: 4 });
  }
  await gradCheck(
    (a, b) => pack(F.ifft2({ re: a, im: b })),
    [{ shape: [3, 5] }, { shape: [3, 5] }],
    { coords: 4 },
  );
  await gradCheck((a) => pack(F.fft(F.square(a), 1)), [{ shape: [2, 7, 3] }]);
  await gradCheck((a) => F.abs(F.fftshift(F.fft2(a, { norm: "ortho" }), [-1]).re), [{
    shape: [5, 6],
  }]);
});

Deno.test("highFrequency matches the EP-SAM fixture and the literal float64 pipeline (odd sizes)", async () => {
  await tidyAsync(async () => {
    for (
      const shape of [[1, 3, 5, 7], [2, 3, 6, 9], [1, 2, 1, 4], [1, 3, 16, 2], [2, 3, 2, 1], [
        1,
        1,
        1,
        1,
      ], [1, 3, 300, 257]]
    ) {
      const x = randArray(shape.reduce((a, b) => a * b, 1), 17, 0, 1);
      const y = highFrequency(tensor(x, shape));
      assert.deepEqual(y.shape, [shape[0], 1, shape[2], shape[3]]);
      assertClose(await y.data(), highFrequencyRef(x, shape), {
        atol: 2e-6,
        rtol: 1e-5,
        what: `highFrequency [${shape}]`,
      });
      // The closed form (used for images) and the FFT route (used under autograd) agree.
      assertClose(await highFrequencyFft(tensor(x, shape)).data(), await y.data(), {
        atol: 2e-6,
        rtol: 1e-5,
        what: `FFT route [${shape}]`,
      });
      // The literal GPU pipeline (fftshift, zero the centre, ifftshift) agrees.
      const [, , h, w] = shape;
      const spec = F.fftshift(F.fft2(tensor(x, shape), { norm: "forward" }), [-2, -1]);
      const mask = new Float32Array(h * w).fill(1);
      const ch = Math.floor(h / 2), cw = Math.floor(w / 2);
      for (let i = Math.max(ch - 1, 0); i < Math.min(ch + 1, h); i++) {
        for (let j = Math.max(cw - 1, 0); j < Math.min(cw + 1, w); j++) mask[i * w + j] = 0;
      }
      const mt = tensor(mask, [h, w]);
      const back = F.ifft2(
        F.ifftshift({ re: F.mul(spec.re, mt), im: F.mul(spec.im, mt) }, [-2, -1]),
        { norm: "forward" },
      );
      assertClose(await F.mean(F.abs(back.re), 1, true).data(), await y.data(), {
        atol: 2e-6,
        rtol: 1e-5,
        what: "literal pipeline",
      });
    }
    if (!haveFixtures()) {
      console.warn("fixtures missing: skipping the EP-SAM high_freq comparison");
      return;
    }
    const m = await readSafetensors(fixturePath("resnet-adl-tiny", "case.safetensors"));
    const input = toFloat32(m.get("input")!), expected = toFloat32(m.get("high_freq")!);
    const y = highFrequency(tensor(input, m.get("input")!.shape));
    assert.deepEqual(y.shape, m.get("high_freq")!.shape);
    assertClose(await y.data(), expected, { atol: 2e-6, rtol: 1e-5, what: "high_freq fixture" });
  });
});
