import assert from "node:assert/strict";
import fc from "fast-check";
import {
  empty,
  F,
  flush,
  gpu,
  memoryStats,
  pool,
  sync,
  type Tensor,
  tensor,
  tidy,
  trimPool,
} from "../../engine/mod.ts";
import { sizeClass } from "../../engine/pool.ts";
import {
  acquireTexture,
  cachedTextureBytes,
  hasReadonlyStorageTextures,
  MAX_CACHED_BYTES,
  recordTextureRequests,
  releaseTexture,
  setTextureCacheBytes,
  textureStats,
} from "../../engine/texture_pool.ts";
import { setMatmulVariant } from "../../engine/routing.ts";
import { RangeHeap } from "../../engine/range_heap.ts";
import { conv2dRef, geom } from "../reference/conv.ts";
import { matmulRef } from "../reference/matmul.ts";
import { assertClose, randArray, randTensor, setup } from "../util/gpu.ts";

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
  // Whole buffers by size class (slabs would hold both phases' tensors in one: tested below).
  const was = pool.slabThreshold;
  pool.slabThreshold = Infinity;
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
  pool.slabThreshold = was;
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

// ---- Slabs: big tensors as ranges of shared buffers (engine/range_heap.ts, engine/pool.ts) ----

/** Free ranges sorted, disjoint, never adjacent; free + used fill the slab. */
function checkSlab(s: { size: number; used: number; free: { offset: number; length: number }[] }) {
  let end = -1, free = 0;
  for (const f of s.free) {
    assert.ok(f.length > 0 && f.offset > end, `free ranges sorted, disjoint, apart: ${f.offset}`);
    end = f.offset + f.length;
    free += f.length;
  }
  assert.ok(end <= s.size);
  assert.equal(free + s.used, s.size, "free + used = the slab");
}

Deno.test("range heap: best fit splits, freed neighbours merge, a released range is reused", () => {
  const h = new RangeHeap<string>(256);
  h.addSlab("A", 4096);
  const a = h.alloc(1000)!, b = h.alloc(256)!, c = h.alloc(1)!;
  assert.deepEqual([a.offset, a.length, b.offset, c.offset, c.length], [0, 1024, 1024, 1280, 256]);
  h.release("A", b.offset, b.length);
  assert.equal(h.alloc(200)!.offset, 1024, "the released range is reused");
  h.release("A", 1024, 256);
  // Best fit: the 256-byte hole between a and c, not the 2560 bytes at the end.
  assert.equal(h.alloc(256)!.offset, 1024);
  h.release("A", 1024, 256);
  h.release("A", a.offset, a.length);
  assert.deepEqual(h.slabs[0].free, [{ offset: 0, length: 1280 }, { offset: 1536, length: 2560 }]);
  h.release("A", c.offset, c.length);
  assert.deepEqual(h.slabs[0].free, [{ offset: 0, length: 4096 }], "all merged back into one");
  assert.throws(() => h.release("A", c.offset, c.length), /not handed out/, "released twice");
  assert.equal(h.alloc(4096)!.offset, 0, "room for the whole slab again");
  assert.equal(h.alloc(1), null, "full");
});

Deno.test("range heap property: random alloc/free never overlap, stay aligned, account exactly", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 5000 }), fc.nat()), {
        maxLength: 200,
      }),
      (ops) => {
        const align = 256;
        const h = new RangeHeap<number>(align);
        h.addSlab(0, 8192);
        h.addSlab(1, 16384);
        const live: { slab: number; offset: number; length: number; bytes: number }[] = [];
        for (const [isAlloc, bytes, pick] of ops) {
          if (isAlloc || !live.length) {
            const r = h.alloc(bytes);
            if (!r) {
              // Only when no free range of any slab holds it.
              const need = h.rangeLength(bytes);
              assert.ok(h.slabs.every((s) => s.free.every((f) => f.length < need)));
              continue;
            }
            assert.ok(r.offset % align === 0 && r.length % align === 0 && r.length >= bytes);
            live.push({ slab: r.slab.buffer, offset: r.offset, length: r.length, bytes });
          } else {
            const [x] = live.splice(pick % live.length, 1);
            h.release(x.slab, x.offset, x.length);
          }
          for (const s of h.slabs) {
            checkSlab(s);
            const mine = live.filter((x) => x.slab === s.buffer).sort((p, q) =>
              p.offset - q.offset
            );
            assert.equal(s.used, mine.reduce((n, x) => n + x.length, 0), "used = live bytes");
            for (let i = 1; i < mine.length; i++) {
              assert.ok(mine[i - 1].offset + mine[i - 1].length <= mine[i].offset, "no overlap");
            }
            for (const x of mine) {
              assert.ok(
                s.free.every((f) =>
                  f.offset + f.length <= x.offset || f.offset >= x.offset + x.length
                ),
                "a live range is not free",
              );
            }
          }
        }
        for (const x of live.splice(0)) h.release(x.slab, x.offset, x.length);
        for (const s of h.slabs) assert.deepEqual(s.free, [{ offset: 0, length: s.size }]);
      },
    ),
    { numRuns: 300 },
  );
});

