/**
 * Lavapipe's silent loop limit (kernels/common.ts): an invocation that runs more than 65535 loop
 * headers in total stops looping and returns wrong results without an error. The probe pins the
 * limit down on this adapter; the other tests run each kernel that once looped past it at a
 * shape that would have tripped it (cheap shapes: long loops over few outputs).
 */
import assert from "node:assert";
import { backward, dispatch, empty, F, gpu, requireGrad, sync, tensor } from "../../engine/mod.ts";
import { conv2dBackwardWeightRaw } from "../../engine/ops/conv.ts";
import { convTiles, setConvTiles } from "../../engine/routing.ts";
import { matmulRaw } from "../../engine/ops/matmul.ts";
import { LAVAPIPE_LOOP_LIMIT } from "../../kernels/common.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";
import { uniforms } from "../../kernels/uniforms.ts";

await setup();

const PROBE_UNIFORMS = uniforms({ a: "u32", b: "u32", _pad0: "u32", _pad1: "u32" });

/** Runs `body` (WGSL writing y[0..3]) in one invocation with uniforms a, b. */
async function probe(key: string, body: string, a: number, b: number): Promise<number[]> {
  const k = {
    key: `test/loop-probe/${key}`,
    wgsl: () =>
      `${PROBE_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@compute @workgroup_size(1)
fn main() {
  var c0 = 0u; var c1 = 0u;
${body}
  y[0] = c0; y[1] = c1;
}`,
  };
  const y = empty([2], "u32");
  dispatch(k, [y.binding()], PROBE_UNIFORMS.pack({ a, b }), [1]);
  await sync();
  const out = Array.from(await y.data());
  y.dispose();
  return out;
}

Deno.test("probe: lavapipe stops an invocation's loops after 65535 loop headers in total", async () => {
  const one = "for (var i = 0u; i < u.a; i++) { c0 += 1u; }";
  const two = `${one} for (var i = 0u; i < u.b; i++) { c1 += 1u; }`;
  const nested =
    "for (var i = 0u; i < u.a; i++) { c1 += 1u; for (var j = 0u; j < u.b; j++) { c0 += 1u; } }";
  assert.deepEqual(await probe("one", one, 65535, 0), [65535, 0]);
  assert.deepEqual(await probe("two", two, 30000, 30000), [30000, 30000]);
  if (!gpu().isSoftware) {
    console.warn(
      "skipped: the loop limit is a property of Mesa's software adapter, not of this one",
    );
    return;
  }
  assert.equal(LAVAPIPE_LOOP_LIMIT, 65535);
  // One loop: capped at 65535 trips, however long.
  for (const n of [65536, 70000, 1_000_000]) {
    assert.deepEqual(await probe("one", one, n, 0), [65535, 0]);
  }
  // Consecutive loops share the count, each loop's exit test included (40000 + 1 + 25534 = 65535).
  assert.deepEqual(await probe("two", two, 40000, 40000), [40000, 25534]);
  // Nested loops multiply: 3 headers per outer trip with an inner loop of 1 (65535 / 3).
  assert.deepEqual(await probe("nested", nested, 70000, 1), [21845, 21845]);
});

Deno.test("conv2d weight gradient splits K past the loop limit even when one slice is forced", async () => {
  // 1×1 conv over 2048×2112 pixels: one slice would loop 67584 times per invocation.
  const H = 2048, W = 2112, M = H * W;
  const x = tensor(new Float32Array(M).fill(1), [1, 1, H, W]);
  const dy = tensor(new Float32Array(M).fill(1), [1, 1, H, W]);
  setConvTiles(convTiles(), 1);
  try {
    const g = {
      N: 1,
      C: 1,
      H,
      W,
      O: 1,
      OH: H,
      OW: W,
      kh: 1,
      kw: 1,
      sh: 1,
      sw: 1,
      ph: 0,
      pw: 0,
      dh: 1,
      dw: 1,
      groups: 1,
    };
    const dw = conv2dBackwardWeightRaw(x, dy, g);
    assert.deepEqual(Array.from(await dw.data()), [M]);
    dw.dispose();
  } finally {
    setConvTiles(null);
    x.dispose();
    dy.dispose();
  }
});

