/**
 * Where the time of a case goes: runs one case (a `bench/models.ts` model case, or one of the
 * kernel cases below: the matmul and conv3x3 rows of issue 16's goals) once to compile, then once
 * under `profileGpu` and prints milliseconds per key, largest first — kernels, and the non-kernel
 * GPU work as its own keys (`copy/buffer-to-texture`: matmul operands staged by a copy,
 * `upload/write-buffer`, `copy/readback` and `readback/map`) — with each share of the wall time of
 * that same pass and what the measured times cannot account for. Where the adapter's per-pass
 * timestamps fail the start-up probe (lavapipe, once a texture kernel has run), each dispatch and
 * copy is replayed alone by the wall clock. `deno run -A bench/profile.ts --help` for flags.
 */
import { conv2dForwardRaw, type ConvGeometry } from "../engine/ops/conv.ts";
import {
  F,
  type GpuProfile,
  initGpu,
  noGrad,
  profileGpu,
  sync,
  type Tensor,
  tensor,
} from "../engine/mod.ts";
import { mulberry32 } from "../engine/mulberry32.ts";
import { squareWindow } from "../kernels/window.ts";
import { modelCases } from "./models.ts";
import { loadavg } from "./registry.ts";
import { writeFileAtomic } from "../engine/io/atomic.ts";
import { numberFlag, runCommand, UsageError } from "../pipeline/cli/args.ts";

const USAGE =
  `usage: deno run -A bench/profile.ts FILTER [--top N] [--batch B] [--markdown] [--json FILE]
       deno run -A bench/profile.ts --from FILE [--group N] [--top N] [--markdown]
  FILTER   profile the cases whose names contain it: the model cases of bench/models.ts (e.g.
           sam-encoder, sam-pseudo-label, resnet50-train-step b2, sam-block global) and the
           kernel cases "matmul 1024³", "matmul vit-qkv", "conv3x3"
  --top N  key rows printed per case, the rest summed in one row (default 25)
  --batch B  ResNet batch of the 512² cases (default 2)
  --markdown  print each case as a Markdown table (key, ms, share of the wall, count)
  --json FILE  also write every case's whole profile (all keys, the load) to FILE
  --from FILE  print the profiles a --json run saved instead of profiling (no GPU)
  --group N    sum the keys that share their first N "/"-separated parts (matmul/texture,
               conv2d/pack-texture, ...) into one row each`;

/** What a case's `setup` resolves to (as bench/models.ts's cases). */
interface CaseRun {
  step: () => void | Promise<void>;
  done: () => void;
}

interface ProfileCase {
  name: string;
  setup: () => Promise<CaseRun>;
}

