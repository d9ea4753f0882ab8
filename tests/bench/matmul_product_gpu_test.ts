/**
 * The shared scaffolding of the hand-run matmul benches (bench/matmul_product_gpu.ts) and the
 * A/B benches' upper median (bench/registry.ts): a product run through it is the product (float64
 * reference), and the bitwise check tells -0 from 0 and NaN from a number.
 */
import { gpu, initGpu } from "../../engine/mod.ts";
import { hasReadonlyStorageTextures } from "../../engine/texture_pool.ts";
import { matmulTextureKernel, TEXTURE_TILE } from "../../kernels/matmul_texture.ts";
import {
  bitwiseDiff,
  lcgUniform,
  plainProductUniforms,
  productPipeline,
  readFloats,
  uploadTexture,
} from "../../bench/matmul_product_gpu.ts";
import { upperMedian } from "../../bench/registry.ts";
import { assertClose } from "../util/gpu.ts";

Deno.test("upperMedian: the middle of an odd count, the upper middle of an even one; input kept", () => {
  const xs = [5, 1, 4, 2];
  const cases: [number[], number][] = [[[3], 3], [[3, 1, 2], 2], [xs, 4], [[2, 2, 9, 1, 7], 2]];
  for (const [input, want] of cases) {
    const got = upperMedian(input);
    if (got !== want) throw new Error(`upperMedian(${input}) = ${got}, expected ${want}`);
  }
  if (xs.join() !== "5,1,4,2") throw new Error(`upperMedian sorted its input: ${xs}`);
});

Deno.test("bitwiseDiff counts -0 against 0 and a changed value, not NaN against NaN", () => {
  const ref = new Float32Array([1, 0, NaN, 2]);
  const same = bitwiseDiff(ref, ref.slice());
  if (same.bad !== 0 || same.worst !== 0) {
    throw new Error(`a copy differs: ${JSON.stringify(same)}`);
  }
  const d = bitwiseDiff(ref, new Float32Array([1, -0, NaN, 2.5]));
  if (d.bad !== 2 || d.worst !== 0.5) {
    throw new Error(`expected 2 outputs, worst 0.5: ${JSON.stringify(d)}`);
  }
});

Deno.test("lcgUniform: one sequence per seed, in [-1, 1)", () => {
  const a = lcgUniform(7), b = lcgUniform(7), c = lcgUniform(8);
  const xs = Array.from({ length: 1000 }, a);
  if (!xs.every((x) => x >= -1 && x < 1)) throw new Error("a value outside [-1, 1)");
  if (xs.some((x) => x !== b())) throw new Error("one seed gave two sequences");
  if (xs.slice(0, 10).every((x) => x === c())) throw new Error("seeds 7 and 8 gave one sequence");
});

Deno.test({
  name: "a product run through the bench scaffolding is A·B",
  // The default texture kernel reads its operands as read-only storage textures.
  ignore: !hasReadonlyStorageTextures(),
}, async () => {
  await initGpu();
  const device = gpu().device;
  const M = 24, N = 40, K = 32, K4 = K / 4;
  const rnd = lcgUniform(3);
  // A a texture row per row of A; B a texture row per column of B (the default kernel's layout).
  const ha = Float32Array.from({ length: M * K }, rnd);
  const hb = Float32Array.from({ length: N * K }, rnd);
  const ta = uploadTexture(device, ha, [K4, M]), tb = uploadTexture(device, hb, [K4, N]);
  const c = device.createBuffer({
    size: M * N * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const staging = device.createBuffer({
    size: M * N * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const ub = plainProductUniforms(device, M, N, K4);
  try {
    const kernel = matmulTextureKernel({ bias: false, beta: false }, TEXTURE_TILE);
    const { pipeline, bindGroup } = productPipeline(
      device,
      kernel.wgsl(),
      ub,
      ta.createView(),
      tb.createView(),
      c,
    );
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(Math.ceil(N / 128), Math.ceil(M / 128));
    pass.end();
    device.queue.submit([enc.finish()]);
    const got = await readFloats(device, c, staging, M * N * 4);
    const want = new Float64Array(M * N);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += ha[i * K + k] * hb[j * K + k];
        want[i * N + j] = s;
      }
    }
    assertClose(got, want, { atol: 1e-5, rtol: 1e-5 });
  } finally {
    ta.destroy();
    tb.destroy();
    for (const b of [c, staging, ub]) b.destroy();
  }
});
