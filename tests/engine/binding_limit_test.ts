/**
 * Softmax past the per-binding limit (ONNX Runtime Web's softmax is silently wrong from flat index
 * 33,554,432 of SAM's [12, 4096, 4096] scores: exactly 128 MiB). One test runs a real tensor past
 * this adapter's limit against a float64 reference; the others lower the limit
 * (`setBindingLimitForTests`) so every axis, log-softmax and the gradient take the split path on
 * small tensors and must give the unsplit result bit for bit (rows are independent). Matmul,
 * elementwise and conv past the limit: tests/kernels/matmul_test.ts and tests/engine/split_test.ts
 * (lowered limits).
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
