/**
 * The bench's timer (`timeGpu` through bench/timing.ts) and the profiler (`profileGpu`) on a known
 * kernel, checked against the wall clock of the same work measured here. On lavapipe the case that
 * used to fail is reproduced first: a texture-staged matmul runs, after which per-pass timestamps
 * stop covering the dispatch (a 2048³ buffer matmul was once reported at 0.1 ms). The ratios are
 * generous (4×) because other processes share the CPU; a broken clock is off by 100× or more.
 */
import {
  F,
  gpu,
  type GpuProfile,
  profileGpu,
  sync,
  tensor,
  timeGpu,
  timestampProbe,
} from "../../engine/mod.ts";
import { hasReadonlyStorageTextures } from "../../engine/texture_pool.ts";
import { randArray, randTensor, setup } from "../util/gpu.ts";
import { timeKernel } from "../../bench/timing.ts";

await setup();

const RATIO = 4;

function assertWithin(x: number, ref: number, what: string): void {
  if (!(x >= ref / RATIO && x <= ref * RATIO)) {
    throw new Error(`${what}: ${x.toFixed(2)} ms against a wall clock of ${ref.toFixed(2)} ms`);
  }
}

/** Wall clock of `n` runs of `fn` between two syncs, per run. */
async function wallPerRun(fn: () => { dispose(): void }, n: number): Promise<number> {
  await sync();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn().dispose();
  await sync();
  return (performance.now() - t0) / n;
}

const a = randTensor([512, 512], 1), b = randTensor([512, 512], 2);
const buffered = () => F.matmulRaw(a, b, { variant: "register" });

Deno.test("timeGpu and timeKernel agree with the wall clock after a texture kernel", async () => {
  // The texture-staged variant exists on software adapters; elsewhere the register one serves.
  F.matmulRaw(a, b, { variant: gpu().isSoftware ? "texture" : "register" }).dispose();
  buffered().dispose();
  const probe = await timestampProbe();
  if (!(probe.fmaGflops > 0)) throw new Error(`probe measured ${probe.fmaGflops} GFLOP/s`);
  const wall = await wallPerRun(buffered, 3);
  const t = await timeGpu(buffered, { iterations: 3 });
  assertWithin(t.ms, wall, `timeGpu (${t.method}: ${t.note})`);
  assertWithin(t.wallMs, wall, "timeGpu's own wall clock");
  if (t.method === "timestamp") assertWithin(t.timestampMs!, t.wallMs, "timestamps used");
  else if (!t.note) throw new Error("a wall-clock figure must say why");
  const k = await timeKernel(buffered, 1);
  assertWithin(k.ms, wall, `timeKernel (${k.note})`);
});

Deno.test("profileGpu's kernel times add up to the wall clock of the pass", async () => {
  F.matmulRaw(a, b, { variant: gpu().isSoftware ? "texture" : "register" }).dispose();
  const wall = await wallPerRun(buffered, 3);
  const p = await profileGpu(() => {
    for (let i = 0; i < 3; i++) buffered().dispose();
  });
  const mm = p.kernels.filter((k) => k.kernel.startsWith("matmul/register"));
  const count = mm.reduce((s, k) => s + k.count, 0);
  if (count !== 3) throw new Error(`3 matmul dispatches profiled as ${count}`);
  assertWithin(mm.reduce((s, k) => s + k.ms, 0) / 3, wall, `profiled matmul (${p.note})`);
  assertWithin(p.kernelMs, p.wallMs, `kernel sum against the pass (${p.note})`);
  if (!p.accounted && !/cannot account|exceed/.test(p.note)) {
    throw new Error(`an unaccounted profile must say so: ${p.note}`);
  }
});

