/**
 * Runs bench/peers/torch.py with Debian's python3 (python3-torch), 2 threads, and without the
 * OpenBLAS core-type/L2 overrides some environments set (they would pin a slower kernel).
 */

const PYTHON = "/usr/bin/python3";

export interface TorchResult {
  version: string;
  threads: number;
  /** ms by "batch,M,N,K". */
  ms: Map<string, number>;
}

/** Whether `import torch` works with Debian's python. */
export async function torchAvailable(): Promise<boolean> {
  try {
    const p = await new Deno.Command(PYTHON, {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return p.success;
  } catch {
    return false;
  }
}

/** Times torch.matmul on each [batch, M, N, K] (median of `runs`). */
export async function torchMatmul(shapes: number[][], runs = 5, threads = 2): Promise<TorchResult> {
  const env = Deno.env.toObject();
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  for (const k of ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]) {
    env[k] = String(threads);
  }
  const script = new URL("./torch.py", import.meta.url).pathname;
  const child = new Deno.Command(PYTHON, {
    args: [script, String(threads), String(runs)],
    env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(shapes)));
  await w.close();
  const out = await child.output();
  if (!out.success) {
    throw new Error(`torch peer failed: ${new TextDecoder().decode(out.stderr).slice(-500)}`);
  }
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  const ms = new Map<string, number>();
  for (const row of r.rows) ms.set(row.shape.join(","), row.ms);
  return { version: r.torch, threads: r.threads, ms };
}