/** Runs `fn` with every tensor it makes placed in a slab, with room for them in a first slab. */
async function inSlabs<T>(fn: () => Promise<T>): Promise<T> {
  const was = pool.slabThreshold;
  pool.slabThreshold = 0;
  empty([2 ** 20]).dispose(); // a 4 MiB slab, free (slabs grow: the first holds its request)
  try {
    return await fn();
  } finally {
    pool.slabThreshold = was;
  }
}

Deno.test("slabs: tensors in one slab never overlap; live bytes and held slabs are accounted; trim frees empty slabs", async () => {
  await sync();
  trimPool();
  const base = memoryStats();
  await inSlabs(async () => {
    const ts = [1, 300, 64, 5000, 257].map((n, i) => tensor(randArray(n, i + 1)));
    const ranges = ts.map((t) => ({
      buffer: t.storage.buffer,
      lo: t.storage.offset,
      hi: t.storage.offset + t.storage.allocation.size,
    }));
    assert.ok(ranges.every((r) => r.buffer === ranges[0].buffer), "one slab");
    const align = gpu().limits.minStorageBufferOffsetAlignment;
    for (const [i, r] of ranges.entries()) {
      assert.equal(r.lo % align, 0, "aligned for binding");
      for (const q of ranges.slice(0, i)) assert.ok(r.hi <= q.lo || q.hi <= r.lo, "no overlap");
    }
    const lengths = ranges.reduce((n, r) => n + r.hi - r.lo, 0);
    assert.equal(memoryStats().liveBytes, base.liveBytes + lengths);
    for (const [i, t] of ts.entries()) {
      assertClose(await t.data(), randArray(t.size, i + 1), { what: `tensor ${i} read back` });
    }
    // Free two neighbours: their ranges merge, and a tensor of both their sizes fits there.
    const [lo, hi] = [ranges[1], ranges[2]];
    ts[1].dispose();
    ts[2].dispose();
    const big = empty([(hi.hi - lo.lo) / 4]);
    assert.equal(big.storage.offset, lo.lo, "the merged neighbours held the bigger tensor");
    big.dispose();
    for (const t of [ts[0], ts[3], ts[4]]) t.dispose();
    assert.equal(memoryStats().liveBytes, base.liveBytes);
    assert.ok(memoryStats().pooledBytes > base.pooledBytes, "the slab is parked");
    await sync();
    trimPool();
    assert.equal(memoryStats().pooledBytes, 0, "trim destroyed the empty slab");
    assert.equal(pool.slabUse().length, 0);
  });
});

Deno.test("slabs: an upload into a range freed before its readers were submitted waits for them", async () => {
  await inSlabs(async () => {
    const x = tensor(randArray(1000, 3));
    const y = F.add(x, 1); // encoded, not submitted: still reads x's range
    const at = x.storage.offset;
    x.dispose();
    const z = tensor(new Float32Array(1000).fill(-7)); // takes x's range
    assert.equal(z.storage.offset, at, "the upload reused x's range");
    assertClose(await y.data(), Array.from(randArray(1000, 3), (v) => v + 1));
    assertClose(await z.data(), new Float32Array(1000).fill(-7));
    y.dispose();
    z.dispose();
  });
});

