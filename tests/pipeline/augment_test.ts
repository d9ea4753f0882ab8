import fc from "fast-check";
import { tensor } from "../../engine/mod.ts";
import { Rng } from "../../engine/rng.ts";
import {
  augment,
  type AugmentParams,
  augmentWith,
  identityParams,
  sampleAugmentParams,
} from "../../pipeline/data/augment.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";
import { colourRef, geometricRef } from "../reference/augment.ts";

await setup();

const P = (over: Partial<AugmentParams>): AugmentParams => ({ ...identityParams(), ...over });

/** Runs `params` on a random batch and checks every sample against the float64 references. */
async function checkBatch(
  h: number,
  w: number,
  params: AugmentParams[],
  seed: number,
  withMask = true,
) {
  const n = params.length, hw = h * w;
  const x = randArray(n * 3 * hw, seed, 0, 1);
  const m = randArray(n * hw, seed + 1, 0, 1).map((v) => (v > 0.5 ? 1 : 0));
  const xt = tensor(x, [n, 3, h, w]), mt = tensor(m, [n, 1, h, w]);
  const out = augmentWith(xt, params, withMask ? mt : undefined);
  const got = await out.images.data();
  const gotM = withMask ? await out.mask!.data() : null;
  for (let s = 0; s < n; s++) {
    const p = params[s];
    const geo = geometricRef(x.subarray(s * 3 * hw, (s + 1) * 3 * hw), 3, h, w, p);
    const ref = colourRef(geo.out, hw, p);
    const g = got.subarray(s * 3 * hw, (s + 1) * 3 * hw);
    if (geo.ambiguous.some((v) => v)) {
      // Pixels at a rounding tie may take either neighbour: compare only the others (colour ops are
      // per pixel except contrast's mean, which one pixel moves by < 1/hw).
      const keep = (i: number) => !geo.ambiguous[i % hw];
      const idx = Array.from({ length: 3 * hw }, (_, i) => i).filter(keep);
      assertClose(idx.map((i) => g[i]), idx.map((i) => ref[i]), {
        what: `sample ${s}`,
        atol: 2e-3,
        rtol: 0,
      });
    } else {
      assertClose(g, ref, { what: `sample ${s} ${JSON.stringify(p)}`, atol: 2e-5, rtol: 1e-5 });
    }
    if (gotM) {
      const mr = geometricRef(m.subarray(s * hw, (s + 1) * hw), 1, h, w, p);
      const gm = gotM.subarray(s * hw, (s + 1) * hw);
      for (let i = 0; i < hw; i++) {
        if (!mr.ambiguous[i] && gm[i] !== mr.out[i]) {
          throw new Error(`mask sample ${s} pixel ${i}: ${gm[i]} != ${mr.out[i]}`);
        }
      }
    }
  }
  for (const t of [xt, mt, out.images, out.mask]) t?.dispose();
}

Deno.test("flips and quarter turns are exact permutations (odd and even squares)", async () => {
  for (const side of [17, 16]) {
    const params = [
      P({ hflip: true }),
      P({ vflip: true }),
      P({ angle: 90 }),
      P({ angle: 180, hflip: true }),
      P({ angle: 270, vflip: true }),
      P({ angle: 360 }),
    ];
    const n = params.length, hw = side * side;
    const x = randArray(n * 3 * hw, side, 0, 1);
    const xt = tensor(x, [n, 3, side, side]);
    const out = augmentWith(xt, params);
    const got = await out.images.data();
    for (let s = 0; s < n; s++) {
      const ref = geometricRef(x.subarray(s * 3 * hw, (s + 1) * 3 * hw), 3, side, side, params[s]);
      const g = got.subarray(s * 3 * hw, (s + 1) * 3 * hw);
      for (let i = 0; i < 3 * hw; i++) {
        if (g[i] !== Math.fround(ref.out[i])) {
          throw new Error(`side ${side} sample ${s} element ${i}: ${g[i]} != ${ref.out[i]}`);
        }
      }
      // A quarter turn of a square is a permutation: the multiset of values is kept.
      const a = Array.from(g).sort(),
        b = Array.from(x.subarray(s * 3 * hw, (s + 1) * 3 * hw)).sort();
      if (a.join() !== b.join()) throw new Error(`sample ${s}: not a permutation`);
    }
    xt.dispose();
    out.images.dispose();
  }
});

Deno.test("rotation by arbitrary angles matches the reference on 17×23 (with mask)", async () => {
  await checkBatch(17, 23, [
    P({ angle: 33.3 }),
    P({ angle: 211, hflip: true, vflip: true }),
    P({ angle: 359.9 }),
    P({ angle: 45 }),
  ], 3);
});

