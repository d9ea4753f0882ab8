import assert from "node:assert/strict";
import {
  dispatch,
  dispatchStats,
  F,
  flush,
  gpu,
  grid1d,
  setKernelKeyCheck,
  sync,
  tensor,
  tidy,
  timeGpu,
} from "../../engine/mod.ts";
import { uniforms } from "../../kernels/uniforms.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

const SCALE_UNIFORMS = uniforms({ n: "u32" });
const IOTA_UNIFORMS = uniforms({ n: "u32", scale: "f32" });

await setup();

Deno.test("pipeline cache: the same kernel key compiles once, whatever the shapes", async () => {
  const a = tensor(randArray(10, 1)), b = tensor(randArray(10, 2));
  F.add(a, b).dispose(); // warm: flat add
  const a4 = tensor(randArray(12, 1)), b4 = tensor(randArray(12, 2));
  F.add(a4, b4).dispose(); // warm: its vec4 form (sizes that are multiples of 4)
  a4.dispose();
  b4.dispose();
  const s0 = dispatchStats();
  for (const n of [3, 10, 1000, 17]) {
    const x = tensor(randArray(n, n)), y = tensor(randArray(n, n + 1));
    const z = F.add(x, y);
    assertClose(await z.data(), Array.from(randArray(n, n), (v, i) => v + randArray(n, n + 1)[i]));
    for (const t of [x, y, z]) t.dispose();
  }
  const s1 = dispatchStats();
  assert.equal(s1.cachedPipelines, s0.cachedPipelines, "no new pipeline for new shapes");
  assert.equal(s1.pipelines, s0.pipelines);
  a.dispose();
  b.dispose();
});

Deno.test("bind groups are reused across training-loop iterations", () => {
  const x = tensor(randArray(1000, 3)), w = tensor(randArray(1000, 4));
  const iteration = () => {
    tidy(() => {
      F.sum(F.mul(F.add(x, w), x));
    });
    flush();
  };
  for (let i = 0; i < 4; i++) iteration();
  const before = dispatchStats();
  for (let i = 0; i < 20; i++) iteration();
  const after = dispatchStats();
  assert.equal(after.cachedBindGroups, before.cachedBindGroups, "no new bind groups once warm");
  assert.equal(after.dispatches - before.dispatches, 60);
  x.dispose();
  w.dispose();
});

Deno.test("a repeated program gets the same buffers each time, so its bind groups hit (temporaries freed out of order)", () => {
  const x = tensor(randArray(1000, 3));
  // Twelve temporaries of one size class, freed in an order unlike their creation's: handing
  // out the last parked buffer first, each iteration would give them other buffers than the last.
  const ORDER = [3, 7, 1, 10, 0, 5, 11, 2, 8, 4, 9, 6];
  const iteration = () => {
    const ts = ORDER.map((_, i) => F.add(x, i));
    for (const i of ORDER) ts[i].dispose();
    flush();
  };
  iteration();
  const before = dispatchStats();
  for (let i = 0; i < 8; i++) iteration();
  const after = dispatchStats();
  assert.equal(after.bindGroups - before.bindGroups, 0, "no bind group created once warm");
  x.dispose();
});

Deno.test("batching: many dispatches, few submits; no readback until a value is asked for", async () => {
  const x = tensor(randArray(256, 5));
  await sync();
  const s0 = dispatchStats();
  let y = F.mul(x, 1);
  for (let i = 0; i < 499; i++) {
    const next = F.add(y, 0.001);
    y.dispose();
    y = next;
  }
  const s1 = dispatchStats();
  assert.equal(s1.dispatches - s0.dispatches, 500);
  assert.ok(s1.submits - s0.submits <= Math.ceil(500 / 96), `${s1.submits - s0.submits} submits`);
  assert.equal(s1.readbacks, s0.readbacks, "no readback without data()");
  assertClose(await y.data(), Array.from(randArray(256, 5), (v) => v + 0.499), { atol: 1e-4 });
  const s2 = dispatchStats();
  assert.equal(s2.readbacks - s1.readbacks, 1);
  y.dispose();
  x.dispose();
});

Deno.test("grid1d folds large grids into x/y within the per-dimension limit", async () => {
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  assert.deepEqual(grid1d(0, 64), [1, 1]);
  assert.deepEqual(grid1d(64 * 10, 64), [10, 1]);
  const [x, y] = grid1d(max * 256 * 3 + 5, 256);
  assert.ok(x <= max && x * y * 256 >= max * 256 * 3 + 5);
  // A real kernel over a folded grid (over 65535·256 elements) covers every element.
  const n = max * 256 + 1000;
  const t = F.fill([n], 1);
  const s = F.sum(t);
  assert.equal(await s.item(), n);
  t.dispose();
  s.dispose();
});

