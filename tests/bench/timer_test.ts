/**
 * The bench's timer (`timeGpu` through bench/timing.ts) and the profiler (`profileGpu`) on a known
 * kernel, checked against the wall clock of the same work measured here. On lavapipe the case that
 * used to fail is reproduced first: a texture-staged matmul runs, after which per-pass timestamps
 * stop covering the dispatch (a 2048³ buffer matmul was once reported at 0.1 ms). The ratios are
 * generous (4×) because other processes share the CPU; a broken clock is off by 100× or more.
 */
import { F, gpu, profileGpu, sync, timeGpu, timestampProbe } from "../../engine/mod.ts";
import { randTensor, setup } from "../util/gpu.ts";
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

Deno.test("cleanup", () => {
  a.dispose();
  b.dispose();
});
