/**
 * Matmul forms on the software adapter, A against B in one process, interleaved (BENCHMARKS.md
 * "Matmul on llvmpipe: where the time goes"):
 *
 * - `--pack`: the whole texture matmul (staging + product) with the operands staged as before
 *   (pack kernels, lanes along k, batch arithmetic always) against the default (a buffer-to-texture
 *   copy where the operand's bytes already are the texture layout, else pack kernels with lanes
 *   along the operand's smaller stride and no batch arithmetic for unbatched operands).
 * - `--variants`: whole matmuls through the texture, register and workgroup-memory tiled variants.
 * - `--forms`: the product kernel alone on operands already staged, the default kernel (B packed a
 *   texture row per column) against the bRowMajor kernel (B as it is in memory, a texel per 4
 *   columns: what a copied row-major B runs) and other forms of it: statement orders, tiles, B
 *   packed transposed, lane-interleaved columns, r32float operands, the WGSL `fma` builtin,
 *   register tiles small enough not to spill (4×4, 4×8), B from a vec4 storage buffer with the 8
 *   lanes on consecutive vec4s (`--only` picks forms). Each form's output is compared bitwise with
 *   the default kernel's (same texels, same summation order: "bitwise" expected, except for the
 *   r32float operands, which hold the same values).
 *
 * Prints per form: median wall ms, the median CPU ms of the process's worker threads per product
 * (lavapipe's rasteriser threads; barely moved by other processes, 10 ms ticks), GFLOP/s by the
 * wall clock, the ratio to the first form and the load average. Bench-only; never in the tests.
 */
import { F, gpu, initGpu, sync } from "../engine/mod.ts";
import { workerCpuMs } from "../engine/autotune_search.ts";
import { setMatmulPackForm } from "../engine/ops/matmul_texture.ts";
import { setMatmulVariant } from "../engine/routing.ts";
import type { MatmulVariant } from "../kernels/matmul.ts";
import { bandedBlock, storeBlock } from "../kernels/matmul.ts";
import {
  MATMUL_TEXTURE_UNIFORMS,
  matmulTextureKernel,
  TEXTURE_TILE,
} from "../kernels/matmul_texture.ts";
import { randTensor } from "../tests/util/gpu.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";
import {
  bitwiseDiff,
  lcgUniform,
  plainProductUniforms,
  productPipeline,
  productReps,
  readFloats,
  timeRounds,
  uploadTexture,
} from "./matmul_product_gpu.ts";
import { loadavg, upperMedian } from "./registry.ts";

const USAGE =
  `usage: deno run -A bench/matmul_forms.ts [--pack] [--forms] [--variants] [--only A|B] [--rounds N] [--shape M,N,K]
  --pack      whole texture matmul: operand staging as before (pack kernels, lanes along k, batch
              arithmetic always) against the default (copies where the layout allows, else
              pack kernels with lanes along the smaller stride)
  --forms     product kernel alone: the default against other forms (see the module comment)
              (neither flag: both)
  --variants  whole matmul: the texture variant against the register one (storage buffers) and
              the workgroup-memory tiled one (the GPU kernel: shared-memory tiles and barriers)
  --rounds N  interleaved rounds (default 5); the median of each form is printed
  --only A|B  --forms: only the forms whose name contains A or B (besides the default and bRowMajor)
  --shape S   one product M,N,K instead of 1024³, ViT-B qkv, the SAM MLP products and P·V
              (M,N,K,linear: B is a transposed weight view, as in a linear layer)`;

/** [M, N, K]; `linear`: B is a weight's transposed view (x·Wᵀ, as nn.Linear runs), else row-major. */
type Shape = [number, number, number, "linear"?];
const SHAPES: Shape[] = [
  [1024, 1024, 1024],
  [4096, 2304, 768, "linear"], // ViT-B qkv (global blocks: 64×64 tokens)
  [4096, 3072, 768, "linear"], // MLP lin1
  [4096, 768, 3072, "linear"], // MLP lin2
  [4096, 64, 4096], // global attention, one head: probabilities × values (row-major V)
];

interface Timed {
  name: string;
  wall: number[];
  cpu: number[];
  check: string;
}

