/**
 * Runs one exported ONNX model on one ONNX Runtime provider and checks its output against
 * PyTorch's, in its own process (so a crash, a hang or the memory of a peer cannot take the bench
 * down): `deno run -A bench/peers/ort_run.ts --ep webgpu|cpu --onnx F --input F --shape 1,3,8,8
 * --ref F [--runs N] [--threads N]`. Prints one JSON line: {ms, all, ok, maxAbsErr,
 * firstWrongIndex, error}. The first run checks the output (and compiles); a wrong output is
 * reported without a time; otherwise `runs` more are timed by the wall clock around
 * `session.run` (inputs uploaded and the output read back, as the peer's users see it).
 * webgpu: onnxruntime-web 1.30 with its WebGPU execution provider on this process's adapter;
 * cpu: onnxruntime-node 1.30 (its native CPU provider), `--threads` intra-op threads.
 */
import { runCommand, stringFlag } from "../../pipeline/cli/args.ts";
import { compareOutputs } from "./compare.ts";

const USAGE = `usage: deno run -A bench/peers/ort_run.ts --ep webgpu|cpu --onnx FILE --input FILE
       --shape D,D,... --ref FILE [--runs N] [--threads N]
  --ep       webgpu (onnxruntime-web, WebGPU EP) or cpu (onnxruntime-node, CPU EP)
  --onnx     the model (input "x", output "y")
  --input    float32 little-endian input, --shape its dimensions
  --ref      PyTorch's output (float32 little-endian)
  --runs     timed runs after the checked one (default 3)
  --threads  intra-op threads of the CPU provider (default 2)`;

function f32(path: string): Float32Array {
  const b = Deno.readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
}

type Ort = typeof import("onnxruntime-web");

const code = await runCommand(
  {
    name: "ort_run",
    usage: USAGE,
    options: {
      ep: { type: "string" },
      onnx: { type: "string" },
      input: { type: "string" },
      shape: { type: "string" },
      ref: { type: "string" },
      runs: { type: "string" },
      threads: { type: "string" },
    },
  },
  Deno.args,
  async (flags) => {
    const ep = stringFlag(flags, "ep");
    const runs = Number(stringFlag(flags, "runs") ?? 3);
    const threads = Number(stringFlag(flags, "threads") ?? 2);
    const shape = (stringFlag(flags, "shape") ?? "").split(",").map(Number);
    const result: Record<string, unknown> = { ms: null, ok: false };
    try {
      let ort: Ort;
      let session;
      if (ep === "webgpu") {
        ort = await import("onnxruntime-web/webgpu") as unknown as Ort;
        session = await ort.InferenceSession.create(await Deno.readFile(flags.onnx as string), {
          executionProviders: ["webgpu"],
        });
      } else if (ep === "cpu") {
        ort = await import("onnxruntime-node") as unknown as Ort;
        session = await ort.InferenceSession.create(flags.onnx as string, {
          executionProviders: ["cpu"],
          intraOpNumThreads: threads,
          interOpNumThreads: 1,
        });
      } else {
        throw new Error(`--ep must be webgpu or cpu, got ${ep}`);
      }
      const x = new ort.Tensor("float32", f32(flags.input as string), shape);
      const once = async () => {
        const t0 = performance.now();
        const r = await session.run({ x });
        const y = r.y;
        const data = (ep === "webgpu" && y.location === "gpu-buffer")
          ? await y.getData(true) as Float32Array
          : y.data as Float32Array;
        return { ms: performance.now() - t0, data };
      };
      const first = await once();
      const check = compareOutputs(first.data, f32(flags.ref as string));
      result.maxAbsErr = check.maxAbsErr;
      result.firstWrongIndex = check.firstWrongIndex;
      result.firstRunMs = first.ms;
      if (!check.ok) {
        result.error = check.error;
      } else {
        const all: number[] = [];
        for (let i = 0; i < runs; i++) all.push((await once()).ms);
        const s = all.slice().sort((a, b) => a - b);
        const m = s.length >> 1;
        result.ms = s.length ? (s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2) : first.ms;
        result.all = all;
        result.ok = true;
      }
    } catch (e) {
      result.error = `${(e as Error).message ?? e}`.slice(0, 500);
    }
    console.log(JSON.stringify(result));
  },
);
Deno.exit(code);