Deno.test("slabs: kernels read and write the right ranges of one slab (matmul, conv2d vs CPU)", async () => {
  await sync();
  trimPool();
  await inSlabs(async () => {
    // A sentinel between operands: any write outside a tensor's range would show in it.
    const a = randTensor([37, 29], 11);
    const guard = tensor(new Float32Array(515).fill(42));
    const b = randTensor([29, 23], 12);
    const y = F.matmul(a, b);
    assert.equal(y.storage.buffer, a.storage.buffer, "operands and output share the slab");
    assert.equal(guard.storage.buffer, a.storage.buffer);
    const want = matmulRef(await a.data(), [37, 29], await b.data(), [29, 23]);
    assertClose(await y.data(), want.data, { atol: 1e-4, what: "matmul in a slab" });
    const x = randTensor([2, 3, 9, 11], 13);
    const w = randTensor([5, 3, 3, 3], 14);
    const bias = randTensor([5], 15);
    const c = F.conv2d(x, w, bias, { padding: 1, stride: [2, 1] });
    assert.equal(c.storage.buffer, x.storage.buffer);
    const g = geom({ padding: 1, stride: [2, 1] });
    const ref = conv2dRef(
      await x.data(),
      [2, 3, 9, 11],
      await w.data(),
      [5, 3, 3, 3],
      await bias.data(),
      g,
    );
    assert.deepEqual(c.shape, ref.shape);
    assertClose(await c.data(), ref.data, { atol: 1e-4, what: "conv2d in a slab" });
    // A strided view read back from a range with a non-zero offset.
    const yt = F.transpose(y);
    assertClose(await yt.data(), transposeHost(want.data, 37, 23), { atol: 1e-4 });
    yt.dispose();
    assertClose(await guard.data(), new Float32Array(515).fill(42), { what: "the sentinel" });
    for (const t of [a, guard, b, y, x, w, bias, c]) t.dispose();
  });
});

function transposeHost(d: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = d[i * cols + j];
  return out;
}

Deno.test("slabs grow with the program: the first holds its request, later ones what the slabs hold", async () => {
  await sync();
  trimPool();
  assert.equal(pool.slabUse().length, 0);
  const a = empty([2 ** 19]); // 2 MiB: over the 1 MiB threshold
  assert.deepEqual(pool.slabUse(), [{ size: 2 ** 21, used: 2 ** 21 }]);
  const b = empty([2 ** 18]); // 1 MiB: a new slab as big as the slabs held (2 MiB)
  assert.deepEqual(pool.slabUse(), [{ size: 2 ** 21, used: 2 ** 21 }, {
    size: 2 ** 21,
    used: 2 ** 20,
  }]);
  const c = empty([2 ** 18]); // fits the second slab's free half
  assert.equal(c.storage.buffer, b.storage.buffer);
  assert.equal(c.storage.offset, 2 ** 20);
  const small = empty([1000]); // under the threshold: a whole buffer of its class
  assert.equal(small.storage.offset, 0);
  assert.equal(pool.slabUse().length, 2);
  for (const t of [a, b, c, small]) t.dispose();
  await sync();
  trimPool();
  assert.equal(pool.slabUse().length, 0);
});

Deno.test("slabs: empty slabs are destroyed before a new one is made, unless a range was freed in the open batch", async () => {
  await sync();
  trimPool();
  const held = () => memoryStats().liveBytes + memoryStats().pooledBytes;
  const h0 = held();
  const a = empty([2 ** 19]); // a 2 MiB slab
  a.dispose();
  await sync(); // submitted: the empty slab may go
  const b = empty([2 ** 20]); // 4 MiB: no room; the 2 MiB slab is destroyed first
  assert.deepEqual(pool.slabUse(), [{ size: 2 ** 22, used: 2 ** 22 }]);
  assert.equal(held() - h0, 2 ** 22, "only the new slab held");
  // Freed in the open batch (a kernel may still use it): kept.
  const y = F.add(b, 1);
  b.dispose();
  const c = empty([2 ** 21]); // 8 MiB: no room, and the 4 MiB slab is still in use by y's kernel
  assert.equal(pool.slabUse().length, 3, "4 MiB kept, y's range and c's slabs");
  for (const t of [y, c]) t.dispose();
  await sync();
  trimPool();
  assert.equal(pool.slabUse().length, 0);
});

/** A test run with the texture matmul forced (it stages both operands in scratch textures). */
function textureMatmulTest(name: string, body: () => Promise<void>): void {
  Deno.test({
    name,
    ignore: !hasReadonlyStorageTextures(), // the texture matmul needs WGSL read-only storage textures
    fn: async () => {
      setMatmulVariant("texture");
      try {
        await body();
      } finally {
        setMatmulVariant(null);
      }
    },
  });
}