function report(shape: Shape, rows: Timed[]): void {
  const [M, N, K] = shape;
  const flop = 2 * M * N * K;
  const base = upperMedian(rows[0].wall), baseCpu = upperMedian(rows[0].cpu);
  console.log(`[${M}, ${N}, ${K}]${shape[3] ? " x·Wᵀ" : ""}  load ${loadavg()}`);
  for (const r of rows) {
    const w = upperMedian(r.wall), c = upperMedian(r.cpu);
    console.log(
      `  ${r.name.padEnd(40)} ${w.toFixed(1).padStart(8)} ms ${
        (flop / w / 1e6).toFixed(1).padStart(6)
      } GFLOP/s  cpu ${c.toFixed(0).padStart(5)} ms  wall ×${(base / w).toFixed(2)}  cpu ×${
        c > 0 ? (baseCpu / c).toFixed(2) : "-"
      }  ${r.check}`,
    );
  }
}

/** One way of running a whole matmul: `use` applies it and returns its undo. */
interface WholeMode {
  name: string;
  use: () => () => void;
}

/**
 * Whole matmuls F.matmulRaw(A, B) under each of `modes`, interleaved: a first round checks each
 * output against the first mode's (`differs` words a mismatch from the largest |difference|), then
 * `rounds` timed rounds of `reps` products a mode.
 */
async function compareWhole(
  shape: Shape,
  rounds: number,
  reps: number,
  modes: WholeMode[],
  differs: (worst: number) => string,
): Promise<void> {
  const [M, N, K, linear] = shape;
  const a = randTensor([M, K], 1);
  const w = linear ? randTensor([N, K], 2) : randTensor([K, N], 2);
  const b = linear ? F.transpose(w) : w;
  const rows: Timed[] = modes.map((m) => ({ name: m.name, wall: [], cpu: [], check: "" }));
  let ref: Float32Array | undefined;
  try {
    for (let r = -1; r < rounds; r++) {
      for (const [i, mode] of modes.entries()) {
        const undo = mode.use();
        try {
          if (r < 0) {
            const y = F.matmulRaw(a, b);
            const d = await y.data() as Float32Array;
            y.dispose();
            if (!ref) [ref, rows[i].check] = [d, "ref"];
            else {
              const { bad, worst } = bitwiseDiff(ref, d);
              rows[i].check = bad ? differs(worst) : "bitwise";
            }
            continue;
          }
          await sync();
          const c0 = workerCpuMs(), t0 = performance.now();
          for (let k = 0; k < reps; k++) F.matmulRaw(a, b).dispose();
          await sync();
          rows[i].wall.push((performance.now() - t0) / reps);
          rows[i].cpu.push((workerCpuMs() - c0) / reps);
        } finally {
          undo();
        }
      }
    }
  } finally {
    a.dispose();
    b.dispose();
    w.dispose();
  }
  report(shape, rows);
}

/** Whole texture matmuls, pack lanes along k against the default. */
function comparePack(shape: Shape, rounds: number): Promise<void> {
  const packForm = (name: string, form: "before" | "auto"): WholeMode => ({
    name,
    use: () => {
      const old = setMatmulPackForm(form);
      return () => setMatmulPackForm(old);
    },
  });
  return compareWhole(shape, rounds, productReps(shape[0], shape[1], shape[2]), [
    packForm("staging before (pack kernels)", "before"),
    packForm("staging now (copy or pack)", "auto"),
  ], () => "DIFFERS");
}

/** Whole matmuls through each variant (texture, register, tiled), interleaved. */
function compareVariants(shape: Shape, rounds: number): Promise<void> {
  const variants: MatmulVariant[] = ["texture", "register", "tiled"];
  const modes = variants.map((v): WholeMode => ({
    name: v,
    use: () => {
      setMatmulVariant(v);
      return () => setMatmulVariant(null);
    },
  }));
  return compareWhole(shape, rounds, 1, modes, (worst) => `max |diff| ${worst.toExponential(1)}`);
}

/** A product-kernel form: how its operands are packed and how its loop is written. */
interface Form {
  name: string;
  tm: number;
  tn: number;
  wy: number;
  /** Statement order: "acc" (the default's), "k" (each row's 4 k steps over all its columns), or "micro" (2 rows × 2 vec4 groups over 4 k). */
  order: "acc" | "k" | "micro";
  /** B packed transposed: texel (column, k/4) instead of (k/4, column). */
  bT?: boolean;
  /** Columns interleaved by lane (lane l owns col0 + l + 8j) instead of contiguous per thread. */
  ilv?: boolean;
  /** Operands in r32float textures (one float a texel; AVX2 hardware gathers on llvmpipe). */
  r32?: boolean;
  /** WGSL's fma() instead of `c += a * b`. */
  fma?: boolean;
  /**
   * B row-major in a storage buffer of vec4 (B[k, n..n+3] at k·N/4 + n/4) instead of a texture,
   * a thread's vec4 column groups interleaved by lane (lane l owns groups l, l + 8, ...), so the 8
   * lanes of a load read 8 consecutive vec4s.
   */
  ssboB?: boolean;
}