Deno.test("each colour op alone matches float64 torchvision formulas", async () => {
  const ops: Partial<AugmentParams>[] = [
    { jitter: true, brightness: 1.17 },
    { jitter: true, brightness: 0.81 },
    { jitter: true, contrast: 1.19 },
    { jitter: true, contrast: 0.83 },
    { jitter: true, saturation: 1.2 },
    { jitter: true, saturation: 0.8 },
    { jitter: true, hue: 0.17 },
    { jitter: true, hue: -0.2 },
    { grayscale: true },
  ];
  await checkBatch(17, 23, ops.map(P), 5, false);
});

Deno.test("full random pipeline (random orders, all ops) matches the reference", async () => {
  const params = sampleAugmentParams(new Rng(11), 6);
  params[0].grayscale = true;
  params[1].order = [3, 1, 0, 2];
  params[2].order = [1, 0, 2, 3];
  await checkBatch(17, 23, params, 9);
  // Large enough for several partial sums per sample in the contrast mean.
  await checkBatch(
    97,
    131,
    sampleAugmentParams(new Rng(12), 2).map((p) => ({
      ...p,
      order: [1, 3, 0, 2] as AugmentParams["order"],
    })),
    10,
  );
});

Deno.test("same seed, same batch: determinism; parameters follow the configured ranges", async () => {
  const x = tensor(randArray(4 * 3 * 64, 2, 0, 1), [4, 3, 8, 8]);
  const a = augment(x, new Rng(5)), b = augment(x, new Rng(5)), c = augment(x, new Rng(6));
  const [da, db, dc] = [await a.images.data(), await b.images.data(), await c.images.data()];
  if (da.join() !== db.join()) throw new Error("same seed gave different outputs");
  if (da.join() === dc.join()) throw new Error("different seeds gave identical outputs");
  for (const t of [x, a.images, b.images, c.images]) t.dispose();
  const ps = sampleAugmentParams(new Rng(1), 2000);
  const frac = (f: (p: AugmentParams) => boolean) => ps.filter(f).length / ps.length;
  const near = (v: number, want: number, tol: number, what: string) => {
    if (Math.abs(v - want) > tol) throw new Error(`${what}: ${v}, expected about ${want}`);
  };
  near(frac((p) => p.hflip), 0.5, 0.05, "hflip rate");
  near(frac((p) => p.vflip), 0.5, 0.05, "vflip rate");
  near(frac((p) => p.grayscale), 0.1, 0.03, "grayscale rate");
  near(frac((p) => p.order[0] === 1), 0.25, 0.04, "contrast first");
  for (const p of ps) {
    if (!(p.angle >= 0 && p.angle < 360 && Math.abs(p.hue) <= 0.2)) {
      throw new Error(`out of range: ${JSON.stringify(p)}`);
    }
    for (const f of [p.brightness, p.contrast, p.saturation]) {
      if (!(f >= 0.8 && f <= 1.2)) throw new Error(`factor ${f}`);
    }
    if ([...p.order].sort().join() !== "0,1,2,3") throw new Error(`order ${p.order}`);
  }
});

Deno.test("identity parameters leave any image unchanged (fast-check)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 9 }),
      fc.nat(1000),
      fc.constantFrom<Partial<AugmentParams>>({}, { angle: 0, jitter: true }, {
        jitter: true,
        order: [3, 2, 1, 0],
      }),
      async (n, h, w, seed, over) => {
        const x = randArray(n * 3 * h * w, seed, 0, 1);
        const xt = tensor(x, [n, 3, h, w]);
        const out = augmentWith(xt, Array.from({ length: n }, () => P(over)));
        // Brightness/contrast/saturation 1 are exact; a hue shift of 0 round-trips HSV (≈1 ulp).
        assertClose(await out.images.data(), x, {
          what: "identity",
          atol: over.jitter ? 1e-6 : 0,
          rtol: 0,
        });
        xt.dispose();
        out.images.dispose();
      },
    ),
    { numRuns: 10 },
  );
});

Deno.test("bad inputs give clear errors", () => {
  const x = tensor(new Float32Array(2 * 3 * 4), [2, 3, 2, 2]);
  const bad = (f: () => unknown, re: RegExp) => {
    try {
      f();
    } catch (e) {
      if (!re.test((e as Error).message)) throw new Error(`wrong message: ${(e as Error).message}`);
      return;
    }
    throw new Error("no error");
  };
  bad(() => augmentWith(x, [identityParams()]), /1 parameter sets for a batch of 2/);
  bad(() => augmentWith(x, [identityParams(), identityParams()], x), /mask must be/);
  bad(() => augmentWith(x, [P({ order: [0, 0, 1, 2] }), identityParams()]), /permutation/);
  x.dispose();
});
