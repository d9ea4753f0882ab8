import assert from "node:assert/strict";
import { describeGpu, F, gpu, initGpu, tensor } from "../../engine/mod.ts";
import { setup } from "../util/gpu.ts";

await setup();

Deno.test("describeGpu names the adapter, backend, features and binding limit", async () => {
  const g = gpu();
  const d = describeGpu();
  assert.ok(g.adapterName.length > 0);
  assert.ok(d.startsWith(g.adapterName), d);
  assert.match(d, /\[(vulkan|gl|unknown|[a-z0-9]+)(, fallback)?\] features: /);
  assert.match(
    d,
    new RegExp(`max binding ${(g.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB`),
  );
  assert.equal(await initGpu(), g, "initGpu returns the same device once initialised");
});

Deno.test("limits are the adapter's real ones, not the spec defaults", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  assert.ok(adapter);
  const g = gpu();
  assert.equal(g.limits.maxStorageBufferBindingSize, adapter.limits.maxStorageBufferBindingSize);
  assert.equal(g.limits.maxBufferSize, adapter.limits.maxBufferSize);
  assert.equal(
    g.limits.maxComputeWorkgroupsPerDimension,
    adapter.limits.maxComputeWorkgroupsPerDimension,
  );
  assert.ok(g.limits.minStorageBufferOffsetAlignment >= 4);
  for (const [k, v] of Object.entries(g.features)) assert.equal(typeof v, "boolean", k);
  if (/llvmpipe|lavapipe|swiftshader/i.test(g.adapterName)) assert.equal(g.isSoftware, true);
});

Deno.test("feature detection works on an adapter without subgroups or f16", async () => {
  const real = await navigator.gpu.requestAdapter();
  assert.ok(real);
  const hidden = new Set(["subgroups", "shader-f16"]);
  // A plain stand-in: the features set hides subgroups/f16; requests go to the real adapter.
  const fakeAdapter = {
    features: new Set([...real.features].filter((f) => !hidden.has(f))),
    limits: real.limits,
    info: real.info,
    requestDevice: (desc?: GPUDeviceDescriptor) => {
      for (const f of desc?.requiredFeatures ?? []) {
        assert.ok(!hidden.has(f), `requested hidden feature ${f}`);
      }
      return real.requestDevice(desc);
    },
  };
  const fakeGpu = { requestAdapter: () => Promise.resolve(fakeAdapter) } as unknown as GPU;
  try {
    const g = await initGpu({ gpu: fakeGpu });
    assert.equal(g.features.subgroups, false);
    assert.equal(g.features.f16, false);
    assert.doesNotMatch(describeGpu(g), /subgroups|f16/);
    assert.equal(gpu(), g, "the injected device became the engine's device");
    // The engine runs on it.
    const t = tensor([1, 2, 3]);
    const s = F.sum(F.mul(t, t));
    assert.equal(await s.item(), 14);
    t.dispose();
    s.dispose();
  } finally {
    // Back to the real navigator.gpu for the rest of the file.
    await initGpu({ gpu: navigator.gpu });
  }
  const t = tensor([2]);
  assert.equal(await F.add(t, t).item(), 4);
  t.dispose();
});