const FORMS: Form[] = [
  { name: "k order within rows", tm: 16, tn: 16, wy: 8, order: "k" },
  { name: "2×2 micro-blocks", tm: 16, tn: 16, wy: 8, order: "micro" },
  { name: "fma() builtin", tm: 16, tn: 16, wy: 8, order: "acc", fma: true },
  { name: "B packed transposed", tm: 16, tn: 16, wy: 8, order: "acc", bT: true },
  {
    name: "B transposed, lane-interleaved",
    tm: 16,
    tn: 16,
    wy: 8,
    order: "acc",
    bT: true,
    ilv: true,
  },
  { name: "r32float operands", tm: 16, tn: 16, wy: 8, order: "acc", r32: true },
  { name: "24×16 acc (8×4 threads)", tm: 24, tn: 16, wy: 4, order: "acc" },
  { name: "16×8 acc", tm: 16, tn: 8, wy: 8, order: "acc" },
  // Register tiles whose accumulators fit AVX-512's 32 vector registers (no spill).
  { name: "4×4 acc (16 accumulators)", tm: 4, tn: 4, wy: 8, order: "acc" },
  { name: "4×8 acc (32 accumulators)", tm: 4, tn: 8, wy: 8, order: "acc" },
  {
    name: "B vec4 storage buffer, lanes consecutive",
    tm: 16,
    tn: 16,
    wy: 8,
    order: "acc",
    ssboB: true,
  },
];

/** WGSL of a form (bindings and uniforms of matmulTextureKernel, no bias/beta/epilogue). */
function formWgsl(f: Form): string {
  const wx = 8, { tm: TM, tn: TN } = f;
  const rows = [...Array(TM).keys()], cols = [...Array(TN).keys()];
  const groups = [...Array(TN / 4).keys()], kks = [0, 1, 2, 3];
  const fmt = f.r32 ? "r32float" : "rgba32float";
  const load = (tex: string, r: string, transposed = false) =>
    f.r32
      ? `vec4<f32>(${kks.map((q) => `textureLoad(${tex}, vec2<u32>(4u * k + ${q}u, ${r})).x`)})`
      : transposed
      ? `textureLoad(${tex}, vec2<u32>(${r}, k))`
      : `textureLoad(${tex}, vec2<u32>(k, ${r}))`;
  const body: string[] = [];
  for (const i of rows) body.push(`    let va${i} = ${load("TA", `ra${i}`)};`);
  if (!f.ssboB) {
    for (const j of cols) {
      body.push(`    let vb${j} = ${load("TB", `rb${j}`, f.bT)};`);
    }
  }
  for (const kk of kks) {
    for (const g of groups) {
      body.push(
        f.ssboB
          ? `    let b${kk}_${g} = SB[(4u * k + ${kk}u) * (u.N / 4u) + gb${g}];`
          : `    let b${kk}_${g} = vec4<f32>(${
            kks.map((l) => `vb${4 * g + l}[${kk}]`).join(", ")
          });`,
      );
    }
  }
  const mac = (i: number, g: number, kk: number) =>
    f.fma
      ? `    c${i}_${g} = fma(vec4<f32>(va${i}[${kk}]), b${kk}_${g}, c${i}_${g});`
      : `    c${i}_${g} += va${i}[${kk}] * b${kk}_${g};`;
  if (f.order === "acc") {
    for (const i of rows) for (const g of groups) for (const kk of kks) body.push(mac(i, g, kk));
  } else if (f.order === "k") {
    for (const i of rows) for (const kk of kks) for (const g of groups) body.push(mac(i, g, kk));
  } else {
    for (let i0 = 0; i0 < TM; i0 += 2) {
      for (let g0 = 0; g0 < groups.length; g0 += 2) {
        for (const kk of kks) {
          for (let i = i0; i < Math.min(i0 + 2, TM); i++) {
            for (let g = g0; g < Math.min(g0 + 2, groups.length); g++) body.push(mac(i, g, kk));
          }
        }
      }
    }
  }
  const tile = { wx, wy: f.wy, tm: TM, tn: TN };
  const colStep = f.ilv ? wx : 1;
  let block = bandedBlock(tile);
  let store = storeBlock({ bias: false, beta: false }, TM, TN);
  if (f.ilv) {
    block = block.replace(/let col0 = .*;/, `let col0 = tx * ${wx * TN}u + lid.x;`);
    store = store.replace(/col0 \+ (\d+)u/g, (_m, j) => `col0 + ${Number(j) * wx}u`);
  }
  if (f.ssboB) {
    // Lane l's vec4 groups: l, l + 8, ... of the workgroup's 8·TN columns.
    block = block.replace(/let col0 = .*;/, `let col0 = tx * ${wx * TN}u + lid.x * 4u;`);
    store = store.replace(
      /col0 \+ (\d+)u/g,
      (_m, j) => `col0 + ${4 * wx * Math.floor(Number(j) / 4) + (Number(j) % 4)}u`,
    );
  }
  const bDecl = f.ssboB
    ? `var<storage, read> SB: array<vec4<f32>>;`
    : `var TB: texture_storage_2d<${fmt}, read>;`;
  const bBase = f.ssboB
    ? groups.map((g) => `  let gb${g} = min(col0 / 4u + ${wx * g}u, u.N / 4u - 1u);`)
    : cols.map((j) => `  let rb${j} = bB + min(col0 + ${j * colStep}u, u.N - 1u);`);
  return `${MATMUL_TEXTURE_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var TA: texture_storage_2d<${fmt}, read>;
@group(0) @binding(2) ${bDecl}
@group(0) @binding(3) var<storage, read_write> C: array<f32>;

@compute @workgroup_size(${wx}, ${f.wy})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let z = u.zBase + wg.z;
  let cB = u.cOff + (z / u.nb1) * u.sc0 + (z % u.nb1) * u.sc1;
  let aB = wg.z * u.aRows;
  let bB = wg.z * u.bRows;
${block}
${rows.map((i) => `  let ra${i} = aB + min(row0 + ${i}u, u.M - 1u);`).join("\n")}
${bBase.join("\n")}
${rows.flatMap((i) => groups.map((g) => `  var c${i}_${g} = vec4<f32>(0.0);`)).join("\n")}
  for (var k = 0u; k < u.K4; k++) {
${body.join("\n")}
  }
${store}
}`;
}

