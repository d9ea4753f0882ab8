/**
 * Tensors past the per-binding limit (`maxStorageBufferBindingSize`, 128 MiB on lavapipe) in every
 * kernel family that can meet one: softmax, matmul, elementwise and conv each run a real tensor
 * past this adapter's limit against a float64 reference (issue 16; ONNX Runtime Web's softmax is
 * silently wrong from flat index 33,554,432 of SAM's [12, 4096, 4096] scores: exactly 128 MiB).
 * The softmax tests after them lower the limit (`setBindingLimitForTests`) so every axis,
 * log-softmax and the gradient take the split path on small tensors and must give the unsplit
 * result bit for bit (rows are independent). The other ops' split paths on lowered limits:
 * tests/engine/split_test.ts, tests/ops/matmul_test.ts ("bindings over the limit ...").
 *
 * Each real-size test holds at most ~0.6 GB of tensors (host copies and GPU buffers; lavapipe's
 * buffers are host memory) and trims the pool after itself, so the file stays near 1.3 GB.
 */
import {
  backward,
  bindingLimit,
  dispatchStats,
  F,
  gpu,
  requireGrad,
  setBindingLimitForTests,
  type Tensor,
  tensor,
  tidy,
  trimPool,
} from "../../engine/mod.ts";
import { randArray, randTensor, setup } from "../util/gpu.ts";

await setup();

function assert(ok: boolean, msg: string): void {
  if (!ok) throw new Error(msg);
}

Deno.test("softmax of a tensor past the binding limit matches float64 (a real > 128 MiB tensor)", async () => {
  const limit = gpu().limits.maxStorageBufferBindingSize;
  const len = 1024;
  // The smallest number of rows past the limit (33 × 1024 × 1024 floats on a 128 MiB adapter).
  const rows = Math.floor(limit / 4 / len) + 1024;
  if (rows * len * 4 > 1.5 * 2 ** 30) {
    console.log(`skipped: this adapter binds ${limit} bytes; a tensor past it is too large here`);
    return;
  }
  const data = randArray(rows * len, 7, -20, 20);
  const x = tensor(data, [rows, len]);
  const d0 = dispatchStats().dispatches;
  const y = F.softmax(x);
  assert(dispatchStats().dispatches - d0 >= 2, "a tensor past the limit needs several dispatches");
  const got = await y.data() as Float32Array;
  x.dispose();
  y.dispose();
  trimPool();
  let worst = 0, worstAt = -1;
  for (let r = 0; r < rows; r++) {
    const o = r * len;
    let m = -Infinity;
    for (let i = 0; i < len; i++) m = Math.max(m, data[o + i]);
    let s = 0;
    for (let i = 0; i < len; i++) s += Math.exp(data[o + i] - m);
    for (let i = 0; i < len; i++) {
      const e = Math.abs(got[o + i] - Math.exp(data[o + i] - m) / s);
      if (e > worst) [worst, worstAt] = [e, o + i];
    }
  }
  assert(worst < 1e-6, `max error ${worst} at flat index ${worstAt} of ${rows * len}`);
});

/**
 * The smallest count of `unitBytes`-byte units past this adapter's binding limit plus `extra`, or
 * null (the test says it skips) where that tensor would pass 160 MiB: adapters binding more than
 * lavapipe's 128 MiB would make the host references (and this file's memory) too large.
 */
function pastLimit(what: string, unitBytes: number, extra: number): number | null {
  const limit = gpu().limits.maxStorageBufferBindingSize;
  const units = Math.floor(limit / unitBytes) + extra;
  if (units * unitBytes > 160 * 2 ** 20) {
    console.log(
      `${what} skipped: this adapter binds ${limit} bytes; a tensor past it is too large`,
    );
    return null;
  }
  return units;
}

/** Runs `fn`, asserting it took at least two dispatches (nothing past the limit is bound whole). */
function splitRun<T>(what: string, fn: () => T): T {
  const d0 = dispatchStats().dispatches;
  const out = fn();
  const d = dispatchStats().dispatches - d0;
  assert(d >= 2, `${what}: a tensor past the limit needs several dispatches, took ${d}`);
  return out;
}