Deno.test("a raw dispatch with a hand-written kernel; timeGpu measures", async () => {
  const kernel = {
    key: "test/iota",
    wgsl: () =>
      `${IOTA_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < u.n) { y[gid.x] = f32(gid.x) * u.scale; }
}`,
  };
  const out = F.fill([100], 0);
  const t = await timeGpu(() =>
    dispatch(kernel, [out.binding()], IOTA_UNIFORMS.pack({ n: 100, scale: 0.5 }), [2])
  );
  assert.ok(t.ms >= 0 && (t.method === "timestamp" || t.method === "wall"));
  assertClose(await out.data(), Array.from({ length: 100 }, (_, i) => i * 0.5));
  assert.throws(
    () =>
      dispatch(kernel, [out.binding()], IOTA_UNIFORMS.pack({ n: 1, scale: 1 }), [
        gpu().limits.maxComputeWorkgroupsPerDimension + 1,
      ]),
    /kernel test\/iota: grid \d+x1x1 exceeds/,
  );
  out.dispose();
});

Deno.test("kernel-key check: two different WGSL sources under one pipeline key throw", async () => {
  // Two "scale" kernels whose constant is baked into the WGSL but left out of the key.
  const scaleKernel = (factor: number) => ({
    key: "test/scale-missing-factor",
    wgsl: () =>
      `${SCALE_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x < u.n) { y[gid.x] = f32(gid.x) * ${factor.toFixed(1)}; }
}`,
  });
  const out = F.fill([8], 0);
  const params = SCALE_UNIFORMS.pack({ n: 8 });
  const was = setKernelKeyCheck(true);
  try {
    dispatch(scaleKernel(2), [out.binding()], params, [1]);
    dispatch(scaleKernel(2), [out.binding()], params, [1]); // same source: fine
    assert.throws(
      () => dispatch(scaleKernel(3), [out.binding()], params, [1]),
      /kernel key test\/scale-missing-factor: two different WGSL sources share this pipeline-cache key/,
    );
  } finally {
    setKernelKeyCheck(was);
  }
  // Unchecked, the second kernel silently runs the first one's program: what the check prevents.
  if (!was) {
    dispatch(scaleKernel(3), [out.binding()], params, [1]);
    assert.deepEqual([...await out.data()], [0, 2, 4, 6, 8, 10, 12, 14]);
  }
  out.dispose();
});

const NEIGHBOUR_UNIFORMS = uniforms({ n: "u32" });
/** y[i] = x[i] + x[i - 1] (x[n - 1] for i = 0), or a kernel writing both of its bindings. */
const neighbourKernel = (twoOutputs: boolean) => ({
  key: `test/neighbour-sum/${twoOutputs}`,
  wgsl: () =>
    `${NEIGHBOUR_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, ${twoOutputs ? "read_write" : "read"}> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= u.n) { return; }
  y[i] = x[i] + x[(i + u.n - 1u) % u.n];
  ${twoOutputs ? "x[i] = 0.0;" : ""}
}`,
});

Deno.test("one buffer bound twice: read-only twice runs the kernel as declared; read and written at one range, the read sees the values from before", async () => {
  // x · x binds one range twice, both read-only: no usage conflict, so no read_write variant
  // (whose two writable overlapping bindings Dawn would reject).
  const a = tensor(randArray(1000, 1)), b = tensor(randArray(1000, 2));
  F.mul(a, b).dispose();
  const s0 = dispatchStats();
  const sq = F.mul(a, a);
  assert.equal(dispatchStats().pipelines, s0.pipelines, "no new pipeline for x · x");
  assertClose(await sq.data(), Array.from(randArray(1000, 1), (v) => v * v));
  // In place: the kernel reads its neighbour, which another invocation writes. The read binding
  // gets a copy of the range made first, so every read sees the old values, on every adapter.
  const n = 4096, old = randArray(n, 3);
  const t = tensor(old);
  dispatch(neighbourKernel(false), [t.binding(), t.binding()], NEIGHBOUR_UNIFORMS.pack({ n }), [
    n / 64,
  ]);
  const want = Array.from(old, (v, i) => Math.fround(v + old[(i + n - 1) % n]));
  assertClose(await t.data(), want, { atol: 0, rtol: 0 });
  // Two written bindings over one range: the op is wrong, and says so.
  assert.throws(
    () =>
      dispatch(neighbourKernel(true), [t.binding(), t.binding()], NEIGHBOUR_UNIFORMS.pack({ n }), [
        n / 64,
      ]),
    /test\/neighbour-sum\/true: storage bindings 1 and 2 are written and overlap/,
  );
  for (const x of [a, b, sq, t]) x.dispose();
});