/** Product kernels alone on packed operands: the default kernel against {@link FORMS}. */
async function compareForms(shape: Shape, rounds: number, only?: string[]): Promise<void> {
  const [M, N, K] = shape;
  await initGpu();
  const device = gpu().device;
  const K4 = Math.ceil(K / 4);
  // One random operand pair, zero past K, packed both ways (rows × texels, or transposed).
  const host = (rows: number, seed: number) => {
    const d: Float32Array<ArrayBuffer> = new Float32Array(rows * K4 * 4);
    const rnd = lcgUniform(seed);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < K; k++) d[r * K4 * 4 + k] = rnd();
    }
    return d;
  };
  // B row-major: element (k, n) at k·N + n (texel (n/4, k) of a texture); d holds column n's k
  // values in its row n.
  const rowMajorOf = (d: Float32Array<ArrayBuffer>, rows: number) => {
    const data = new Float32Array(d.length);
    for (let n = 0; n < rows; n++) {
      for (let k = 0; k < K4 * 4; k++) data[k * rows + n] = d[n * K4 * 4 + k];
    }
    return data;
  };
  const textures: GPUTexture[] = [];
  const texture = (
    d: Float32Array<ArrayBuffer>,
    rows: number,
    how: "rows" | "transposed" | "r32" | "rowMajor",
  ) => {
    const size: [number, number] = how === "transposed"
      ? [rows, K4]
      : how === "r32"
      ? [K4 * 4, rows]
      : how === "rowMajor"
      ? [rows / 4, K4 * 4]
      : [K4, rows];
    let data: Float32Array<ArrayBuffer> = d;
    if (how === "rowMajor") {
      data = rowMajorOf(d, rows);
    } else if (how === "transposed") {
      data = new Float32Array(d.length);
      for (let r = 0; r < rows; r++) {
        for (let x = 0; x < K4; x++) {
          for (let q = 0; q < 4; q++) data[(x * rows + r) * 4 + q] = d[(r * K4 + x) * 4 + q];
        }
      }
    }
    const t = uploadTexture(device, data, size, how === "r32" ? "r32float" : "rgba32float");
    textures.push(t);
    return t.createView();
  };
  const ha = host(M, 1), hb = host(N, 2);
  const views = {
    rows: [texture(ha, M, "rows"), texture(hb, N, "rows")],
    bT: [texture(ha, M, "rows"), texture(hb, N, "transposed")],
    r32: [texture(ha, M, "r32"), texture(hb, N, "r32")],
    rowMajor: N % 4 === 0 ? [texture(ha, M, "rows"), texture(hb, N, "rowMajor")] : null,
  };
  // The same row-major B in a storage buffer (the ssboB form; N a multiple of 4).
  const sb = device.createBuffer({
    size: N * K4 * 16,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(sb, 0, rowMajorOf(hb, N));
  const ssboViews: GPUBindingResource[] = [views.rows[0], { buffer: sb }];
  const c = device.createBuffer({
    size: M * N * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const readback = device.createBuffer({
    size: M * N * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const ub = plainProductUniforms(device, M, N, K4);
  const def = matmulTextureKernel({ bias: false, beta: false }, TEXTURE_TILE);
  const brows = matmulTextureKernel({ bias: false, beta: false, bRowMajor: true }, TEXTURE_TILE);
  const all = [
    { name: `packed B (${def.key})`, wgsl: def.wgsl(), tm: 16, tn: 16, wy: 8, v: views.rows },
    ...(views.rowMajor
      ? [{
        name: "row-major B (bRowMajor)",
        wgsl: brows.wgsl(),
        tm: 16,
        tn: 16,
        wy: 8,
        v: views.rowMajor,
      }]
      : []),
    ...FORMS.filter((f) =>
      (!f.ssboB || N % 4 === 0) && (!only || only.some((o) => f.name.includes(o)))
    ).map((f) => ({
      name: f.name,
      wgsl: formWgsl(f),
      tm: f.tm,
      tn: f.tn,
      wy: f.wy,
      v: f.ssboB ? ssboViews : f.r32 ? views.r32 : f.bT ? views.bT : views.rows,
    })),
  ];
  const prepared = all.map((f) => {
    const { pipeline, bindGroup: bg } = productPipeline(device, f.wgsl, ub, f.v[0], f.v[1], c);
    const grid: [number, number] = [Math.ceil(N / (8 * f.tn)), Math.ceil(M / (f.wy * f.tm))];
    return { f, pipeline, bg, grid, t: { name: f.name, wall: [], cpu: [], check: "" } as Timed };
  });
  const exec = async (p: typeof prepared[number], n: number) => {
    const enc = device.createCommandEncoder();
    for (let i = 0; i < n; i++) {
      const pass = enc.beginComputePass();
      pass.setPipeline(p.pipeline);
      pass.setBindGroup(0, p.bg);
      pass.dispatchWorkgroups(...p.grid);
      pass.end();
    }
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  const output = () => readFloats(device, c, readback, M * N * 4);
  let ref: Float32Array | undefined;
  for (const p of prepared) {
    await exec(p, 1);
    const out = await output();
    if (!ref) {
      ref = out;
      p.t.check = "ref";
    } else {
      const { bad, worst } = bitwiseDiff(ref, out);
      p.t.check = bad ? `differs: ${bad} outputs, max ${worst.toExponential(1)}` : "bitwise";
    }
  }
  const times = await timeRounds(prepared, rounds, productReps(M, N, K), exec);
  prepared.forEach((p, i) => Object.assign(p.t, times[i]));
  for (const t of textures) t.destroy();
  for (const b of [c, readback, ub, sb]) b.destroy();
  report(shape, prepared.map((p) => p.t));
}

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/matmul_forms.ts",
        usage: USAGE,
        options: {
          pack: { type: "boolean" },
          forms: { type: "boolean" },
          variants: { type: "boolean" },
          rounds: { type: "string" },
          shape: { type: "string" },
          only: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const rounds = numberFlag(flags, "rounds", { def: 5, min: 1, integer: true })!;
        const one = stringFlag(flags, "shape");
        let shapes = SHAPES;
        if (one) {
          const parts = one.split(",");
          const linear = parts[3] === "linear";
          const s = parts.slice(0, 3).map(Number);
          if (
            parts.length !== (linear ? 4 : 3) || s.some((x) => !Number.isInteger(x) || x < 1)
          ) {
            throw new UsageError(
              `--shape: expected M,N,K[,linear] (positive integers), got "${one}"`,
            );
          }
          shapes = [linear ? [s[0], s[1], s[2], "linear"] : [s[0], s[1], s[2]]];
        }
        const both = !flags.pack && !flags.forms && !flags.variants;
        await initGpu();
        for (const s of shapes) {
          if (both || flags.pack) await comparePack(s, rounds);
          if (flags.variants) await compareVariants(s, rounds);
          if (both || flags.forms) {
            await compareForms(s, rounds, stringFlag(flags, "only")?.split("|"));
          }
        }
        return 0;
      },
    ),
  );
}