Deno.test("elementwise past the binding limit matches float64 (a real > 128 MiB broadcast add)", async () => {
  const len = 1024;
  const rows = pastLimit("elementwise", len * 4, 8);
  if (rows === null) return;
  const a = randArray(rows * len, 5, -4, 4), b = randArray(len, 6, -4, 4);
  const at = tensor(a, [rows, len]), bt = tensor(b, [1, len]);
  const y = splitRun("add", () => F.add(at, bt));
  const got = await y.data() as Float32Array;
  for (const t of [at, bt, y]) t.dispose();
  trimPool();
  // A float32 add is the float64 sum rounded once: exact equality, element by element.
  for (let i = 0; i < got.length; i++) {
    const want = Math.fround(a[i] + b[i % len]);
    assert(got[i] === want, `add: flat index ${i} of ${got.length} is ${got[i]}, expected ${want}`);
  }
});

Deno.test("matmul past the binding limit matches float64 (an operand and the product > 128 MiB)", async () => {
  const K = 32, N = 32;
  const M = pastLimit("matmul", K * 4, 64);
  if (M === null) return;
  const a = randArray(M * K, 8), b = randArray(K * N, 9);
  const at = tensor(a, [M, K]), bt = tensor(b, [K, N]);
  const c = splitRun("matmul", () => F.matmul(at, bt));
  const got = await c.data() as Float32Array;
  for (const t of [at, bt, c]) t.dispose();
  trimPool();
  // |f32 dot − exact| ≤ K·u·Σ|a||b| ≤ 32 · 6e-8 · 32 ≈ 6e-5 for entries in [−1, 1]: atol 1e-4; a
  // missing or misplaced chunk is off by O(1).
  let worst = 0, worstAt = -1;
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const v = a[i * K + k];
      for (let j = 0; j < N; j++) row[j] += v * b[k * N + j];
    }
    for (let j = 0; j < N; j++) {
      const e = Math.abs(got[i * N + j] - row[j]);
      if (!(e <= worst)) [worst, worstAt] = [e, i * N + j];
    }
  }
  assert(worst <= 1e-4, `matmul: max error ${worst} at flat index ${worstAt} of ${M * N}`);
});

/** One output of a square-kernel conv2d (no bias, no dilation) in float64. */
function convAt(
  x: Float32Array,
  w: Float32Array,
  [C, H, W, k, stride, pad]: number[],
  n: number,
  o: number,
  r: number,
  q: number,
): number {
  let s = 0;
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < k; i++) {
      const yy = r * stride + i - pad;
      if (yy < 0 || yy >= H) continue;
      for (let j = 0; j < k; j++) {
        const xx = q * stride + j - pad;
        if (xx < 0 || xx >= W) continue;
        s += x[((n * C + c) * H + yy) * W + xx] * w[((o * C + c) * k + i) * k + j];
      }
    }
  }
  return s;
}

Deno.test("conv2d past the binding limit matches float64 (inputs and an output > 128 MiB, sampled)", async () => {
  // Each sample fits a binding, the tensors do not. 3×3 stride 2 takes the conv kernels' batch
  // split; 1×1 stride 1 on planes of 64·k pixels takes the texture copy form on software adapters
  // (engine/ops/conv_pointwise.ts). Not a 3×3 stride-1 conv: where two samples' outputs pass the
  // limit, the Winograd path's chunks shrink to one tile each (conv_winograd.ts `fitSpan` counts
  // a span of two samples for any chunk) and [2, 2, 2897, 2897] took 6.5 minutes on llvmpipe.
  const O = 3;
  const sq = pastLimit("conv2d 3×3", 2 * 2 * 4, 0);
  const pw = pastLimit("conv2d 1×1", 4 * 1024 * 1032 * 4, 1);
  if (sq === null || pw === null) return;
  const S = Math.ceil(Math.sqrt(sq));
  const cases = [
    { xs: [2, 2, S, S], k: 3, stride: 2, pad: 1 },
    { xs: [pw, 4, 1024, 1032], k: 1, stride: 1, pad: 0 },
  ];
  for (const [ci, { xs, k, stride, pad }] of cases.entries()) {
    const [N, C, H, W] = xs;
    const x = randArray(N * C * H * W, 10 + ci), w = randArray(O * C * k * k, 20 + ci);
    const xt = tensor(x, xs), wt = tensor(w, [O, C, k, k]);
    const y = splitRun(
      `conv2d ${k}×${k}`,
      () => F.conv2d(xt, wt, null, { stride, padding: pad }),
    );
    const [OH, OW] = [y.shape[2], y.shape[3]];
    const got = await y.data() as Float32Array;
    for (const t of [xt, wt, y]) t.dispose();
    trimPool();
    // Sampled (the whole reference would be ~0.3–0.6 G multiply-adds): every output of the
    // first, middle and last rows of each plane, and 20 000 pseudo-random outputs. f32 sums of
    // C·k² ≤ 18 products of entries in [−1, 1]: error ≤ 18 · 6e-8 · 18 ≈ 2e-5, so atol 1e-4; a
    // wrong sample, channel or chunk is off by O(1).
    const picks: number[][] = [];
    for (let n = 0; n < N; n++) {
      for (let o = 0; o < O; o++) {
        for (const r of [0, OH >> 1, OH - 1]) for (let q = 0; q < OW; q++) picks.push([n, o, r, q]);
      }
    }
    const rnd = randArray(4 * 20000, 30 + ci, 0, 1);
    for (let i = 0; i < 20000; i++) {
      const f = (j: number, m: number) => Math.min(m - 1, Math.floor(rnd[4 * i + j] * m));
      picks.push([f(0, N), f(1, O), f(2, OH), f(3, OW)]);
    }
    for (const [n, o, r, q] of picks) {
      const flat = ((n * O + o) * OH + r) * OW + q;
      const want = convAt(x, w, [C, H, W, k, stride, pad], n, o, r, q);
      assert(
        Math.abs(got[flat] - want) <= 1e-4,
        `conv2d ${k}×${k} x[${xs}]: y[${n}, ${o}, ${r}, ${q}] (flat ${flat} of ${got.length}) ` +
          `is ${got[flat]}, expected ${want}`,
      );
    }
  }
});

