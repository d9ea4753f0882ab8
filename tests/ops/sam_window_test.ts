// SAM's window partition / unpartition passes (engine/ops/attention.ts, kernels/attention/windows.ts)
// against float64 host references of the official pad + window_partition and
// window_unpartition + crop (tests/reference/window.ts), on awkward shapes and random ones
// (fast-check), every layout the kernels take (dense, permuted,
// offset views; scalar and vec4 items), and their gradients.
import { F, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import fc from "fast-check";
import { assertClose, gradCheck, randArray, setup } from "../util/gpu.ts";
import { partitionRef, unpartitionRef } from "../reference/window.ts";

await setup();

Deno.test("windowPartition: dense, vec4 and scalar, padded and exact grids", async () => {
  for (
    const [b, h, w, c, ws] of [[2, 5, 7, 6, 3], [1, 6, 6, 8, 3], [1, 9, 4, 12, 14], [3, 1, 1, 4, 2]]
  ) {
    const x = randArray(b * h * w * c, h * 7 + c);
    const got = tidy(() => F.windowPartition(tensor(x, [b, h, w, c]), ws));
    assertClose(await got.data() as Float32Array, partitionRef(x, b, h, w, c, ws), {
      atol: 0,
      rtol: 0,
      what: `partition ${[b, h, w, c]} ws ${ws}`,
    });
    got.dispose();
  }
});

Deno.test("windowPartition: strided inputs (permuted, offset views) read in place", async () => {
  const [b, h, w, c, ws] = [2, 5, 6, 8, 4];
  // NCHW underneath, permuted to NHWC: channel stride ≠ 1 (made dense first).
  const nchw = randArray(b * c * h * w, 3);
  const xh = new Float64Array(b * h * w * c);
  for (let bi = 0; bi < b; bi++) {
    for (let ch = 0; ch < c; ch++) {
      for (let p = 0; p < h * w; p++) {
        xh[(bi * h * w + p) * c + ch] = nchw[(bi * c + ch) * h * w + p];
      }
    }
  }
  const got = tidy(() =>
    F.windowPartition(F.permute(tensor(nchw, [b, c, h, w]), [0, 2, 3, 1]), ws)
  );
  assertClose(await got.data() as Float32Array, partitionRef(xh, b, h, w, c, ws), {
    atol: 0,
    rtol: 0,
  });
  got.dispose();
  // A channel slice at offsets 4 (vec4 items) and 1 (scalar items) of a wider grid.
  const wide = randArray(b * h * w * 13, 4);
  for (const c0 of [4, 1]) {
    const sub = new Float64Array(b * h * w * c);
    for (let p = 0; p < b * h * w; p++) {
      for (let ch = 0; ch < c; ch++) sub[p * c + ch] = wide[p * 13 + c0 + ch];
    }
    const g2 = tidy(() =>
      F.windowPartition(F.slice(tensor(wide, [b, h, w, 13]), 3, c0, c0 + c), ws)
    );
    assertClose(await g2.data() as Float32Array, partitionRef(sub, b, h, w, c, ws), {
      atol: 0,
      rtol: 0,
      what: `channel slice at ${c0}`,
    });
    g2.dispose();
  }
});

Deno.test("windowPartition with a per-channel pad value: dense and strided, vec4 and scalar", async () => {
  for (
    const [b, h, w, c, ws] of [[2, 5, 7, 6, 3], [1, 6, 6, 8, 3], [1, 9, 4, 12, 14], [1, 3, 5, 4, 2]]
  ) {
    const x = randArray(b * h * w * c, h * 5 + c), pad = randArray(c, c + 1);
    const got = tidy(() => F.windowPartition(tensor(x, [b, h, w, c]), ws, tensor(pad, [c])));
    assertClose(await got.data() as Float32Array, partitionRef(x, b, h, w, c, ws, pad), {
      atol: 0,
      rtol: 0,
      what: `partition ${[b, h, w, c]} ws ${ws} padded with values`,
    });
    got.dispose();
  }
  // A channel slice (offset 4: vec4 items; 1: scalar) of a wider grid, the pad a strided view.
  const [b, h, w, c, ws] = [1, 5, 6, 8, 4];
  const wide = randArray(b * h * w * 13, 6), padWide = randArray(2 * c, 7);
  for (const c0 of [4, 1]) {
    const sub = new Float64Array(b * h * w * c), pad = new Float64Array(c);
    for (let p = 0; p < b * h * w; p++) {
      for (let ch = 0; ch < c; ch++) sub[p * c + ch] = wide[p * 13 + c0 + ch];
    }
    for (let ch = 0; ch < c; ch++) pad[ch] = padWide[2 * ch];
    const got = tidy(() =>
      F.windowPartition(
        F.slice(tensor(wide, [b, h, w, 13]), 3, c0, c0 + c),
        ws,
        F.select(F.reshape(tensor(padWide, [2 * c]), [c, 2]), 1, 0),
      )
    );
    assertClose(await got.data() as Float32Array, partitionRef(sub, b, h, w, c, ws, pad), {
      atol: 0,
      rtol: 0,
      what: `channel slice at ${c0}, strided pad`,
    });
    got.dispose();
  }
});

Deno.test("windowPartition: a pad of the wrong shape, or one that needs a gradient, is refused", () => {
  const x = tensor(new Float32Array(2 * 3 * 4), [1, 2, 3, 4]);
  const bad = tensor(new Float32Array(3), [3]);
  const grad = tensor(new Float32Array(4), [4]);
  grad.requiresGrad = true;
  try {
    for (
      const [pad, want] of [[bad, "pad must be f32 [4]"], [grad, "pad gets no gradient"]] as const
    ) {
      let msg = "";
      try {
        F.windowPartition(x, 2, pad);
      } catch (e) {
        msg = (e as Error).message;
      }
      if (!msg.includes(want)) throw new Error(`expected "${want}", got: ${msg}`);
    }
  } finally {
    [x, bad, grad].forEach((t) => t.dispose());
  }
});

Deno.test("windowPartition with a pad value: the gradient reaches x (the pad is a constant)", async () => {
  await gradCheck(
    (x: Tensor) => F.windowPartition(x, 3, tensor(randArray(4, 9), [4])),
    [{ shape: [1, 4, 5, 4] }],
  );
});

Deno.test("windowUnpartition: heads dense or merged underneath, cropped", async () => {
  for (
    const [b, h, w, nh, hd, ws] of [[2, 5, 7, 3, 4, 3], [1, 6, 6, 2, 3, 3], [1, 13, 10, 4, 8, 14]]
  ) {
    const bw = b * Math.ceil(h / ws) * Math.ceil(w / ws), n = ws * ws;
    const o = randArray(bw * nh * n * hd, nh + h);
    const ref = unpartitionRef(o, bw, nh, hd, ws, h, w);
    const dense = tidy(() => F.windowUnpartition(tensor(o, [bw, nh, n, hd]), ws, h, w));
    assertClose(await dense.data() as Float32Array, ref, { atol: 0, rtol: 0, what: "dense heads" });
    dense.dispose();
    // The same values stored [Bw, N, nh, hd] (heads merged), seen as [Bw, nh, N, hd].
    const merged = new Float32Array(o.length);
    for (let wi = 0; wi < bw; wi++) {
      for (let hh = 0; hh < nh; hh++) {
        for (let t = 0; t < n; t++) {
          for (let d = 0; d < hd; d++) {
            merged[((wi * n + t) * nh + hh) * hd + d] = o[((wi * nh + hh) * n + t) * hd + d];
          }
        }
      }
    }
    const view = tidy(() =>
      F.windowUnpartition(
        F.permute(tensor(merged, [bw, n, nh, hd]), [0, 2, 1, 3]),
        ws,
        h,
        w,
      )
    );
    assertClose(await view.data() as Float32Array, ref, { atol: 0, rtol: 0, what: "merged heads" });
    view.dispose();
  }
});

Deno.test("windowUnpartition: bad shapes are refused with the expected layout", () => {
  const t = tensor(new Float32Array(2 * 9 * 4), [2, 1, 9, 4]);
  let msg = "";
  try {
    F.windowUnpartition(t, 3, 7, 7); // 7×7 in 3×3 windows needs 9 windows per image
  } catch (e) {
    msg = (e as Error).message;
  }
  t.dispose();
  if (!msg.includes("windowUnpartition") || !msg.includes("[2,1,9,4]")) {
    throw new Error(`unexpected error: ${msg}`);
  }
});

Deno.test("windowPartition / windowUnpartition: gradients", async () => {
  await gradCheck((x: Tensor) => F.windowPartition(x, 3), [{ shape: [1, 4, 5, 4] }]);
  await gradCheck((x: Tensor) => F.windowPartition(x, 2), [{ shape: [2, 3, 3, 3] }]);
  await gradCheck((o: Tensor) => F.windowUnpartition(o, 3, 4, 5), [{ shape: [4, 2, 9, 2] }]);
  await gradCheck(
    (o: Tensor) => F.windowUnpartition(F.permute(o, [0, 2, 1, 3]), 2, 3, 3),
    [{ shape: [4, 4, 2, 4] }],
  );
});

Deno.test("windowPartition / windowUnpartition: random B, H, W, C and window sizes match float64, round trip (fast-check)", async () => {
  // Window sizes from 1 to past the grid (padding on one or both axes, or none); C and hd of
  // every residue mod 4 (vec4 and scalar items). Pure copies: exact.
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        b: fc.integer({ min: 1, max: 2 }),
        h: fc.integer({ min: 1, max: 9 }),
        w: fc.integer({ min: 1, max: 9 }),
        c: fc.integer({ min: 1, max: 9 }),
        ws: fc.integer({ min: 1, max: 10 }),
        nh: fc.integer({ min: 1, max: 3 }),
        // The encoder pads qkv windows with its bias: a per-channel pad value instead of zeros.
        padded: fc.boolean(),
        seed: fc.nat(1000),
      }),
      async ({ b, h, w, c, ws, nh, padded, seed }) => {
        const what = `B ${b} H ${h} W ${w} C ${c} ws ${ws}${padded ? " padded with values" : ""}`;
        const x = randArray(b * h * w * c, seed);
        const pad = padded ? randArray(c, seed + 2) : undefined;
        const bw = b * Math.ceil(h / ws) * Math.ceil(w / ws), n = ws * ws;
        const o = randArray(bw * nh * n * c, seed + 1);
        const [part, unpart, back] = tidy(() => {
          const xt = tensor(x, [b, h, w, c]);
          const p = F.windowPartition(xt, ws, pad && tensor(pad, [c]));
          // Heads of c channels each: [Bw, nh, ws², c] → [B, H, W, nh·c].
          const u = F.windowUnpartition(tensor(o, [bw, nh, n, c]), ws, h, w);
          // Partition then unpartition (one head) gives x back, the padding dropped.
          const r = F.windowUnpartition(F.reshape(p, [bw, 1, n, c]), ws, h, w);
          return [p, u, r];
        });
        const exact = { atol: 0, rtol: 0 };
        assertClose(await part.data(), partitionRef(x, b, h, w, c, ws, pad), {
          ...exact,
          what: `partition ${what}`,
        });
        assertClose(await unpart.data(), unpartitionRef(o, bw, nh, c, ws, h, w), {
          ...exact,
          what: `unpartition ${what} nh ${nh}`,
        });
        assertClose(await back.data(), x, { ...exact, what: `round trip ${what}` });
        for (const t of [part, unpart, back]) t.dispose();
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("windowPartition / windowUnpartition: gradients with window size 1 and a window past the grid", async () => {
  await gradCheck((x: Tensor) => F.windowPartition(x, 1), [{ shape: [2, 2, 3, 5] }]);
  await gradCheck((x: Tensor) => F.windowPartition(x, 4), [{ shape: [1, 3, 2, 4] }]);
  await gradCheck((o: Tensor) => F.windowUnpartition(o, 1, 2, 3), [{ shape: [6, 2, 1, 3] }]);
  await gradCheck((o: Tensor) => F.windowUnpartition(o, 4, 3, 2), [{ shape: [1, 1, 16, 5] }]);
});