Deno.test("matmul splits K past the loop limit (register and tiled variants)", async () => {
  // [1, K]·[K, 2]: register loops K/4 times, tiled about 28 headers per 16 of K.
  for (const [variant, K] of [["register", 300_000], ["tiled", 70_000]] as const) {
    const a = randArray(K, 3), b = randArray(2 * K, 4);
    const ref = [0, 0];
    for (let k = 0; k < K; k++) for (let j = 0; j < 2; j++) ref[j] += a[k] * b[k * 2 + j];
    const at = tensor(a, [1, K]), bt = tensor(b, [K, 2]);
    const c = matmulRaw(at, bt, { variant });
    assertClose(await c.data(), ref, { atol: 1e-2, rtol: 1e-4, what: `${variant} K=${K}` });
    for (const t of [at, bt, c]) t.dispose();
  }
});

/** adaptive_avg_pool2d in float64 with PyTorch's bins. */
function adaptiveRef(
  x: Float32Array,
  P: number,
  H: number,
  W: number,
  OH: number,
  OW: number,
): Float64Array {
  const out = new Float64Array(P * OH * OW);
  for (let p = 0; p < P; p++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const h0 = Math.floor(oh * H / OH), h1 = Math.ceil((oh + 1) * H / OH);
        const w0 = Math.floor(ow * W / OW), w1 = Math.ceil((ow + 1) * W / OW);
        let s = 0;
        for (let h = h0; h < h1; h++) for (let w = w0; w < w1; w++) s += x[(p * H + h) * W + w];
        out[(p * OH + oh) * OW + ow] = s / ((h1 - h0) * (w1 - w0));
      }
    }
  }
  return out;
}

Deno.test("adaptiveAvgPool2d with bins past the loop limit, forward and backward", async () => {
  // A global average over 300×400 loops 300·401 times as one nested loop; [1, 3] and [2, 1]
  // bins are past the budget too (overlapping bins in [7, 3]: 300 / 7 is not whole).
  const H = 300, W = 400;
  const data = randArray(2 * H * W, 5);
  const x = requireGrad(tensor(data, [1, 2, H, W]));
  for (const [oh, ow] of [[1, 1], [1, 3], [2, 1], [7, 3]]) {
    const y = F.adaptiveAvgPool2d(x, [oh, ow]);
    assertClose(await y.data(), adaptiveRef(data, 2, H, W, oh, ow), {
      atol: 1e-6,
      what: `[${oh}, ${ow}]`,
    });
    y.dispose();
  }
  const y = F.adaptiveAvgPool2d(x, 1);
  backward(F.sum(y));
  const gx = await x.grad!.data();
  assertClose(gx, new Float32Array(2 * H * W).fill(1 / (H * W)), {
    atol: 1e-10,
    rtol: 1e-5,
    what: "dx",
  });
  x.dispose();
  y.dispose();
});

Deno.test("indexSelect backward sums an index longer than the loop limit", async () => {
  const m = 70_000, n = 5;
  const idx = new Int32Array(m).map((_, i) => (i * 7) % n);
  const gdata = randArray(m * 3, 6);
  const x = requireGrad(tensor(randArray(n * 3, 7), [n, 3]));
  const y = F.indexSelect(x, 0, tensor(idx, [m], "i32"));
  backward(F.sum(F.mul(y, tensor(gdata, [m, 3]))));
  const ref = new Float64Array(n * 3);
  for (let j = 0; j < m; j++) for (let c = 0; c < 3; c++) ref[idx[j] * 3 + c] += gdata[j * 3 + c];
  assertClose(await x.grad!.data(), ref, { atol: 1e-2, rtol: 1e-4, what: "index_select grad" });
  x.dispose();
  y.dispose();
});

Deno.test("loops the ops do not split refuse sizes past the limit on lavapipe", () => {
  if (!gpu().isSoftware) {
    console.warn(
      "skipped: the loop limit is a property of Mesa's software adapter, not of this one",
    );
    return;
  }
  // Bilinear 2×2 → 600×600: each input pixel's backward gather visits ~601² outputs.
  const x = tensor(new Float32Array(4), [1, 1, 2, 2]);
  assert.throws(() => F.interpolateBilinear(x, [600, 600]), /interpolateBilinear: .*lavapipe/);
  x.dispose();
  // BatchNorm statistics: a workgroup per channel over 4099·4101 values (~65 700 trips per thread;
  // a plane that is not a multiple of 4, so scalar loads: vec4s would take a quarter of the trips).
  const big = empty([1, 1, 4099, 4101]);
  assert.throws(() => F.batchNorm2d(big, { training: true }), /batchNorm2d: statistics .*lavapipe/);
  big.dispose();
});
