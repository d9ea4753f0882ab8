import assert from "node:assert/strict";
import fc from "fast-check";
import {
  empty,
  F,
  flush,
  memoryStats,
  pool,
  sync,
  type Tensor,
  tensor,
  tidy,
  trimPool,
} from "../../engine/mod.ts";
import { sizeClass } from "../../engine/pool.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

await setup();

Deno.test("size classes: powers of two to 1 MiB, eighths of an octave above; fixed points", () => {
  assert.equal(sizeClass(1), 256);
  assert.equal(sizeClass(256), 256);
  assert.equal(sizeClass(257), 512);
  assert.equal(sizeClass(4097), 8192);
  assert.equal(sizeClass(2 ** 20), 2 ** 20);
  assert.equal(sizeClass(2 ** 20 + 1), 2 ** 20 + 2 ** 17);
  assert.equal(sizeClass(3 * 2 ** 20 + 5), 3 * 2 ** 20 + 2 ** 18);
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 2 ** 31 }),
      fc.integer({ min: 1, max: 2 ** 31 }),
      (a, b) => {
        const ca = sizeClass(a);
        assert.ok(ca >= a && ca % 4 === 0);
        assert.equal(sizeClass(ca), ca, "a class is its own class");
        if (a <= b) assert.ok(ca <= sizeClass(b), "monotone");
        if (a > 2 ** 20) assert.ok(ca <= a * 1.125 + 4, "at most 12.5% waste above 1 MiB");
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("a buffer released before its readers were submitted: reused by a kernel at once, by an upload after a submit", async () => {
  // An upload: queue writes run before unsubmitted work, so writeBuffer submits that work first.
  const x = tensor(randArray(1000, 1));
  const buf = x.storage.buffer;
  const y = F.add(x, 1); // encoded, not submitted: still reads x
  x.dispose();
  const z = tensor(new Float32Array(1000).fill(-7));
  assert.equal(z.storage.buffer, buf, "the upload reused x's buffer");
  assertClose(await y.data(), Array.from(randArray(1000, 1), (v) => v + 1));
  assertClose(await z.data(), new Float32Array(1000).fill(-7));
  // A kernel output: encoded after y2's kernel, so it may overwrite x2's buffer without a submit.
  const x2 = tensor(randArray(1000, 2));
  const buf2 = x2.storage.buffer;
  const y2 = F.add(x2, 1);
  x2.dispose();
  const k = F.mul(y2, 2);
  assert.equal(k.storage.buffer, buf2, "the kernel output reused x2's buffer");
  assertClose(await y2.data(), Array.from(randArray(1000, 2), (v) => v + 1));
  assertClose(await k.data(), Array.from(randArray(1000, 2), (v) => 2 * (v + 1)));
  for (const t of [y, z, y2, k]) t.dispose();
});

Deno.test("heavy reuse pressure: thousands of alloc/compute/dispose cycles never corrupt results", async () => {
  const sizes = [1, 7, 64, 255, 256, 1000, 4099];
  const base = memoryStats().liveBytes;
  let checked = 0;
  const pendingChecks: { t: Tensor; want: Float64Array }[] = [];
  for (let i = 0; i < 2400; i++) {
    const n = sizes[i % sizes.length];
    const seed = i * 13 + 1;
    const host = randArray(n, seed);
    const a = tensor(host);
    // A chain whose temporaries are released while later work (still unsubmitted) reads them.
    const out = tidy(() => {
      const b = F.mul(a, 2);
      const c = F.add(b, a);
      return F.sub(c, 0.5);
    });
    a.dispose(); // freed while `out`'s kernels are still pending
    // Immediately allocate and upload more data of the same size classes.
    const noise = tensor(new Float32Array(n).fill(i));
    noise.dispose();
    if (i % 7 === 0) {
      pendingChecks.push({ t: out, want: Float64Array.from(host, (v) => 3 * v - 0.5) });
    } else out.dispose();
    if (i % 150 === 149) {
      // Interleaved readbacks.
      for (const { t, want } of pendingChecks.splice(0)) {
        assertClose(await t.data(), want, {
          atol: 1e-5,
          what: `cycle result (${t.size} elements)`,
        });
        t.dispose();
        checked++;
      }
    }
  }
  for (const { t, want } of pendingChecks.splice(0)) {
    assertClose(await t.data(), want, { atol: 1e-5 });
    t.dispose();
    checked++;
  }
  assert.ok(checked > 300);
  await sync();
  assert.equal(memoryStats().liveBytes, base, "every buffer went back to the pool");
});

Deno.test("peak bytes track the high-water mark; trim gives pooled memory back", () => {
  flush();
  pool.resetPeak();
  const base = memoryStats().liveBytes;
  const ts = [empty([2 ** 18]), empty([2 ** 18]), empty([2 ** 18])]; // 1 MiB each
  assert.equal(memoryStats().liveBytes, base + 3 * 2 ** 20);
  for (const t of ts) t.dispose();
  const s = memoryStats();
  assert.equal(s.liveBytes, base);
  assert.ok(s.peakBytes >= base + 3 * 2 ** 20);
  assert.ok(s.pooledBytes >= 3 * 2 ** 20);
  flush();
  pool.trim();
  assert.equal(memoryStats().pooledBytes, 0);
  pool.resetPeak();
  assert.equal(memoryStats().peakBytes, memoryStats().liveBytes);
});

Deno.test("peak allocated bytes count parked buffers: two phases of other shapes, with and without a trim", () => {
  flush();
  trimPool();
  pool.resetPeak();
  const base = memoryStats().liveBytes;
  const phase = (elems: number) => {
    const ts = [empty([elems]), empty([elems])];
    for (const t of ts) t.dispose();
    flush();
  };
  phase(2 ** 18); // 2 × 1 MiB, parked afterwards
  phase(3 * 2 ** 18); // 2 × 3 MiB, allocated on top of the parked 2 MiB
  const s = memoryStats();
  assert.equal(s.peakBytes, base + 6 * 2 ** 20, "tensors never held more than one phase");
  assert.equal(s.peakAllocatedBytes, base + 8 * 2 ** 20, "the device held both phases");
  trimPool();
  pool.resetPeak();
  phase(2 ** 18);
  trimPool();
  phase(3 * 2 ** 18);
  assert.equal(memoryStats().peakAllocatedBytes, base + 6 * 2 ** 20, "trimmed between phases");
  trimPool();
});

Deno.test("views keep the storage alive until the last one is disposed", async () => {
  const base = memoryStats().liveBytes;
  const x = tensor([1, 2, 3, 4], [2, 2]);
  const v = F.transpose(x);
  x.dispose();
  assert.equal(memoryStats().liveBytes, base + 256);
  assert.deepEqual([...(await v.data())], [1, 3, 2, 4]);
  v.dispose();
  assert.equal(memoryStats().liveBytes, base);
});
