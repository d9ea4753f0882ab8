/**
 * The peers of one piece of work, run in the same bench run and checked: PyTorch CPU (the
 * reference; its BLAS and threads named), ONNX Runtime Web with its WebGPU execution provider on
 * our adapter, and ONNX Runtime's native CPU provider. PyTorch exports each model to ONNX with
 * random weights at bench time (bench/peers/torch_models.py --export) and saves its own input and
 * output; each ONNX Runtime provider runs in its own process (bench/peers/ort_run.ts) and a peer
 * whose output differs from PyTorch's is reported wrong, with its error, never with a time.
 */
import { gpu } from "../../engine/mod.ts";
import { runTorchPeer } from "./torch.ts";
import { describeTorch, PEER_THREADS, torchInfo } from "./launcher.ts";

/** One peer's result for one piece of work. */
export interface PeerResult {
  /** Median ms (null when the peer failed or its output was wrong). */
  ms: number | null;
  /** The peer ran and its output matched PyTorch's. */
  ok: boolean;
  /** Why not ok. */
  error?: string;
  /** Largest |peer − PyTorch| (ONNX Runtime peers). */
  maxAbsErr?: number;
  /** First flat index of the output past the tolerance (wrong outputs). */
  firstWrongIndex?: number | null;
  /** What ran: library, version, BLAS, threads, adapter. */
  runtime: string;
}

export type Peers = Record<string, PeerResult>;

const ORT_VERSION = "1.30.0";
/** A peer process running longer than this is killed and reported as failed. */
const PEER_TIMEOUT_MS = 30 * 60_000;

interface ExportRow {
  case: string;
  ms: number;
  error?: string;
  models?: { variant: string; onnx: string }[];
  input?: { name: string; shape: number[]; file: string };
  output?: { shape: number[]; file: string };
}

async function ortRun(
  ep: "webgpu" | "cpu",
  onnx: string,
  row: ExportRow,
  runs: number,
): Promise<Omit<PeerResult, "runtime">> {
  const script = new URL("./ort_run.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      script,
      "--ep",
      ep,
      "--onnx",
      onnx,
      "--input",
      row.input!.file,
      "--shape",
      row.input!.shape.join(","),
      "--ref",
      row.output!.file,
      "--runs",
      String(runs),
      "--threads",
      String(PEER_THREADS),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), PEER_TIMEOUT_MS);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  try {
    const r = JSON.parse(text) as Omit<PeerResult, "runtime">;
    return {
      ms: r.ms ?? null,
      ok: !!r.ok,
      error: r.error,
      maxAbsErr: r.maxAbsErr,
      firstWrongIndex: r.firstWrongIndex,
    };
  } catch {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ");
    return {
      ms: null,
      ok: false,
      error: `peer process ${out.code === 137 || out.signal ? "killed" : `exited ${out.code}`}: ${
        err.slice(0, 400)
      }`,
    };
  }
}

/**
 * Runs the PyTorch, ORT-web WebGPU and ORT CPU peers on each `onnx:` case (see
 * bench/peers/torch_models.py for the kinds) and returns their results by case. Variants of an
 * export (the encoder's per-head one) appear as `ort-web-webgpu-<variant>`. `runs`: timed runs
 * per peer after the checked first run.
 */
export async function onnxPeers(cases: string[], runs: number): Promise<Map<string, Peers>> {
  const out = new Map<string, Peers>();
  const info = await torchInfo();
  if (!info) {
    const error = "/usr/bin/python3 cannot import torch (apt-get install python3-torch): " +
      "no reference and no ONNX export";
    for (const c of cases) {
      out.set(c, { "pytorch-cpu": { ms: null, ok: false, error, runtime: "-" } });
    }
    return out;
  }
  const torchRuntime = describeTorch(info);
  const dir = await Deno.makeTempDir({ prefix: "epsam-onnx-" });
  try {
    console.error(`[peers] exporting ${cases.join(", ")} to ONNX with ${torchRuntime}`);
    const rows = await runTorchPeer(cases, runs, ["--export", dir]);
    for (const c of cases) {
      const r = rows.get(c) as ExportRow | undefined;
      const peers: Peers = {};
      out.set(c, peers);
      if (!r || r.error || !r.models) {
        const error = `PyTorch export/reference failed: ${r?.error ?? "no row"}`;
        peers["pytorch-cpu"] = { ms: null, ok: false, error, runtime: torchRuntime };
        continue;
      }
      peers["pytorch-cpu"] = info.refused
        ? { ms: null, ok: false, error: info.refused, runtime: torchRuntime }
        : { ms: r.ms, ok: true, runtime: torchRuntime };
      for (const m of r.models) {
        const key = `ort-web-webgpu${m.variant ? `-${m.variant}` : ""}`;
        console.error(`[peers] ${c}: ${key} ...`);
        peers[key] = {
          ...await ortRun("webgpu", m.onnx, r, runs),
          runtime: `onnxruntime-web ${ORT_VERSION} WebGPU EP on ${gpu().adapterName}`,
        };
        console.error(`[peers]   ${JSON.stringify(peers[key])}`);
      }
      console.error(`[peers] ${c}: ort-cpu ...`);
      peers["ort-cpu"] = {
        ...await ortRun("cpu", r.models[0].onnx, r, runs),
        runtime: `onnxruntime-node ${ORT_VERSION} CPU EP, ${PEER_THREADS} intra-op threads`,
      };
      console.error(`[peers]   ${JSON.stringify(peers["ort-cpu"])}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return out;
}

/** "pytorch-cpu 150 ms (2.1× ours); ort-cpu wrong: ..." for a row's notes. */
export function describePeers(peers: Peers, ours: number): string {
  return Object.entries(peers).map(([k, p]) =>
    p.ok && p.ms !== null
      ? `${k} ${p.ms.toFixed(p.ms < 100 ? 1 : 0)} ms (ours ÷ ${k} ${(ours / p.ms).toFixed(2)}×)`
      : `${k} ${p.error ?? "failed"}`
  ).join("; ");
}
