/**
 * `deno task tune`: measures the matmul tiles of this adapter for the products the models run
 * (engine/autotune_search.ts) and stores the choices in the adapter's cache (engine/autotune.ts),
 * which every later run reads. Classes already in the cache are skipped unless `--force`.
 * Progress (class i/n, candidate, round, ETA) goes to stderr.
 */
import { describeGpu, F, initGpu, timeGpu } from "../engine/mod.ts";
import {
  adapterCache,
  adapterIdentity,
  cachePath,
  defaultTile,
  shapeClass,
  type TunedTile,
} from "../engine/autotune.ts";
import { setMatmulVariant } from "../engine/routing.ts";
import { matmulTileName } from "../kernels/matmul.ts";
import { TEXTURE_TILE_SMALL } from "../kernels/matmul_texture.ts";
import { randTensor } from "../tests/util/gpu.ts";
import { familyOf, type TuneShape, tuneShapes, workerCpuMs } from "../engine/autotune_search.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";

const USAGE = `usage: deno task tune [--set S | --shape B,M,N,K] [--force] [--budget SECONDS]
                      [--rounds N] [--objective wall|cpu] [--list | --compare]
  --set S       which products: sam, resnet, bench, or all (default; comma-separated allowed)
  --shape B,M,N,K  one product instead: batch, rows, columns, inner dim
  --force       measure classes the cache already holds again
  --budget S    seconds of timed rounds per shape class (default 20; the first round always runs)
  --rounds N    most timed rounds per class (default 5)
  --objective O wall (default): the honest timer (GPU timestamps checked against the wall clock);
                cpu (software adapters, Linux): the rasteriser workers' CPU time per product
                over their thread count, times the last wave's workgroup imbalance. Use cpu on a
                shared machine: other processes barely move it, while they swamp the wall clock
  --list        print the shape classes and the cached choice of each, measure nothing
  --compare     time each shape with the previous default tile (12×12), the default and the
                cached tile, interleaved (--rounds rounds, best of each): ms, GFLOP/s, CPU ms
The cache: $XDG_CACHE_HOME/epsam-webgpu/autotune-<adapter>.json (or ~/.cache/...); set
ENGINE_AUTOTUNE=off to run with the default tiles whatever it holds.`;

/** Products of the bench's matmul rows and the issue's headline shapes: [batch, M, N, K]. */
function benchShapes(): TuneShape[] {
  return [
    [1, 1024, 1024, 1024],
    [1, 2048, 2048, 2048],
    [1, 4096, 2304, 768], // ViT-B qkv
    [1, 4096, 256, 1024],
    [1, 512, 512, 512],
    [1, 256, 256, 256],
    [8, 256, 256, 256],
  ];
}

/**
 * SAM ViT-B at 1024²: 64×64 tokens of 768 (windowed blocks: 25 windows of 14×14 = 4900 rows;
 * global blocks: 4096), 12 heads of 64; the composed attention's score and value products per
 * head group; the neck; the mask decoder (256 wide, 4096 image tokens, 128-wide cross attention
 * in 8 heads of 16, a handful of prompt tokens) and its mask product.
 */
function samShapes(): TuneShape[] {
  const s: TuneShape[] = [];
  for (const rows of [4900, 4096]) {
    s.push([1, rows, 2304, 768], [1, rows, 768, 768], [1, rows, 3072, 768], [1, rows, 768, 3072]);
  }
  s.push([300, 196, 196, 64], [300, 196, 64, 196]); // windowed attention, 25 windows × 12 heads
  s.push([12, 4096, 4096, 64], [12, 4096, 64, 4096]); // global attention, 12 heads
  s.push([4, 4096, 4096, 64], [4, 4096, 64, 4096]); // global attention, head groups of 4
  s.push([1, 4096, 256, 768]); // neck 1×1
  // Mask decoder: projections of image tokens, token-to-image and image-to-token attention.
  s.push([1, 4096, 128, 256], [1, 4096, 256, 128], [8, 7, 4096, 16], [8, 4096, 7, 16]);
  s.push([8, 7, 16, 4096], [8, 4096, 16, 7], [1, 4096, 2048, 256], [1, 4096, 256, 2048]);
  s.push([1, 4, 65536, 32]); // masks: hypernetwork outputs × upscaled embedding
  return s;
}

