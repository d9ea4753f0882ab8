/**
 * Runs a Deno child process under a wall-clock and a memory bound, measuring its peak resident
 * memory: a hang in synchronous JavaScript cannot be interrupted from inside the process, and
 * ArrayBuffers live outside V8's heap limit, so both bounds are enforced from outside. Peak RSS
 * comes from /proc/<pid>/status (VmHWM), polled while the child runs (Linux only).
 */

export interface BoundedResult {
  /** Exit code, or null when killed. */
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Largest VmHWM seen (MiB); 0 where /proc is not available. */
  peakRssMiB: number;
  /** Why the parent killed the child, if it did. */
  killed?: "time" | "memory";
}

export interface BoundOptions {
  timeoutMs: number;
  maxRssMiB: number;
  /** Poll period (ms). */
  pollMs?: number;
  env?: Record<string, string>;
}

/** Resident memory of a live process: [current VmRSS, peak VmHWM] in KiB, or null once gone. */
export function procMemKiB(pid: number): [number, number] | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return null;
  }
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(text)?.[1] ?? 0);
  return [field("VmRSS"), field("VmHWM")];
}

/** Runs `deno <args>` bounded by `opts`; never throws for the child's own failure. */
export async function runBounded(args: string[], opts: BoundOptions): Promise<BoundedResult> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    env: { NO_COLOR: "1", ...opts.env },
  }).spawn();
  let peakKiB = 0;
  let killed: BoundedResult["killed"];
  const timer = setInterval(() => {
    const m = procMemKiB(child.pid);
    if (m) peakKiB = Math.max(peakKiB, m[1]);
    if (killed) return;
    if (m && m[0] > opts.maxRssMiB * 1024) killed = "memory";
    else if (performance.now() - t0 > opts.timeoutMs) killed = "time";
    if (killed) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
  }, opts.pollMs ?? 10);
  const out = await child.output().finally(() => clearInterval(timer));
  const dec = new TextDecoder();
  return {
    code: killed ? null : out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    ms: performance.now() - t0,
    peakRssMiB: peakKiB / 1024,
    killed,
  };
}
