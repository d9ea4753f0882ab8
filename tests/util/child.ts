/**
 * Runs a child process under a wall-clock limit and records its peak resident memory (VmHWM
 * from /proc/<pid>/status, polled while it runs), so a test can assert that a hostile input
 * ends fast and within a memory bound instead of hanging or exhausting the machine.
 */

export interface ChildResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall-clock seconds until exit (or until killed). */
  seconds: number;
  /** Peak resident memory in MiB seen while polling (0 where /proc is unavailable). */
  peakMiB: number;
  /** Whether the limit was reached and the child killed. */
  timedOut: boolean;
}

/** The peak resident set (VmHWM) of `pid` in MiB, or 0 when it cannot be read. */
function vmHwmMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Runs `deno run -A <args>` (or `cmd` with `args` when given), killing it after `timeoutS`
 * seconds. `memLimitMiB` also kills it once its peak passes the limit (then `timedOut` is false
 * and `peakMiB` exceeds the limit), so a regression fails the test instead of the machine.
 */
export async function runChild(
  args: string[],
  opts: { timeoutS: number; memLimitMiB: number; env?: Record<string, string>; cmd?: string },
): Promise<ChildResult> {
  const t0 = performance.now();
  const child = new Deno.Command(opts.cmd ?? Deno.execPath(), {
    args: opts.cmd ? args : ["run", "-A", ...args],
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1", ...opts.env },
  }).spawn();
  let peak = 0, timedOut = false, done = false;
  const stdout = new Response(child.stdout).text();
  const stderr = new Response(child.stderr).text();
  const status = child.status.then((s) => {
    done = true;
    return s;
  });
  while (!done) {
    peak = Math.max(peak, vmHwmMiB(child.pid));
    if ((performance.now() - t0) / 1000 > opts.timeoutS) timedOut = true;
    if (timedOut || peak > opts.memLimitMiB) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      break;
    }
    await Promise.race([status, new Promise((r) => setTimeout(r, 20))]);
  }
  const s = await status;
  return {
    code: s.code,
    stdout: await stdout,
    stderr: await stderr,
    seconds: (performance.now() - t0) / 1000,
    peakMiB: peak,
    timedOut,
  };
}
