import assert from "node:assert/strict";
import { dispatch, empty, F, flush, gpu, initGpu, tensor } from "../../engine/mod.ts";
import { uniforms } from "../../kernels/uniforms.ts";

const ONE_WORD = uniforms({ x: "u32" });
import { setup } from "../util/gpu.ts";

await setup();

Deno.test("a tensor over maxBufferSize is refused before any allocation", () => {
  const max = gpu().limits.maxBufferSize;
  const n = Math.floor(max / 4) + 1;
  assert.throws(
    () => empty([n]),
    (e: Error) =>
      /f32 tensor of shape \[\d+\] needs .* over this adapter's maxBufferSize/.test(e.message),
  );
  assert.throws(() => empty([2, n]), /maxBufferSize of .*: lower the batch size or tile the work/);
});

Deno.test("a binding over maxStorageBufferBindingSize is a clear error naming the kernel", () => {
  const t = F.fill([16], 0);
  const limit = gpu().limits.maxStorageBufferBindingSize;
  const kernel = {
    key: "test/touch",
    wgsl: () =>
      `@group(0) @binding(0) var<uniform> u: vec4<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(1) fn main() { y[0] = f32(u.x); }`,
  };
  assert.throws(
    () =>
      dispatch(kernel, [{ buffer: t.storage.buffer, size: limit + 4 }], ONE_WORD.pack({ x: 1 }), [
        1,
      ]),
    /kernel test\/touch: a binding of \d+ bytes exceeds this adapter's maxStorageBufferBindingSize/,
  );
  t.dispose();
});

Deno.test("an invalid WGSL kernel fails at the next readback, naming the kernel key", async () => {
  const ok = tensor([1, 2, 3]);
  await ok.data();
  flush();
  const out = F.fill([4], 0);
  flush(); // keep unrelated work out of the failing batch
  const broken = {
    key: "test/broken-wgsl/v1",
    wgsl: () => "@compute @workgroup_size(1) fn main( { let = ; }",
  };
  dispatch(broken, [out.binding()], ONE_WORD.pack({ x: 0 }), [1]);
  await assert.rejects(() => out.data(), /WebGPU rejected work: .*kernel test\/broken-wgsl\/v1/s);
  out.dispose();
  // The engine keeps working afterwards.
  const y = F.mul(ok, 2);
  assert.deepEqual([...(await y.data())], [2, 4, 6]);
  y.dispose();
  ok.dispose();
});

Deno.test("no navigator.gpu / no adapter: the message says what to install", async () => {
  const fakeNoAdapter = { requestAdapter: () => Promise.resolve(null) } as unknown as GPU;
  await assert.rejects(
    () => initGpu({ gpu: fakeNoAdapter }),
    /no WebGPU adapter was found; install Mesa's software drivers .*mesa-vulkan-drivers/,
  );
  await assert.rejects(
    () => initGpu({ gpu: undefined }),
    /navigator\.gpu is missing.*mesa-vulkan-drivers/,
  );
  // The engine's device is untouched.
  const t = tensor([5]);
  assert.equal(await t.item(), 5);
  assert.equal(await initGpu(), gpu());
  t.dispose();
});

Deno.test("ops and tensors report bad arguments clearly", async () => {
  assert.throws(() => tensor([1, 2, 3], [2, 2]), /3 values do not fill shape \[2,2\] \(4\)/);
  assert.throws(() => empty([2, -1]), /invalid tensor shape \[2,-1\]/);
  const a = tensor([1, 2, 3]), b = tensor([1, 2]);
  assert.throws(() => F.add(a, b), /shapes \[3\], \[2\] cannot be broadcast together/);
  await assert.rejects(() => a.item(), /item\(\) needs one element, tensor has shape \[3\]/);
  const i = tensor(new Int32Array([1, 2]));
  assert.throws(() => F.sum(i), /sum: expected an f32 tensor, got i32/);
  assert.throws(() => F.exp(i), /exp: expected f32 tensors, got i32/);
  assert.throws(() => F.sum(a, 3), /axis 3 is out of range for rank 1/);
  for (const t of [a, b, i]) t.dispose();
});