/** Runs `fn` unsplit and with a small limit; returns both downloads. */
async function both(
  fn: () => Tensor[],
  limit: number,
): Promise<[Float32Array[], Float32Array[], number, number]> {
  const counts: number[] = [];
  const run = async (l: number | null) => {
    setBindingLimitForTests(l);
    try {
      const d0 = dispatchStats().dispatches;
      const ts = fn();
      counts.push(dispatchStats().dispatches - d0);
      const out = [];
      for (const t of ts) out.push(Float32Array.from(await t.data()));
      ts.forEach((t) => t.dispose());
      return out;
    } finally {
      setBindingLimitForTests(null);
    }
  };
  const whole = await run(null), split = await run(limit);
  return [whole, split, counts[0], counts[1]];
}

Deno.test("softmax / logSoftmax and their gradients split along every axis bit-identically", async () => {
  // Chunks start at bindable (256-byte aligned) offsets: 32 floats per row keeps them small.
  const shape = [6, 5, 4, 32];
  const align = gpu().limits.minStorageBufferOffsetAlignment;
  let tested = 0;
  for (let axis = 0; axis < shape.length; axis++) {
    // A limit that holds a few outer slices but not all of them.
    const per = shape.slice(axis).reduce((a, b) => a * b, 1) * 4;
    const total = shape.reduce((a, b) => a * b, 1) * 4;
    if (per * 2 > total) continue; // one slice is the whole tensor: nothing to split
    tested++;
    let q = 1;
    while ((q * per) % align) q++;
    const limit = Math.max(per * q * 2, 1024);
    const [whole, split, dWhole, dSplit] = await both(() =>
      tidy(() => {
        const x = requireGrad(randTensor(shape, 11 + axis, -3, 3));
        const w = randTensor(shape, 29 + axis);
        const y = F.softmax(x, axis), l = F.logSoftmax(x, axis);
        backward(F.sum(F.add(F.mul(y, w), F.mul(l, w))));
        return [y, l, x.grad!];
      }), limit);
    assert(limit < total && bindingLimit() >= limit, `limit ${limit} must split ${total} bytes`);
    assert(dSplit > dWhole, `axis ${axis}: ${dSplit} dispatches split vs ${dWhole} whole`);
    whole.forEach((w, i) => {
      for (let j = 0; j < w.length; j++) {
        if (!Object.is(w[j], split[i][j])) {
          throw new Error(`axis ${axis} output ${i}: element ${j} ${w[j]} vs split ${split[i][j]}`);
        }
      }
    });
  }
  assert(tested >= 3, `only ${tested} axes split`);
});

Deno.test("softmax along a leading axis too large to split says so", () => {
  setBindingLimitForTests(1024);
  try {
    const x = randTensor([4, 300], 3);
    let msg = "";
    try {
      F.softmax(x, 0).dispose();
    } catch (e) {
      msg = (e as Error).message;
    }
    x.dispose();
    assert(/softmax: .* do not fit a binding/.test(msg), `got "${msg}"`);
  } finally {
    setBindingLimitForTests(null);
  }
});
