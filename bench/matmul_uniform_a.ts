/**
 * An experimental matmul design for llvmpipe, against the default texture kernel in one process,
 * interleaved (BENCHMARKS.md "Matmul designs that avoid the gather"). Bench-only,
 * never routed: it loses 4–5× (see there).
 *
 * The idea: on llvmpipe every load whose address varies per SIMD lane is a gather (~42 instructions
 * per rgba32float texel), but a uniform-buffer load at a compile-time-constant offset takes
 * llvmpipe's scalar path (one load, broadcast to the 8 lanes). So A's rows are bound as a uniform
 * buffer (one dispatch per block of R rows and Kc k, at a dynamic offset) and read at constant
 * indices in a fully unrolled body; each lane owns one column of C and gathers only B (one
 * rgba32float texel = 4 k of its column per 4·R multiply-adds). K is split into chunks of Kc
 * because the unrolled body's compile time grows faster than linearly (Kc = 256: minutes); later
 * chunks continue the sums from C, in k order, so the result is bitwise the default kernel's.
 *
 * What stands in the way (measured: the JIT code, disassembled): Mesa 22.3 guards each scalar
 * uniform load with a compare and branch against the buffer's size (robust buffer access), and
 * LLVM hoists the loads of the unrolled body, spilling the broadcasts: ~8 instructions per A value
 * where the design wanted ~1.
 */
import { matmulTextureKernel, TEXTURE_TILE } from "../kernels/matmul_texture.ts";
import { gpu, initGpu } from "../engine/mod.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";
import {
  bitwiseDiff,
  lcgUniform,
  plainProductUniforms,
  productPipeline,
  productReps,
  readFloats,
  timeRounds,
  uploadTexture,
} from "./matmul_product_gpu.ts";
import { loadavg, upperMedian } from "./registry.ts";

const USAGE =
  `usage: deno run -A bench/matmul_uniform_a.ts [--shape M,N,K] [--rows R] [--kc KC] [--rounds N]
  --shape M,N,K  the product (default 1024,1024,1024; ViT-B qkv: 4096,2304,768); K a multiple of KC
  --rows R       rows of A per dispatch (default 16; R·KC·4 bytes ≤ 64 KiB, the uniform limit)
  --kc KC        k per dispatch, a multiple of 64: A's row blocks are bound at 256-byte
                 aligned dynamic offsets (default 64)
  --rounds N     interleaved rounds (default 3); the median of each is printed`;

/** WGSL: R rows of A from a uniform block at constant indices, lane = column, B gathered. */
function uniformAWgsl(R: number, KC: number, WG: number): string {
  const body: string[] = [];
  for (let k4 = 0; k4 < KC / 4; k4++) {
    body.push(`  let b${k4} = textureLoad(TB, vec2<u32>(n, u.kb + ${k4}u));`);
    for (let r = 0; r < R; r++) {
      for (let q = 0; q < 4; q++) {
        const i = r * KC + 4 * k4 + q;
        body.push(`  c${r} += A[${i >> 2}].${"xyzw"[i & 3]} * b${k4}.${"xyzw"[q]};`);
      }
    }
  }
  const rows = [...Array(R).keys()];
  return `struct U { N: u32, r0: u32, kb: u32, first: u32 }
@group(0) @binding(0) var<uniform> A: array<vec4<f32>, ${(R * KC) / 4}>;
@group(0) @binding(1) var TB: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = min(gid.x, u.N - 1u);
  let more = u.first == 0u;
${rows.map((r) => `  var c${r} = select(0.0, C[(u.r0 + ${r}u) * u.N + n], more);`).join("\n")}
${body.join("\n")}
  if (gid.x < u.N) {
${rows.map((r) => `    C[(u.r0 + ${r}u) * u.N + gid.x] = c${r};`).join("\n")}
  }
}`;
}

