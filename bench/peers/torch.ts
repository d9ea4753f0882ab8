/**
 * PyTorch CPU peer of the matmul bench: bench/peers/torch.py through the one launcher
 * (bench/peers/launcher.ts: clean environment, thread counts, BLAS check).
 */
import { PEER_THREADS, runTorch, type TorchInfo, torchInfo } from "./launcher.ts";

export interface TorchResult {
  info: TorchInfo;
  /** ms by "batch,M,N,K". */
  ms: Map<string, number>;
}

/** Whether `import torch` works with Debian's python. */
export async function torchAvailable(): Promise<boolean> {
  return (await torchInfo()) !== null;
}

/** Times torch.matmul on each [batch, M, N, K] (median of `runs`). Throws for a refused torch. */
export async function torchMatmul(
  shapes: number[][],
  runs = 5,
  threads = PEER_THREADS,
): Promise<TorchResult> {
  const info = await torchInfo();
  if (!info) {
    throw new Error("/usr/bin/python3 cannot import torch (apt-get install python3-torch)");
  }
  if (info.refused) throw new Error(info.refused);
  const script = new URL("./torch.py", import.meta.url).pathname;
  const out = await runTorch([script, String(threads), String(runs)], {
    threads,
    stdin: JSON.stringify(shapes),
  });
  if (!out.success) throw new Error("torch matmul peer failed (see its stderr above)");
  const r = JSON.parse(out.stdout);
  const ms = new Map<string, number>();
  for (const row of r.rows) ms.set(row.shape.join(","), row.ms);
  return { info, ms };
}

/** One row of bench/peers/torch_models.py's output. */
export interface PeerRow {
  case: string;
  ms: number;
  all?: number[];
  error?: string;
}

/**
 * Runs bench/peers/torch_models.py through the one PyTorch launcher (bench/peers/launcher.ts). The
 * SAM cases need EP-SAM's code/segment_anything/modeling copied to
 * $EPSAM_CODE/segment_anything_modeling (default /tmp/epsam_code); the script says so when it is
 * missing. `extra` goes before the cases (e.g. `--export DIR`).
 */
export async function runTorchPeer(
  cases: string[],
  runs: number,
  extra: string[] = [],
): Promise<Map<string, PeerRow>> {
  const out = new Map<string, PeerRow>();
  if (!cases.length) return out;
  const script = new URL("./torch_models.py", import.meta.url).pathname;
  const epsam = Deno.env.get("EPSAM_CODE") ?? "/tmp/epsam_code";
  try {
    const r = await runTorch([
      script,
      "--threads",
      String(PEER_THREADS),
      "--runs",
      String(runs),
      "--sam-code",
      epsam,
      ...extra,
      ...cases,
    ]);
    const json = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as { rows?: PeerRow[] };
    for (const row of json.rows ?? []) out.set(row.case, { ...row });
  } catch (e) {
    for (const c of cases) out.set(c, { case: c, ms: NaN, error: (e as Error).message });
  }
  return out;
}
