/**
 * Bind-group cache (engine/dispatch.ts) and the pool's reuse order (engine/pool.ts `oldestFirst`):
 *
 * 1. host cost per dispatch of a trivial kernel: a cache hit, a new bind group, a new bind group
 *    and a new uniform buffer (interleaved rounds, medians);
 * 2. a ResNet-50-ADL training step (Adam) with the pool handing out the oldest parked buffer of a
 *    class (the default: the same buffers each step, so bind groups hit) or the last parked one
 *    (before): bind groups created per step, host time of the step's encoding (before the wait)
 *    and the step's wall time, the two orders alternating step by step.
 *
 *   deno run -A bench/bind_groups.ts [--case b2@64] [--steps 6] [--rounds 9]
 */
import { F, flush, gpu, initGpu, pool, sync, tensor } from "../engine/mod.ts";
import { dispatch, dispatchStats } from "../engine/dispatch.ts";
import type { Kernel } from "../kernels/kernel.ts";
import { Adam } from "../engine/optim/adam.ts";
import { RESNET50_ADL, ResNetAdl } from "../model/resnet_adl.ts";
import { TrainStep } from "./train_step.ts";
import { loadavg, upperMedian } from "./registry.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";

const USAGE = `usage: deno run -A bench/bind_groups.ts [--case bB@S] [--steps N] [--rounds R]
  --case bB@S   the training step's batch and image size (default b2@64: the dispatch count
                of ResNet-50 does not depend on the size)
  --steps N     measured steps per order, after 3 warm-up steps of each (default 6)
  --rounds R    rounds of the per-dispatch host-cost microbenchmark (default 9)`;

/** Steps of each order before the measured ones: the oldest-first order settles in three. */
const WARM_UP = 3;

const probe: Kernel = {
  key: "bench/bind-group-cost",
  wgsl: () =>
    `struct P { a: u32, b: u32, c: u32, d: u32 }
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
@compute @workgroup_size(1) fn main() { z[0] = x[0] + y[0] + f32(u.a); }`,
};

/** µs of host time per dispatch in each mode, medians over interleaved rounds. */
async function perDispatchCost(rounds: number): Promise<void> {
  const { device } = gpu();
  const slots = 8000;
  const mk = () => device.createBuffer({ size: slots * 256, usage: GPUBufferUsage.STORAGE });
  const [X, Y, Z] = [mk(), mk(), mk()];
  const n = 960;
  let salt = 1;
  const modes = ["hit", "new bind group", "new bind group + uniform"] as const;
  const run = (mode: typeof modes[number]) => {
    const u = new Uint32Array(4);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const offset = mode === "hit" ? 0 : (salt++ % slots) * 256;
      if (mode === "new bind group + uniform") u[1] = salt;
      dispatch(
        probe,
        [{ buffer: X, offset, size: 256 }, { buffer: Y, size: 256 }, {
          buffer: Z,
          size: 256,
        }],
        new Uint8Array(u.buffer),
        [1],
      );
    }
    flush();
    return (performance.now() - t0) / n * 1000;
  };
  const t: Record<string, number[]> = {};
  await sync();
  for (let r = 0; r < rounds; r++) {
    for (const m of modes) {
      (t[m] ??= []).push(run(m));
      await sync();
    }
  }
  console.log(`host time per dispatch (load ${loadavg()}):`);
  for (const m of modes) {
    console.log(`  ${m}: ${upperMedian(t[m]).toFixed(1)} µs (median of ${rounds})`);
  }
  X.destroy();
  Y.destroy();
  Z.destroy();
}

async function trainingStep(b: number, s: number, steps: number): Promise<void> {
  const m = new ResNetAdl(RESNET50_ADL).train();
  const opt = new Adam(m.parameters(), { lr: 1e-4, weightDecay: 1e-4 });
  const x = tensor(new Float32Array(b * 3 * s * s).map((_, i) => Math.sin(i)), [b, 3, s, s]);
  const y = tensor(new Float32Array(b).map((_, i) => i % 2), [b]);
  const train = new TrainStep(() => F.bceWithLogits(F.reshape(m.forward(x), [b]), y), opt);
  const orders = { oldest: true, last: false };
  const fig: Record<string, { bg: number[]; host: number[]; wall: number[]; n: number }> = {};
  try {
    // The two orders alternate step by step after WARM_UP steps of each (switching to oldest
    // first sorts the parked lists again, so each oldest-first step starts from the same order).
    for (let i = 0; i < WARM_UP + steps; i++) {
      // ABBA: which order runs first alternates, so drifts and after-effects fall on both.
      const pair = Object.entries(orders);
      if (i % 2) pair.reverse();
      for (const [name, on] of pair) {
        await sync();
        pool.setOldestFirst(on);
        const s0 = dispatchStats();
        const t0 = performance.now();
        train.step();
        const host = performance.now() - t0;
        await sync();
        const wall = performance.now() - t0;
        const s1 = dispatchStats();
        if (i < WARM_UP) continue;
        const f = fig[name] ??= { bg: [], host: [], wall: [], n: 0 };
        f.bg.push(s1.bindGroups - s0.bindGroups);
        f.host.push(host);
        f.wall.push(wall);
        f.n = s1.dispatches - s0.dispatches;
        console.log(
          `  step ${i - WARM_UP + 1} ${name}: ${f.bg.at(-1)} bind groups, host ${
            host.toFixed(0)
          } ms, ` +
            `wall ${wall.toFixed(0)} ms (load ${loadavg()})`,
        );
      }
    }
  } finally {
    pool.setOldestFirst(true);
    train.dispose();
    opt.dispose();
    x.dispose();
    y.dispose();
    m.dispose();
  }
  console.log(
    `ResNet-50-ADL training step b${b}@${s} (load ${loadavg()}), medians of ${steps}:`,
  );
  for (const [name, f] of Object.entries(fig)) {
    console.log(
      `  ${name} parked buffer first: ${
        upperMedian(f.bg)
      } bind groups created of ${f.n} dispatches, ` +
        `host ${upperMedian(f.host).toFixed(0)} ms, wall ${upperMedian(f.wall).toFixed(0)} ms`,
    );
  }
}

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/bind_groups.ts",
        usage: USAGE,
        options: {
          case: { type: "string" },
          steps: { type: "string" },
          rounds: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const c = /^b(\d+)@(\d+)$/.exec(stringFlag(flags, "case") ?? "b2@64");
        if (!c) throw new UsageError(`--case: expected batch@size like b2@64`);
        const steps = numberFlag(flags, "steps", { def: 6, min: 1, max: 50, integer: true })!;
        const rounds = numberFlag(flags, "rounds", { def: 9, min: 1, max: 99, integer: true })!;
        await initGpu();
        await perDispatchCost(rounds);
        await trainingStep(Number(c[1]), Number(c[2]), steps);
      },
    ),
  );
}
