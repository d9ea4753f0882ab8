/**
 * Loads per second from a storage buffer, a uniform buffer, a sampled texture and a read-only
 * storage texture (rgba32float), each 16 384 invocations × 4096 vec4 loads at scattered indices:
 * the measurement behind the texture-staged matmul and convs on software adapters (BENCHMARKS.md).
 *
 * `deno run -A bench/loads.ts` (no flags)
 */
if (Deno.args.length) {
  const help = Deno.args[0] === "--help" || Deno.args[0] === "-h";
  (help ? console.log : console.error)(
    "usage: deno run -A bench/loads.ts\n  takes no flags; prints vec4 loads per second by source",
  );
  Deno.exit(help ? 0 : 2);
}
const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("no WebGPU adapter");
const device = await adapter.requestDevice();
const W = 64, N = W * W; // 4096 vec4s: 64 KiB, the uniform-buffer limit
const table = new Float32Array(N * 4).map((_, i) => i % 7);
const buf = device.createBuffer({
  size: N * 16,
  usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
});
device.queue.writeBuffer(buf, 0, table);
const tex = device.createTexture({
  size: [W, W],
  format: "rgba32float",
  usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING |
    GPUTextureUsage.COPY_DST,
});
device.queue.writeTexture({ texture: tex }, table, { bytesPerRow: W * 16 }, [W, W]);
const out = device.createBuffer({ size: 16384 * 4, usage: GPUBufferUsage.STORAGE });
const coord = `vec2<u32>(idx & ${W - 1}u, (idx >> ${Math.log2(W)}u) & ${W - 1}u)`;
const kinds: Record<string, [string, string]> = {
  "storage buffer": ["var<storage, read> T: array<vec4<f32>>;", `T[idx & ${N - 1}u]`],
  "uniform buffer": [`var<uniform> T: array<vec4<f32>, ${N}>;`, `T[idx & ${N - 1}u]`],
  "sampled texture": ["var T: texture_2d<f32>;", `textureLoad(T, ${coord}, 0)`],
  "read-only storage texture": [
    "var T: texture_storage_2d<rgba32float, read>;",
    `textureLoad(T, ${coord})`,
  ],
};
for (const [name, [decl, load]] of Object.entries(kinds)) {
  const module = device.createShaderModule({
    code: `@group(0) @binding(0) ${decl}
@group(0) @binding(1) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  var acc = vec4<f32>(0.0);
  var idx = gid.x * 7u;
  for (var i = 0u; i < 4096u; i++) { acc += ${load}; idx += 13u; }
  O[gid.x] = acc.x + acc.y + acc.z + acc.w;
}`,
  });
  const p = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const res = name.includes("texture") ? tex.createView() : { buffer: buf };
  const bg = device.createBindGroup({
    layout: p.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: res }, { binding: 1, resource: { buffer: out } }],
  });
  const run = async () => {
    const e = device.createCommandEncoder();
    const pass = e.beginComputePass();
    pass.setPipeline(p);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(256);
    pass.end();
    device.queue.submit([e.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await run();
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    await run();
    best = Math.min(best, performance.now() - t0);
  }
  console.log(`${name.padEnd(26)} ${(16384 * 4096 / best / 1e6).toFixed(2)} G vec4 loads/s`);
}
