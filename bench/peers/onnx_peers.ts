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
  /** What the exported graph does differently, where that matters (ONNX Runtime peers). */
  exported?: string;
  /** Peak resident memory of the peer's process, MiB (ONNX Runtime peers). */
  peakRssMiB?: number;
}

export type Peers = Record<string, PeerResult>;

const ORT_VERSION = "1.30.0";
/**
 * A peer process running longer than this (`PEER_TIMEOUT_MIN`, default 30 minutes) is killed and
 * reported as failed: the encoder's per-head export on ORT-web takes ~5 minutes quiet (a checked and
 * a timed run), several times that under load.
 */
const PEER_TIMEOUT_MS = Number(Deno.env.get("PEER_TIMEOUT_MIN") ?? 30) * 60_000;
/**
 * A peer process holding more than this (MiB; `PEER_MAX_RSS_MIB`, default 8192) is killed and
 * reported as failed: the encoder's straight export on ORT-web holds several GiB and the machine is
 * shared.
 */
const PEER_MAX_RSS_MIB = Number(Deno.env.get("PEER_MAX_RSS_MIB") ?? 8192);

/** Resident memory of a process, MiB (0 when it has gone). */
function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * What an export computes, by `case/variant`: facts of the graph (tensor shapes), not measurements.
 * Where a peer's output is wrong, its error carries them.
 */
const EXPORTED: Record<string, string> = {
  "onnx:sam_encoder/":
    "straight export: each global-attention block's scores and softmax are one " +
    "[12, 4096, 4096] fp32 tensor (768 MiB), past WebGPU's 128 MiB binding limit (flat index " +
    "33 554 432 and on; see the softmax-past-binding-limit row)",
  "onnx:sam_encoder/per-head": "attention one head at a time: scores and softmax [4096, 4096] " +
    "(64 MiB) per head, under the binding limit",
};

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
  let killed = "";
  const kill = (why: string) => {
    if (killed) return;
    killed = why;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  };
  const timer = setTimeout(
    () => kill(`ran past ${PEER_TIMEOUT_MS / 60_000} min`),
    PEER_TIMEOUT_MS,
  );
  let peakRssMiB = 0;
  const watch = setInterval(() => {
    const rss = rssMiB(child.pid);
    peakRssMiB = Math.max(peakRssMiB, rss);
    if (rss > PEER_MAX_RSS_MIB) {
      kill(`held ${rss.toFixed(0)} MiB, over PEER_MAX_RSS_MIB=${PEER_MAX_RSS_MIB}`);
    }
  }, 1000);
  const out = await child.output();
  clearTimeout(timer);
  clearInterval(watch);
  peakRssMiB = Math.round(peakRssMiB);
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  try {
    const r = JSON.parse(text) as Omit<PeerResult, "runtime">;
    return {
      ms: r.ms ?? null,
      ok: !!r.ok,
      error: r.error,
      maxAbsErr: r.maxAbsErr,
      firstWrongIndex: r.firstWrongIndex,
      peakRssMiB,
    };
  } catch {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ");
    return {
      ms: null,
      ok: false,
      error: `peer process ${
        killed ? `killed: ${killed}` : out.signal ? `killed by ${out.signal}` : `exited ${out.code}`
      }: ${err.slice(0, 400)}`,
      peakRssMiB,
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
        const exported = EXPORTED[`${c}/${m.variant}`];
        const res = await ortRun("webgpu", m.onnx, r, runs);
        peers[key] = {
          ...res,
          ...(exported
            ? { exported, ...(res.ok ? {} : { error: `${res.error}; ${exported}` }) }
            : {}),
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