async function main(M: number, N: number, K: number, R: number, KC: number, rounds: number) {
  await initGpu();
  const device = gpu().device;
  const K4 = K / 4, WG = 64, chunks = K / KC, blocks = Math.ceil(M / R);
  const rnd = lcgUniform(1);
  const ha = new Float32Array(M * K).map(rnd); // A row-major
  const hb = new Float32Array(N * K).map(rnd); // B column n's k values in row n (a weight's layout)
  const textures: GPUTexture[] = [];
  const tex = (data: Float32Array<ArrayBuffer>, w: number, h: number) => {
    const t = uploadTexture(device, data, [w, h]);
    textures.push(t);
    return t;
  };
  // Default kernel: A and B a texture row per row / column. The design: B transposed, texel
  // (n, k/4), so the 8 lanes of a gather read 8 neighbouring texels.
  const tA = tex(ha, K4, M), tB = tex(hb, K4, N);
  const hbT = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k4 = 0; k4 < K4; k4++) {
      for (let q = 0; q < 4; q++) hbT[(k4 * N + n) * 4 + q] = hb[n * K + 4 * k4 + q];
    }
  }
  const tBT = tex(hbT, N, K4);
  // A as [chunk][row][KC], so R rows of one chunk are one contiguous uniform range.
  const hac = new Float32Array(M * K);
  for (let ch = 0; ch < chunks; ch++) {
    for (let r = 0; r < M; r++) {
      for (let k = 0; k < KC; k++) hac[(ch * M + r) * KC + k] = ha[r * K + ch * KC + k];
    }
  }
  const buffers: GPUBuffer[] = [];
  const buffer = (size: number, usage: number) => {
    const b = device.createBuffer({ size, usage });
    buffers.push(b);
    return b;
  };
  const aBuf = buffer(M * K * 4, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  device.queue.writeBuffer(aBuf, 0, hac);
  const c = buffer(M * N * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const readback = buffer(M * N * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  const ub = plainProductUniforms(device, M, N, K4);
  buffers.push(ub);
  // Per-dispatch parameters at 256-byte steps, bound with a dynamic offset like A's rows.
  const params = new Uint32Array(blocks * chunks * 64);
  const offsets: [number, number][] = [];
  for (let b = 0; b < blocks; b++) {
    const r0 = Math.min(b * R, M - R); // the last block overlaps the one before: same values
    for (let ch = 0; ch < chunks; ch++) {
      const i = b * chunks + ch;
      params.set([N, r0, ch * KC / 4, ch === 0 ? 1 : 0], i * 64);
      offsets.push([(ch * M + r0) * KC * 4, i * 256]);
    }
  }
  const pBuf = buffer(params.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  device.queue.writeBuffer(pBuf, 0, params);

  const def = matmulTextureKernel({ bias: false, beta: false }, TEXTURE_TILE);
  const { pipeline: defPipe, bindGroup: defBg } = productPipeline(
    device,
    def.wgsl(),
    ub,
    tA.createView(),
    tB.createView(),
    c,
  );
  const layout = device.createBindGroupLayout({
    entries: [
      {
        binding: 0,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform", hasDynamicOffset: true },
      },
      {
        binding: 1,
        visibility: GPUShaderStage.COMPUTE,
        storageTexture: { access: "read-only", format: "rgba32float" },
      },
      { binding: 2, visibility: GPUShaderStage.COMPUTE, buffer: { type: "storage" } },
      {
        binding: 3,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform", hasDynamicOffset: true },
      },
    ],
  });
  const code = uniformAWgsl(R, KC, WG);
  const t0 = performance.now();
  const uPipe = device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
  });
  const uBg = device.createBindGroup({
    layout,
    entries: [
      { binding: 0, resource: { buffer: aBuf, size: R * KC * 4 } },
      { binding: 1, resource: tBT.createView() },
      { binding: 2, resource: { buffer: c } },
      { binding: 3, resource: { buffer: pBuf, size: 16 } },
    ],
  });
  const run = async (which: "default" | "uniformA", reps: number) => {
    const enc = device.createCommandEncoder();
    for (let r = 0; r < reps; r++) {
      const pass = enc.beginComputePass();
      if (which === "default") {
        pass.setPipeline(defPipe);
        pass.setBindGroup(0, defBg);
        pass.dispatchWorkgroups(Math.ceil(N / 128), Math.ceil(M / 128));
      } else {
        pass.setPipeline(uPipe);
        for (const o of offsets) {
          pass.setBindGroup(0, uBg, o);
          pass.dispatchWorkgroups(Math.ceil(N / WG));
        }
      }
      pass.end();
    }
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  const output = () => readFloats(device, c, readback, M * N * 4);
  await run("uniformA", 1);
  const compileMs = performance.now() - t0;
  const mine = await output();
  await run("default", 1);
  const ref = await output();
  const { bad } = bitwiseDiff(ref, mine);
  const which = ["default", "uniformA"] as const;
  const times = await timeRounds(which, rounds, productReps(M, N, K), run);
  const load = loadavg();
  console.log(
    `[${M}, ${N}, ${K}] R=${R} Kc=${KC}: ${blocks * chunks} dispatches, WGSL ${
      (code.length / 1024).toFixed(0)
    } KiB, ` +
      `compile + first run ${(compileMs / 1000).toFixed(1)} s, ${
        bad ? `DIFFERS in ${bad} outputs` : "bitwise the default's"
      }; load ${load}`,
  );
  for (const [i, w] of which.entries()) {
    const ms = upperMedian(times[i].wall);
    console.log(
      `  ${(w === "default" ? `default (${def.key})` : "uniform A, lane = column").padEnd(44)} ${
        ms.toFixed(1).padStart(8)
      } ms ${(2 * M * N * K / ms / 1e6).toFixed(1).padStart(6)} GFLOP/s  cpu ${
        upperMedian(times[i].cpu).toFixed(0).padStart(5)
      } ms`,
    );
  }
  for (const t of textures) t.destroy();
  for (const b of buffers) b.destroy();
}

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/matmul_uniform_a.ts",
        usage: USAGE,
        options: {
          shape: { type: "string" },
          rows: { type: "string" },
          kc: { type: "string" },
          rounds: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const [M, N, K] = (stringFlag(flags, "shape") ?? "1024,1024,1024").split(",").map(Number);
        const R = numberFlag(flags, "rows", { def: 16, min: 1, integer: true })!;
        const KC = numberFlag(flags, "kc", { def: 64, min: 64, integer: true })!;
        const rounds = numberFlag(flags, "rounds", { def: 3, min: 1, integer: true })!;
        if (![M, N, K].every((x) => Number.isInteger(x) && x > 0) || K % KC || KC % 64 || M < R) {
          throw new UsageError(
            `--shape/--kc/--rows: need positive M,N,K with K a multiple of KC, KC of 64, M ≥ R`,
          );
        }
        if (R * KC * 4 > 65536) throw new UsageError(`--rows × --kc × 4 bytes must be ≤ 65536`);
        await main(M, N, K, R, KC, rounds);
        return 0;
      },
    ),
  );
}