/**
 * ResNet-50 convolutions as the texture GEMMs run them (engine/ops/conv_texture.ts): forward
 * [O, pixels, C·k²] for an image of `size`² in a batch of `batch`.
 */
function resnetShapes(size: number, batch: number): TuneShape[] {
  const s: TuneShape[] = [];
  let hw = size / 4; // after the stem and the max pool
  let cin = 64;
  for (const [blocks, width, stride] of [[3, 64, 1], [4, 128, 2], [6, 256, 2], [3, 512, 2]]) {
    for (let b = 0; b < blocks; b++) {
      const st = b === 0 ? stride : 1;
      const out = hw / st, px = batch * out * out, pxIn = batch * hw * hw;
      s.push([1, width, pxIn, cin]); // 1×1 reduce
      s.push([1, width, px, 9 * width]); // 3×3
      s.push([1, 4 * width, px, width]); // 1×1 expand
      if (b === 0) s.push([1, 4 * width, px, cin]); // downsample
      cin = 4 * width;
      hw = out;
    }
  }
  return s;
}

function shapesFor(set: string): TuneShape[] {
  const sets = set.split(",").map((x) => x.trim());
  const out: TuneShape[] = [];
  for (const x of sets) {
    if (x === "bench" || x === "all") out.push(...benchShapes());
    if (x === "sam" || x === "all") out.push(...samShapes());
    if (x === "resnet" || x === "all") {
      out.push(...resnetShapes(256, 1), ...resnetShapes(512, 1));
    }
    if (!["bench", "sam", "resnet", "all"].includes(x)) {
      throw new UsageError(`--set: expected sam, resnet, bench or all, got "${x}"`);
    }
  }
  return out;
}

/** The texture default before the autotuner (12×12 k-major), for before/after figures. */
const PREVIOUS_TEXTURE_TILE: TunedTile = { wx: 8, wy: 8, tm: 12, tn: 12 };

/**
 * The previous default (12×12 k-major), the default and the cached tile on each shape, interleaved
 * in this one process (A, B, C, A, B, C, ...): best wall-clock (or timestamp) ms, GFLOP/s and the
 * workers' CPU ms per product. The before/after figures of BENCHMARKS.md ("Autotuning").
 */
