/**
 * Raw WebGPU scaffolding shared by the benches that run a matmul product kernel by hand, outside
 * the engine's dispatch (bench/matmul_forms.ts `--forms`, bench/matmul_uniform_a.ts): seeded
 * operands, texture uploads, the default kernel's uniforms for a plain product, its bind group,
 * the readback of C, the bitwise check of one output against another and the interleaved timing
 * rounds. Bench-only.
 */
import { workerCpuMs } from "../engine/autotune_search.ts";
import { MATMUL_TEXTURE_UNIFORMS } from "../kernels/matmul_texture.ts";

/**
 * A seeded linear congruential generator of values in [-1, 1): the operands both benches have
 * always drawn (the same seed gives the same operands in either).
 */
export function lcgUniform(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return (s >>> 8) / 16777216 * 2 - 1;
  };
}

/** A `size` texture of `format` holding `data` (rows of `size[0]` texels), readable by kernels. */
export function uploadTexture(
  device: GPUDevice,
  data: Float32Array<ArrayBuffer>,
  size: [number, number],
  format: "rgba32float" | "r32float" = "rgba32float",
): GPUTexture {
  const t = device.createTexture({
    size,
    format,
    usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST,
  });
  const bytesPerTexel = format === "r32float" ? 4 : 16;
  device.queue.writeTexture({ texture: t }, data, { bytesPerRow: size[0] * bytesPerTexel }, size);
  return t;
}

/**
 * The uniform buffer of matmulTextureKernel for one unbatched product C = A·B (M×N, K4 texels of
 * k): no batch offsets, no bias, alpha 1, beta 0.
 */
export function plainProductUniforms(
  device: GPUDevice,
  M: number,
  N: number,
  K4: number,
): GPUBuffer {
  const ub = device.createBuffer({
    size: MATMUL_TEXTURE_UNIFORMS.byteSize,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(
    ub,
    0,
    new Uint8Array(MATMUL_TEXTURE_UNIFORMS.pack({
      M,
      N,
      K4,
      zBase: 0,
      aRows: 0,
      bRows: 0,
      cOff: 0,
      ldc: N,
      biasOff: 0,
      nb1: 1,
      sc0: 0,
      sc1: 0,
      alpha: 1,
      beta: 0,
    })),
  );
  return ub;
}

/**
 * A product kernel's pipeline and its bind group in matmulTextureKernel's layout: uniforms, A, B
 * (textures, or a storage buffer for B), C.
 */
export function productPipeline(
  device: GPUDevice,
  wgsl: string,
  uniforms: GPUBuffer,
  a: GPUBindingResource,
  b: GPUBindingResource,
  c: GPUBuffer,
): { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup } {
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code: wgsl }), entryPoint: "main" },
  });
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: uniforms } },
      { binding: 1, resource: a },
      { binding: 2, resource: b },
      { binding: 3, resource: { buffer: c } },
    ],
  });
  return { pipeline, bindGroup };
}

/** The first `bytes` of `src` as floats, through the mappable `staging` buffer. */
export async function readFloats(
  device: GPUDevice,
  src: GPUBuffer,
  staging: GPUBuffer,
  bytes: number,
): Promise<Float32Array> {
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  return out;
}

/** How many of `out` differ from `ref` bit for bit (Object.is), and the largest |difference|. */
export function bitwiseDiff(ref: Float32Array, out: Float32Array): { bad: number; worst: number } {
  let bad = 0, worst = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Object.is(out[i], ref[i])) bad++, worst = Math.max(worst, Math.abs(out[i] - ref[i]));
  }
  return { bad, worst };
}

/** Repetitions per timed sample of an M×N×K product: one where a product is large, else three. */
export function productReps(M: number, N: number, K: number): number {
  return M * N * K > 2e9 ? 1 : 3;
}

/** Per item: wall and worker-thread CPU ms per repetition, one sample a round. */
export interface RoundTimes {
  wall: number[];
  cpu: number[];
}

/**
 * Times `exec(item, reps)` for each of `items`, `rounds` rounds interleaved (A, B, A, B, ...) so
 * that load from other processes meets each alike; each sample is divided by `reps`.
 */
export async function timeRounds<T>(
  items: readonly T[],
  rounds: number,
  reps: number,
  exec: (item: T, reps: number) => Promise<void>,
): Promise<RoundTimes[]> {
  const times = items.map((): RoundTimes => ({ wall: [], cpu: [] }));
  for (let r = 0; r < rounds; r++) {
    for (const [i, item] of items.entries()) {
      const c0 = workerCpuMs(), t0 = performance.now();
      await exec(item, reps);
      times[i].wall.push((performance.now() - t0) / reps);
      times[i].cpu.push((workerCpuMs() - c0) / reps);
    }
  }
  return times;
}
