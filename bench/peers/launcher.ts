/**
 * The one way this project launches its PyTorch peer: Debian's /usr/bin/python3 (python3-torch,
 * bench only) with a clean environment: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (some
 * environments set them and they pin a slower kernel), the thread count set for OpenMP, OpenBLAS
 * and MKL alike, and OMP_WAIT_POLICY=PASSIVE unless the caller's environment sets it (on a shared
 * 2-core machine OpenMP's default spin-waiting made 2-thread runs 25× slower than 1 thread:
 * 78 ms against 2000+ ms on ResNet 1×64² under load).
 *
 * It also finds which BLAS torch really loaded (`torch.__config__.show()` and the libraries
 * mapped into the process after a matmul, from /proc/self/maps) and refuses a reference-BLAS
 * torch as a peer: ten times slower than OpenBLAS, it would make every ratio look good.
 */

export const PYTHON = "/usr/bin/python3";
export const PEER_THREADS = 2;

/** What the PyTorch peer runs on. */
export interface TorchInfo {
  version: string;
  /** "OpenBLAS", "MKL", "BLIS", "reference" or "unknown". */
  blas: string;
  /** The BLAS libraries mapped into the process. */
  blasLibs: string[];
  /** torch.get_num_threads() under the launcher's environment. */
  threads: number;
  /** Why torch is not a peer here (null: it is). */
  refused: string | null;
}

/** The environment of every PyTorch peer process. */
function torchEnv(threads = PEER_THREADS): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  for (const k of ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]) {
    env[k] = String(threads);
  }
  env.OMP_WAIT_POLICY ??= "PASSIVE";
  return env;
}

/** Runs a python script with {@link torchEnv}; stderr is passed through (progress lines). */
export async function runTorch(
  args: string[],
  opts: { threads?: number; stdin?: string } = {},
): Promise<{ success: boolean; stdout: string }> {
  const child = new Deno.Command(PYTHON, {
    args,
    env: torchEnv(opts.threads),
    clearEnv: true,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  return { success: out.success, stdout: new TextDecoder().decode(out.stdout) };
}

const BLAS_PROBE = `
import json, re, torch
torch.mm(torch.rand(64, 64), torch.rand(64, 64))
libs = sorted({l.split()[-1] for l in open('/proc/self/maps')
               if len(l.split()) > 5 and re.search(r'blas|mkl|blis|lapack', l.split()[-1].split('/')[-1])})
cfg = torch.__config__.show()
m = re.search(r'BLAS_INFO=([^,\\s]+)', cfg)
print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads(),
                  "libs": libs, "blas_info": m.group(1) if m else None}))
`;

/** Classifies the BLAS from the mapped library paths (`blas_info` is torch's build-time claim). */
export function classifyBlas(libs: string[], blasInfo: string | null): string {
  const names = libs.join(" ");
  if (/openblas/i.test(names)) return "OpenBLAS";
  if (/mkl/i.test(names)) return "MKL";
  if (/blis/i.test(names)) return "BLIS";
  if (/libblas\.so/.test(names)) return "reference";
  if (blasInfo && /mkl/i.test(blasInfo)) return "MKL";
  return "unknown";
}

/**
 * Why a torch on this BLAS is not a peer (null: it is). The reference BLAS is ~10× slower than
 * OpenBLAS: every ratio against it would flatter ours.
 */
export function blasRefusal(blas: string): string | null {
  return blas === "reference" ? "not configured: install libopenblas0-pthread" : null;
}

let info: Promise<TorchInfo | null> | null = null;

/** The PyTorch peer's version, BLAS and threads (null when torch does not import). Cached. */
export function torchInfo(): Promise<TorchInfo | null> {
  info ??= (async () => {
    try {
      const r = await runTorch(["-c", BLAS_PROBE]);
      if (!r.success) return null;
      const j = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
        version: string;
        threads: number;
        libs: string[];
        blas_info: string | null;
      };
      const blas = classifyBlas(j.libs, j.blas_info);
      return {
        version: j.version,
        blas,
        blasLibs: j.libs,
        threads: j.threads,
        refused: blasRefusal(blas),
      };
    } catch {
      return null;
    }
  })();
  return info;
}

/** The BLAS with its version where the mapped library's file name carries one ("OpenBLAS 0.3.21"). */
export function blasName(t: Pick<TorchInfo, "blas" | "blasLibs">): string {
  const v = t.blasLibs.map((l) => /openblas[a-z]*-r(\d+\.\d+\.\d+)/i.exec(l)?.[1]).find(Boolean);
  return v && t.blas === "OpenBLAS"
    ? `OpenBLAS ${v}${t.blasLibs.some((l) => /openblas-pthread/.test(l)) ? " (pthread)" : ""}`
    : t.blas;
}

/** "torch 1.13.0, OpenBLAS 0.3.21 (pthread), 2 threads" (for notes and adapters). */
export function describeTorch(t: TorchInfo): string {
  return `torch ${t.version}, ${blasName(t)}, ${t.threads} threads`;
}