textureMatmulTest(
  "scratch textures of a texture matmul count in held bytes and their peak; trim destroys them",
  async () => {
    flush();
    trimPool();
    pool.resetPeak();
    const held = () => memoryStats().liveBytes + memoryStats().pooledBytes;
    const before = held();
    const [M, K, N] = [64, 128, 96];
    const a = randTensor([M, K], 1), b = randTensor([K, N], 2);
    const y = F.matmul(a, b);
    // Both operands staged as rgba32float (16 bytes per 4 values of k): at least (M + N)·K·4.
    const texBytes = (M + N) * K * 4;
    const tensors = sizeClass(4 * M * N) + sizeClass(4 * M * K) + sizeClass(4 * K * N);
    assert.ok(
      held() - before >= tensors + texBytes,
      `held grew ${held() - before} bytes, tensors ${tensors} + textures ${texBytes}`,
    );
    const s = memoryStats();
    assert.ok(s.peakAllocatedBytes >= before + tensors + texBytes, "the held peak has them");
    assert.ok(s.textureBytes >= texBytes, `textures held ${s.textureBytes} < ${texBytes}`);
    assertClose(await y.data(), matmulRef(await a.data(), [M, K], await b.data(), [K, N]).data);
    for (const t of [a, b, y]) t.dispose();
    const parked = memoryStats().textureBytes;
    const heldBefore = held();
    trimPool();
    assert.equal(memoryStats().textureBytes, 0);
    assert.ok(heldBefore - held() >= parked, "trim gave the textures back");
  },
);

textureMatmulTest(
  "scratch textures over the cache cap: evicted ones destroyed after their batch's submit (early once over the cap), results intact",
  async () => {
    const [M, K, N] = [64, 128, 96];
    // A cap that holds either operand's texture (A's M·K·4 bytes, B's N·K·4), not both.
    const cap = N * K * 4;
    const prev = setTextureCacheBytes(cap);
    try {
      flush();
      trimPool();
      const a = randTensor([M, K], 3), b = randTensor([K, N], 4);
      const y = F.matmul(a, b); // encoded, not submitted: one texture evicted, kept till the submit
      assert.ok(cachedTextureBytes() > 0 && cachedTextureBytes() <= cap);
      assert.ok(
        memoryStats().textureBytes > cachedTextureBytes(),
        "the evicted texture stays counted until the submit",
      );
      const want = matmulRef(await a.data(), [M, K], await b.data(), [K, N]).data;
      assertClose(await y.data(), want);
      assert.equal(memoryStats().textureBytes, cachedTextureBytes(), "destroyed after the submit");
      // Cap 0: every texture evicted, over the cap at once: the batch is submitted early.
      setTextureCacheBytes(0);
      const y2 = F.matmul(a, b);
      assert.equal(memoryStats().textureBytes, 0, "destroyed after an early submit");
      assertClose(await y2.data(), want);
      for (const t of [a, b, y, y2]) t.dispose();
    } finally {
      setTextureCacheBytes(prev);
      trimPool();
    }
  },
);

Deno.test("scratch texture cache cap: 256 MiB parked, the most recent kept", () => {
  flush();
  trimPool();
  const MiB = 2 ** 20;
  // ~32 MiB textures of ten shapes (8192 texels × 16 bytes a row): 320 MiB given back.
  const made = Array.from(
    { length: 10 },
    (_, i) => acquireTexture(512 * (i + 1), Math.floor(4096 / (i + 1))),
  );
  for (const t of made) assert.ok(t.bytes <= 32 * MiB && t.bytes > 31 * MiB, `${t.bytes}`);
  for (const t of made) releaseTexture(t);
  const parked = cachedTextureBytes();
  assert.ok(parked <= MAX_CACHED_BYTES, `${parked / MiB} MiB parked`);
  assert.ok(parked >= MAX_CACHED_BYTES - 32 * MiB, "the most recent ones kept up to the cap");
  // A 64 MiB texture (SAM's attention probabilities): kept parked for its next launch.
  const s0 = textureStats();
  recordTextureRequests(true);
  const big = acquireTexture(1024, 4096);
  assert.equal(big.bytes, 64 * MiB);
  releaseTexture(big);
  const again = acquireTexture(1024, 4096);
  assert.equal(again, big, "the big texture was kept and handed out again");
  const s1 = textureStats();
  assert.deepEqual(
    [s1.acquired - s0.acquired, s1.reused - s0.reused, s1.created - s0.created],
    [2, 1, 1],
    "counted: two asked, one made, one reused",
  );
  assert.equal(s1.createdBytes - s0.createdBytes, 64 * MiB);
  assert.equal((s1.shapes.get("1024x4096") ?? 0) - (s0.shapes.get("1024x4096") ?? 0), 1);
  releaseTexture(again);
  const id = big.id;
  assert.deepEqual(
    recordTextureRequests(false),
    [["a", id, 1024, 4096], ["r", id], ["a", id, 1024, 4096], ["r", id]],
    "the request log names the texture handed out",
  );
  assert.deepEqual(recordTextureRequests(false), [], "not logging any more");
  assert.ok(cachedTextureBytes() <= MAX_CACHED_BYTES && cachedTextureBytes() >= 64 * MiB);
  flush();
  trimPool();
  assert.equal(memoryStats().textureBytes, 0);
});
