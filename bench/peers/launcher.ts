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
 *
 * OpenBLAS's own core choice is checked too. Its DYNAMIC_ARCH build picks a kernel from the CPU's
 * family/model numbers, and on a virtual CPU it does not know ("Intel(R) Xeon(R) Processor") it
 * falls back to Prescott (SSE3): on this AVX-512 machine that made every GEMM ~4× slower (1024³:
 * 16 against 58 GFLOP/s, load 6–7) and flattered every ratio. When the core OpenBLAS chose is
 * weaker than the CPU's flags allow, the launcher sets OPENBLAS_CORETYPE to the matching core
 * (SkylakeX, Haswell, Sandybridge), checks that it took, and says so in the peer's runtime.
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
  /** The kernel OpenBLAS runs (`openblas_get_corename`), null for another BLAS. */
  blasCore: string | null;
  /** OpenBLAS's own choice when the launcher replaced it with a stronger core (null: kept). */
  autodetectedCore: string | null;
  /** Why torch is not a peer here (null: it is). */
  refused: string | null;
}

/** The OpenBLAS core the launcher sets (null: OpenBLAS's own choice stands). */
let forcedCore: string | null = null;

/** The environment of every PyTorch peer process. */
function torchEnv(threads = PEER_THREADS): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (forcedCore) env.OPENBLAS_CORETYPE = forcedCore;
  for (const k of ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]) {
    env[k] = String(threads);
  }
  env.OMP_WAIT_POLICY ??= "PASSIVE";
  return env;
}

/**
 * Runs a python script with {@link torchEnv}, once {@link torchInfo} has settled the OpenBLAS core;
 * stderr is passed through (progress lines).
 */
export async function runTorch(
  args: string[],
  opts: { threads?: number; stdin?: string } = {},
): Promise<{ success: boolean; stdout: string }> {
  await torchInfo();
  return spawnTorch(args, opts);
}

async function spawnTorch(
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
import ctypes, json, re, torch
torch.mm(torch.rand(64, 64), torch.rand(64, 64))
libs = sorted({l.split()[-1] for l in open('/proc/self/maps')
               if len(l.split()) > 5 and re.search(r'blas|mkl|blis|lapack', l.split()[-1].split('/')[-1])})
cfg = torch.__config__.show()
m = re.search(r'BLAS_INFO=([^,\\s]+)', cfg)
core = None
for l in libs:
    if 'openblas' in l.split('/')[-1]:
        try:
            f = ctypes.CDLL(l).openblas_get_corename
            f.restype = ctypes.c_char_p
            core = f().decode()
        except Exception:
            pass
print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads(),
                  "libs": libs, "blas_info": m.group(1) if m else None, "core": core}))
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

/** OpenBLAS's x86-64 DYNAMIC_ARCH Intel cores this launcher ranks, weakest first. */
const OPENBLAS_CORES = [
  "prescott",
  "core2",
  "penryn",
  "dunnington",
  "nehalem",
  "sandybridge",
  "haswell",
  "skylakex",
];

/** The strongest OpenBLAS core the CPU's /proc/cpuinfo flags allow (null: none ranked). */
export function openblasCoreFor(flags: ReadonlySet<string>): string | null {
  const all = (fs: string[]) => fs.every((f) => flags.has(f));
  if (all(["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"])) return "SkylakeX";
  if (all(["avx2", "fma"])) return "Haswell";
  if (all(["avx"])) return "Sandybridge";
  return null;
}

/**
 * The core to force when OpenBLAS chose one weaker than the CPU allows (null: keep its choice,
 * also for cores this launcher does not rank, e.g. AMD's).
 */
export function coreUpgrade(detected: string | null, best: string | null): string | null {
  if (!detected || !best) return null;
  const a = OPENBLAS_CORES.indexOf(detected.toLowerCase());
  const b = OPENBLAS_CORES.indexOf(best.toLowerCase());
  return a >= 0 && b > a ? best : null;
}

/** The CPU flags of the first processor in /proc/cpuinfo (empty where it cannot be read). */
async function cpuFlags(): Promise<Set<string>> {
  try {
    const text = await Deno.readTextFile("/proc/cpuinfo");
    const line = text.split("\n").find((l) => /^flags\s*:/.test(l)) ?? "";
    return new Set(line.replace(/^flags\s*:/, "").trim().split(/\s+/));
  } catch {
    return new Set();
  }
}

interface ProbeResult {
  version: string;
  threads: number;
  libs: string[];
  blas_info: string | null;
  core: string | null;
}

async function probe(): Promise<ProbeResult | null> {
  const r = await spawnTorch(["-c", BLAS_PROBE]);
  if (!r.success) return null;
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as ProbeResult;
}

let info: Promise<TorchInfo | null> | null = null;

/** The PyTorch peer's version, BLAS and threads (null when torch does not import). Cached. */
export function torchInfo(): Promise<TorchInfo | null> {
  info ??= (async () => {
    try {
      let j = await probe();
      if (!j) return null;
      let autodetectedCore: string | null = null;
      const upgrade = coreUpgrade(j.core, openblasCoreFor(await cpuFlags()));
      if (upgrade) {
        forcedCore = upgrade;
        const forced = await probe();
        if (forced && forced.core?.toLowerCase() === upgrade.toLowerCase()) {
          autodetectedCore = j.core;
          j = forced;
        } else forcedCore = null;
      }
      const blas = classifyBlas(j.libs, j.blas_info);
      return {
        version: j.version,
        blas,
        blasLibs: j.libs,
        threads: j.threads,
        blasCore: j.core,
        autodetectedCore,
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

/**
 * "torch 1.13.0, OpenBLAS 0.3.21 (pthread) core SkylakeX (set by the bench; OpenBLAS chose
 * Prescott), 2 threads" (for notes and adapters).
 */
export function describeTorch(
  t: Pick<TorchInfo, "version" | "blas" | "blasLibs" | "threads" | "blasCore" | "autodetectedCore">,
): string {
  const core = t.blasCore
    ? ` core ${t.blasCore}${
      t.autodetectedCore ? ` (set by the bench; OpenBLAS chose ${t.autodetectedCore})` : ""
    }`
    : "";
  return `torch ${t.version}, ${blasName(t)}${core}, ${t.threads} threads`;
}