async function compare(shapes: TuneShape[], rounds: number): Promise<number> {
  const cache = adapterCache();
  console.log(
    "| product [batch, M, N, K] | 12×12 k-major (before): ms, GFLOP/s, CPU ms | default " +
      "| ms, GFLOP/s, CPU ms | tuned | ms, GFLOP/s, CPU ms | before ÷ best |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  const seen = new Set<string>();
  for (const [b, M, N, K] of shapes) {
    const fam = familyOf(M, N, K);
    if (!fam || seen.has(`${b},${M},${N},${K}`)) continue;
    seen.add(`${b},${M},${N},${K}`);
    const def = defaultTile(fam, M, N);
    const tuned = cache.entries[shapeClass(fam, M, N, K, b)]?.tile ?? null;
    // The rule before: 12×12 unless M or N is under 48, then 4×4.
    const prev = fam !== "texture"
      ? def
      : M * 2 >= 96 && N * 2 >= 96
      ? PREVIOUS_TEXTURE_TILE
      : TEXTURE_TILE_SMALL;
    const tiles = [prev, def, tuned ?? def];
    const a = randTensor(b > 1 ? [b, M, K] : [M, K], 1),
      w = randTensor(b > 1 ? [b, K, N] : [K, N], 2);
    const run = (t: TunedTile) => () => {
      setMatmulVariant(fam, t);
      try {
        return F.matmulRaw(a, w, { variant: fam });
      } finally {
        setMatmulVariant(null);
      }
    };
    const ms = tiles.map(() => Infinity), cpu = tiles.map(() => Infinity);
    for (const t of tiles) await timeGpu(run(t)); // compile, warm
    for (let r = 0; r < rounds; r++) {
      for (const [i, t] of tiles.entries()) {
        const c0 = workerCpuMs();
        ms[i] = Math.min(ms[i], (await timeGpu(run(t))).ms);
        cpu[i] = Math.min(cpu[i], workerCpuMs() - c0);
      }
    }
    a.dispose();
    w.dispose();
    const cell = (i: number) =>
      `${ms[i].toFixed(1)}, ${(2 * b * M * N * K / ms[i] / 1e6).toFixed(1)}, ${cpu[i].toFixed(0)}`;
    console.log(
      `| [${b}, ${M}, ${N}, ${K}] | ${cell(0)} | ${matmulTileName(def)} | ${cell(1)} | ${
        tuned ? matmulTileName(tuned) : "—"
      } | ${tuned ? cell(2) : "—"} | ${(ms[0] / Math.min(...ms)).toFixed(2)} |`,
    );
  }
  console.log(
    `best of ${rounds} interleaved rounds; load ${Deno.readTextFileSync("/proc/loadavg").trim()}`,
  );
  return 0;
}

function parseShape(s: string): TuneShape {
  const v = s.split(",").map(Number);
  if (v.length !== 4 || !v.every((x) => Number.isInteger(x) && x > 0 && x <= 1 << 20)) {
    throw new UsageError(`--shape: expected B,M,N,K (positive integers up to 2^20), got "${s}"`);
  }
  return v as TuneShape;
}

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "tune",
        usage: USAGE,
        options: {
          set: { type: "string" },
          shape: { type: "string" },
          force: { type: "boolean" },
          budget: { type: "string" },
          rounds: { type: "string" },
          list: { type: "boolean" },
          compare: { type: "boolean" },
          objective: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const one = stringFlag(flags, "shape");
        const shapes = one ? [parseShape(one)] : shapesFor(stringFlag(flags, "set") ?? "all");
        const budget = numberFlag(flags, "budget", { def: 20, min: 0 })!;
        const rounds = numberFlag(flags, "rounds", { def: 5, min: 1, integer: true })!;
        const objective = stringFlag(flags, "objective") ?? "wall";
        if (objective !== "wall" && objective !== "cpu") {
          throw new UsageError(`--objective: expected wall or cpu, got "${objective}"`);
        }
        if (Deno.env.get("ENGINE_AUTOTUNE") === "off") {
          throw new UsageError("ENGINE_AUTOTUNE=off: unset it to tune (the cache would be unused)");
        }
        await initGpu();
        console.error(`adapter: ${describeGpu()}`);
        console.error(`cache: ${cachePath(adapterIdentity())}`);
        if (flags.list) {
          const cache = adapterCache();
          const seen = new Set<string>();
          for (const [b, M, N, K] of shapes) {
            const fam = familyOf(M, N, K);
            const cls = fam ? shapeClass(fam, M, N, K, b) : "fixed tile (not tuned)";
            if (seen.has(cls)) continue;
            seen.add(cls);
            const e = fam ? cache.entries[cls] : undefined;
            console.log(
              `${cls.padEnd(28)} [${b}, ${M}, ${N}, ${K}]  ${
                e
                  ? `${e.name} ${e.ms.toFixed(1)} ms (default ${e.defaultMs.toFixed(1)} ms${
                    e.load ? `, load ${e.load}` : ""
                  })`
                  : "untuned"
              }`,
            );
          }
          return 0;
        }
        if (flags.compare) return await compare(shapes, rounds);
        const done = await tuneShapes(shapes, {
          force: !!flags.force,
          budgetMs: budget * 1000,
          rounds,
          objective,
        });
        console.log(`tuned ${done.size} class(es)`);
        for (const [cls, e] of done) {
          console.log(
            `${cls.padEnd(28)} [${e.shape}]  ${e.name} ${e.ms.toFixed(1)} ms, default ${
              e.defaultMs.toFixed(1)
            } ms (${(e.defaultMs / e.ms).toFixed(2)}×; ${e.method})`,
          );
        }
        return 0;
      },
    ),
  );
}