/** Checks that `p` has a pass's copy, upload and readback keys, and accounts for its times. */
function checkCopyKeys(p: GpuProfile, variant: string, texture: boolean): void {
  const count = (key: string) => p.kernels.find((k) => k.kernel === key)?.count ?? 0;
  const expect: [string, number][] = [
    ["upload/write-buffer", 1],
    ["copy/readback", 1],
    ["readback/map", 1],
    ["copy/buffer-to-texture", texture ? 2 : 0],
  ];
  for (const [key, n] of expect) {
    if (count(key) !== n) {
      throw new Error(
        `${key}: ${count(key)} profiled, ${n} expected; keys: ${
          p.kernels.map((k) => `${k.kernel} ${k.kind} ×${k.count}`).join(", ")
        }`,
      );
    }
  }
  const mm = p.kernels.filter((k) => k.kernel.startsWith(`matmul/${variant}`));
  if (mm.length !== 1 || mm[0].count !== 1 || mm[0].kind !== "kernel") {
    throw new Error(`one ${variant} matmul dispatch expected: ${JSON.stringify(mm)}`);
  }
  const copies = p.kernels.filter((k) => k.kind !== "kernel").reduce((s, k) => s + k.ms, 0);
  if (Math.abs(copies - p.copyMs) > 1e-9 || !(copies >= 0)) {
    throw new Error(`copyMs ${p.copyMs} is not the sum of the copy rows ${copies}`);
  }
  assertWithin(p.kernelMs + p.copyMs, p.wallMs, `kernel and copy sum against the pass (${p.note})`);
  if (!p.accounted && !/cannot account|exceed/.test(p.note)) {
    throw new Error(`an unaccounted profile must say so: ${p.note}`);
  }
}

Deno.test("profileGpu times a pass's copies, uploads and readbacks as their own keys", async () => {
  // A texture matmul of 512² operands stages both by copyBufferToTexture (their bytes already are
  // the texture layout: K a multiple of 64, B row-major): two copies no dispatch accounts for.
  const texture = hasReadonlyStorageTextures();
  const variant = texture ? "texture" : "register";
  const data = randArray(512 * 512, 3);
  const pass = async () => {
    const x = tensor(data, [512, 512]); // one upload
    const c = F.matmulRaw(x, b, { variant });
    await c.data(); // one copy into a staging buffer, one map
    c.dispose();
    x.dispose();
  };
  await pass(); // compiles
  const wall: number[] = [];
  for (let i = 0; i < 2; i++) {
    await sync();
    const t0 = performance.now();
    await pass();
    wall.push(performance.now() - t0);
  }
  const p = await profileGpu(pass);
  checkCopyKeys(p, variant, texture);
  assertWithin(p.wallMs, Math.min(...wall), "the profiled pass against the same pass unprofiled");
  // On a software adapter the replays' CPU time accounts for the pass's CPU time too.
  if (gpu().isSoftware && p.method === "wall") {
    if (!p.cpu) throw new Error(`no CPU times on a software adapter: ${p.note}`);
    const c = p.cpu;
    assertWithin(c.kernelMs + c.copyMs, c.passMs, "kernel and copy CPU against the pass's CPU");
  }
});

Deno.test("copies bracketed by per-pass timestamps encode, and are timed or fall back", async () => {
  if (!gpu().features.timestamp) return; // no timestamp-query: the wall-clock test above covers it
  const texture = hasReadonlyStorageTextures();
  const variant = texture ? "texture" : "register";
  const data = randArray(512 * 512, 3);
  const p = await profileGpu(async () => {
    const x = tensor(data, [512, 512]);
    const c = F.matmulRaw(x, b, { variant });
    await c.data();
    c.dispose();
    x.dispose();
  }, { forceTimestamps: true });
  // On lavapipe the stamps are ~0 after a texture kernel: the fallback replays everything.
  if (p.method === "wall" && !/per-pass timestamps summed/.test(p.note)) {
    throw new Error(`a fallback must say why: ${p.note}`);
  }
  checkCopyKeys(p, variant, texture);
});

Deno.test("cleanup", () => {
  a.dispose();
  b.dispose();
});
