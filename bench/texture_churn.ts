/**
 * What scratch textures cost (engine/texture_pool.ts). Two parts:
 *
 * - `--case NAME` (bench/models.ts): per step of that case, after one warm-up step, how many
 *   scratch textures were asked for, how many the pool made anew (not reused), their bytes and
 *   the CPU ms in createTexture, the step's wall time, and the shapes made.
 * - `--create` : what making one texture and its first use cost on this adapter, against using a
 *   parked one, per size, in ONE process interleaved (new, parked, new, parked, ...; medians).
 *   Both sides dispatch the same one-texel kernel into it and wait for the queue, so the difference
 *   is the creation plus the zero-fill WebGPU owes a new texture on its first use (lavapipe does
 *   it on the CPU) plus its destruction.
 *
 *   deno run -A bench/texture_churn.ts --case "resnet50-train-step b2 @256" --steps 2
 *   deno run -A bench/texture_churn.ts --case "sam-encoder vit_b fwd @1024" --steps 1
 *   deno run -A bench/texture_churn.ts --create --runs 7
 */
import { gpu, initGpu, sync, trimPool } from "../engine/mod.ts";
import { type TextureStats, textureStats } from "../engine/texture_pool.ts";
import { modelCases } from "./models.ts";
import { loadavg, median, processCpuMs } from "./registry.ts";
import { texturesMadeBetween } from "./memory.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";

/** The --create sizes: 1, 4, 16, 64 and 256 MiB (16 bytes a texel; 256 MiB: b16 @512²'s largest). */
const CREATE_SIZES = "256x256,512x512,1024x1024,1024x4096,4096x4096";

const USAGE =
  `usage: deno run -A bench/texture_churn.ts (--case NAME [--steps N] | --create [--runs N])
  --case NAME  a bench/models.ts case: the scratch textures its steps ask for and make
  --steps N    measured steps after one warm-up (default 2)
  --create     creation + first use of a texture against a parked one, by size, interleaved
  --runs N     timed pairs per size with --create (default 7)
  --sizes L    with --create: comma-separated WxH texel sizes (default ${CREATE_SIZES})`;

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

function diff(a: TextureStats, b: TextureStats): string {
  const t = texturesMadeBetween(a, b);
  return `asked ${t.acquired}, made ${t.count} (${mib(t.bytes)} MiB; createTexture ${
    t.createMs.toFixed(1)
  } ms CPU)\n  made by shape (W×H): ${t.shapes.map(([k, n]) => `${n}×${k}`).join(", ") || "-"}`;
}

async function countCase(name: string, steps: number): Promise<void> {
  const c = modelCases(2).find((k) => k.name === name);
  if (!c) {
    throw new UsageError(
      `--case: no model case "${name}" (have: ${modelCases(2).map((k) => k.name).join("; ")})`,
    );
  }
  const run = await c.setup();
  try {
    for (let i = 0; i <= steps; i++) {
      const s0 = textureStats(), t0 = performance.now(), c0 = processCpuMs();
      await run.step();
      await sync();
      const ms = performance.now() - t0, cpu = processCpuMs() - c0;
      console.log(
        `${name} ${i === 0 ? "warm-up" : `step ${i}/${steps}`}: ${(ms / 1000).toFixed(2)} s (CPU ${
          (cpu / 1000).toFixed(2)
        } s, load ${loadavg()}); textures ${diff(s0, textureStats())}`,
      );
    }
  } finally {
    run.done();
    trimPool();
  }
}

function parseSizes(list: string): [number, number][] {
  return list.split(",").map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s.trim());
    if (!m || +m[1] < 1 || +m[2] < 1) {
      throw new UsageError(`--sizes: "${s}" is not WxH in texels, like 1024x4096`);
    }
    return [+m[1], +m[2]];
  });
}

const SHADER = `@group(0) @binding(0) var t: texture_storage_2d<rgba32float, write>;
@compute @workgroup_size(1) fn main() { textureStore(t, vec2u(0u, 0u), vec4f(1.0)); }`;

async function createCost(runs: number, sizes: [number, number][]): Promise<void> {
  const { device } = gpu();
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code: SHADER }), entryPoint: "main" },
  });
  const make = (w: number, h: number) =>
    device.createTexture({
      size: [w, h],
      format: "rgba32float",
      usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST,
    });
  const use = async (t: GPUTexture) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: t.createView() }],
      }),
    );
    pass.dispatchWorkgroups(1);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  for (const [w, h] of sizes) {
    const parked = make(w, h);
    await use(parked); // its own first use: cleared once
    const fresh: number[] = [], reused: number[] = [];
    const l0 = loadavg();
    for (let r = 0; r < runs; r++) {
      let t0 = performance.now();
      const t = make(w, h);
      await use(t);
      t.destroy();
      fresh.push(performance.now() - t0);
      t0 = performance.now();
      await use(parked);
      reused.push(performance.now() - t0);
    }
    parked.destroy();
    const f = median(fresh), p = median(reused);
    console.log(
      `${w}×${h} (${mib(w * h * 16)} MiB): new + first use ${f.toFixed(2)} ms, parked ${
        p.toFixed(2)
      } ms, creation costs ${(f - p).toFixed(2)} ms (${
        ((f - p) / (w * h * 16 / 2 ** 30)).toFixed(0)
      } ms/GiB; medians of ${runs}; load ${l0} → ${loadavg()})`,
    );
  }
}

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/texture_churn.ts",
        usage: USAGE,
        options: {
          case: { type: "string" },
          steps: { type: "string" },
          create: { type: "boolean" },
          runs: { type: "string" },
          sizes: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const name = stringFlag(flags, "case");
        if (!name && !flags.create) throw new UsageError("give --case NAME or --create");
        const sizes = parseSizes(stringFlag(flags, "sizes") ?? CREATE_SIZES);
        await initGpu();
        if (flags.create) {
          await createCost(numberFlag(flags, "runs", { def: 7, min: 1, integer: true })!, sizes);
        }
        if (name) {
          await countCase(name, numberFlag(flags, "steps", { def: 2, min: 1, integer: true })!);
        }
      },
    ),
  );
}