function randomTensor(shape: number[], seed: number): Tensor {
  const rnd = mulberry32(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = 2 * rnd() - 1;
  return tensor(a, shape);
}

/** `reps` runs of `once` per step, each result disposed; `owned` disposed at the end. */
function repeated(reps: number, once: () => Promise<void> | void, owned: Tensor[]): CaseRun {
  return {
    step: async () => {
      for (let i = 0; i < reps; i++) await once();
    },
    done: () => owned.forEach((t) => t.dispose()),
  };
}

/**
 * Issue 16's kernel goals as profile cases: matmul 1024³ (row-major B: both operands copied into
 * textures on lavapipe), ViT-B's qkv projection (x · Wᵀ, as bench/matmul_forms.ts runs it), and
 * the 3×3 conv of the peers table, its output read back as that row does.
 */
function kernelCases(): ProfileCase[] {
  const conv: ConvGeometry = {
    N: 1,
    C: 64,
    H: 128,
    W: 128,
    O: 64,
    OH: 128,
    OW: 128,
    ...squareWindow(3, 1, 1),
    dh: 1,
    dw: 1,
    groups: 1,
  };
  return [
    {
      name: "matmul 1024³ (3 products)",
      setup: () => {
        const a = randomTensor([1024, 1024], 1), b = randomTensor([1024, 1024], 2);
        return Promise.resolve(repeated(3, () => F.matmulRaw(a, b).dispose(), [a, b]));
      },
    },
    {
      name: "matmul vit-qkv [4096, 768] · Wᵀ [768, 2304]",
      setup: () => {
        const x = randomTensor([4096, 768], 1), w = randomTensor([2304, 768], 2);
        return Promise.resolve(
          repeated(1, () => F.matmulRaw(x, F.transpose(w)).dispose(), [x, w]),
        );
      },
    },
    {
      name: "conv3x3 fwd 1x64x128² 64→64, read back (3 runs)",
      setup: () => {
        const x = randomTensor([1, 64, 128, 128], 1), w = randomTensor([64, 64, 3, 3], 2);
        return Promise.resolve(repeated(3, async () => {
          const y = noGrad(() => conv2dForwardRaw(x, w, null, conv));
          await y.data();
          y.dispose();
        }, [x, w]));
      },
    },
  ];
}

const fmtMs = (ms: number) => ms >= 100 ? ms.toFixed(0) : ms.toPrecision(3);

/**
 * The profile as text lines: `top` key rows, the rest in one row, and what is not accounted for;
 * on a software adapter each row's CPU time too, with its share of the pass's CPU time (and the rows
 * in its order).
 */
function report(name: string, p: GpuProfile, top: number, markdown: boolean): string[] {
  const dispatches = p.kernels.filter((k) => k.kind === "kernel").reduce((s, k) => s + k.count, 0);
  const copies = p.kernels.filter((k) => k.kind !== "kernel").reduce((s, k) => s + k.count, 0);
  const pct = (x: number, of: number) => `${(100 * x / of).toFixed(1)} %`;
  const cpu = p.cpu;
  const head = [
    `${name}: wall ${fmtMs(p.wallMs)} ms; kernels ${
      fmtMs(p.kernelMs)
    } ms in ${dispatches} dispatches, copies/uploads/readbacks ${
      fmtMs(p.copyMs)
    } ms in ${copies} (${p.method}); measured ${pct(p.kernelMs + p.copyMs, p.wallMs)} of the wall`,
    ...(cpu
      ? [
        `CPU time (this process, all threads): pass ${fmtMs(cpu.passMs)} ms; kernels ${
          fmtMs(cpu.kernelMs)
        } ms, copies/uploads/readbacks ${fmtMs(cpu.copyMs)} ms in the replays: ${
          pct(cpu.kernelMs + cpu.copyMs, cpu.passMs)
        } of the pass's CPU`,
      ]
      : []),
  ];
  // Largest first by the CPU time where there is one: steadier than the replays' wall clock.
  const keys = [...p.kernels].sort((a, b) => cpu ? b.cpuMs - a.cpuMs : b.ms - a.ms);
  const rows: [string, number, number, string][] = keys.slice(0, top).map((r) => [
    r.kernel,
    r.ms,
    r.cpuMs,
    String(r.count),
  ]);
  const rest = keys.slice(top);
  if (rest.length) {
    rows.push([
      `${rest.length} other keys`,
      rest.reduce((s, r) => s + r.ms, 0),
      rest.reduce((s, r) => s + r.cpuMs, 0),
      String(rest.reduce((s, r) => s + r.count, 0)),
    ]);
  }
  const gap = p.wallMs - p.kernelMs - p.copyMs;
  const flag = p.accounted ? "" : " — NOT ACCOUNTED FOR (wall)";
  rows.push([
    gap >= 0
      ? `not measured: host work the GPU waited for${flag}`
      : `measured times exceed the wall${flag}`,
    gap,
    cpu ? cpu.passMs - cpu.kernelMs - cpu.copyMs : NaN,
    "",
  ]);
  const cpuCells = (c: number) => cpu ? [fmtMs(c), pct(c, cpu.passMs)] : [];
  if (markdown) {
    const cols = [
      "key",
      "ms",
      "share of wall",
      ...(cpu ? ["CPU ms", "share of CPU"] : []),
      "count",
    ];
    return [
      ...head,
      "",
      `| ${cols.join(" | ")} |`,
      `| --- |${" --: |".repeat(cols.length - 1)}`,
      ...rows.map(([k, ms, c, n]) =>
        `| ${
          [k.replaceAll("|", "\\|"), fmtMs(ms), pct(ms, p.wallMs), ...cpuCells(c), n].join(" | ")
        } |`
      ),
      `| **pass** | **${fmtMs(p.wallMs)}** | 100 % | ${
        cpu ? `**${fmtMs(cpu.passMs)}** | 100 % | ` : ""
      }|`,
      "",
      p.note,
    ];
  }
  return [
    ...head,
    ...rows.map(([k, ms, c, n]) =>
      `${fmtMs(ms).padStart(9)} ms ${pct(ms, p.wallMs).padStart(7)}${
        cpu ? ` ${fmtMs(c).padStart(9)} CPU ms ${pct(c, cpu.passMs).padStart(7)}` : ""
      } ${n.padStart(5)}${n ? "×" : " "}  ${k}`
    ),
    p.note,
  ];
}

/** One case's profile as `--json` saves it. */
type SavedProfile = { name: string; load: string[]; env: Record<string, string> } & GpuProfile;

/** Reads a `--json` file, checking the fields this script prints. */
function loadSaved(path: string): SavedProfile[] {
  let data: unknown;
  try {
    data = JSON.parse(Deno.readTextFileSync(path));
  } catch (e) {
    throw new UsageError(`--from ${path}: ${(e as Error).message}`);
  }
  const ok = Array.isArray(data) &&
    data.every((c) =>
      typeof c?.name === "string" && Array.isArray(c.kernels) && typeof c.wallMs === "number" &&
      typeof c.kernelMs === "number" && typeof c.copyMs === "number" && typeof c.note === "string"
    );
  if (!ok) {
    throw new UsageError(
      `--from ${path}: expected an array of profiles {name, kernels, wallMs, kernelMs, copyMs, ` +
        `note} as --json writes`,
    );
  }
  return data as SavedProfile[];
}

/** `p` with its keys summed by their first `parts` "/"-separated parts. */
function grouped(p: GpuProfile, parts: number): GpuProfile {
  const by = new Map<string, GpuProfile["kernels"][number]>();
  for (const k of p.kernels) {
    const key = k.kernel.split("/").slice(0, parts).join("/");
    const e = by.get(key) ?? { kernel: key, kind: k.kind, ms: 0, cpuMs: 0, count: 0 };
    e.ms += k.ms;
    e.cpuMs += k.cpuMs ?? NaN;
    e.count += k.count;
    by.set(key, e);
  }
  return { ...p, kernels: [...by.values()].sort((a, b) => b.ms - a.ms) };
}

Deno.exit(
  await runCommand(
    {
      name: "bench/profile.ts",
      usage: USAGE,
      positionals: true,
      options: {
        top: { type: "string" },
        batch: { type: "string" },
        markdown: { type: "boolean" },
        json: { type: "string" },
        from: { type: "string" },
        group: { type: "string" },
      },
    },
    Deno.args,
    async (flags, positionals) => {
      const top = numberFlag(flags, "top", { def: 25, min: 1, integer: true })!;
      const batch = numberFlag(flags, "batch", { def: 2, min: 1, integer: true })!;
      const group = numberFlag(flags, "group", { min: 1, integer: true });
      if (typeof flags.from === "string") {
        if (positionals.length) throw new UsageError("--from takes no FILTER");
        for (const c of loadSaved(flags.from)) {
          console.log(
            `\nload ${c.load.join(" → ")} (/proc/loadavg, 1/5/15 min); env ${
              JSON.stringify(c.env)
            }`,
          );
          const p = group ? grouped(c, group) : c;
          for (const line of report(c.name, p, top, !!flags.markdown)) console.log(line);
        }
        return;
      }
      if (positionals.length !== 1) throw new UsageError("give one FILTER");
      await initGpu();
      const cases: ProfileCase[] = [...kernelCases(), ...modelCases(batch)].filter((c) =>
        c.name.includes(positionals[0])
      );
      if (!cases.length) throw new UsageError(`no case matches "${positionals[0]}"`);
      const json = typeof flags.json === "string" ? flags.json : null;
      const out: SavedProfile[] = [];
      for (const c of cases) {
        const load0 = loadavg();
        const run = await c.setup();
        await run.step();
        await sync();
        const p = await profileGpu(() => run.step());
        run.done();
        console.log(`\nload ${load0} → ${loadavg()} (/proc/loadavg, 1/5/15 min)`);
        const shown = group ? grouped(p, group) : p;
        for (const line of report(c.name, shown, top, !!flags.markdown)) console.log(line);
        if (json) {
          const env = Object.fromEntries(
            Object.entries(Deno.env.toObject()).filter(([k]) => /^(ENGINE_|SAM_)/.test(k)),
          );
          out.push({ name: c.name, load: [load0, loadavg()], env, ...p });
          await writeFileAtomic(json, JSON.stringify(out, null, 1) + "\n");
        }
      }
    },
  ),
);
