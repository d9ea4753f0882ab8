/**
 * A real one-node Slurm cluster for the tests, started and stopped by the test itself: munged with
 * a fresh key, slurmctld and slurmd from Debian's slurm-wlm, all configured in a unique temp
 * folder (state, spool, logs, sockets, free ports), so tests never touch a system Slurm and two
 * test runs never meet. Needs the `slurm-wlm` and `munge` packages; `slurmMissing()` says why a
 * test must skip.
 */

export interface Cluster {
  dir: string;
  /** Environment for Slurm client commands (SLURM_CONF). */
  env: Record<string, string>;
  /** Runs a Slurm client command; returns stdout (throws with stderr on failure). */
  cmd(name: string, args: string[]): Promise<string>;
  stop(): Promise<void>;
}

async function which(name: string): Promise<string | null> {
  for (const d of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      const p = `${d}/${name}`;
      if ((await Deno.stat(p)).isFile) return p;
    } catch { /* not here */ }
  }
  return null;
}

/** Why the Slurm tests cannot run here, or null when they can. */
export async function slurmMissing(): Promise<string | null> {
  if (Deno.build.os !== "linux") return "Slurm tests run on Linux only";
  for (const b of ["sbatch", "slurmctld", "slurmd", "munged"]) {
    if (!(await which(b))) {
      return `${b} is not installed (apt-get install slurm-wlm munge); Slurm tests skipped`;
    }
  }
  return null;
}

function freePort(): number {
  const l = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function run(bin: string, args: string[], env: Record<string, string>) {
  const r = await new Deno.Command(bin, { args, env, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readPid(path: string): Promise<number | null> {
  try {
    const n = Number((await Deno.readTextFile(path)).trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie has exited
  } catch {
    return false;
  }
}

/** Stops a daemon by its pid file: SIGTERM, then SIGKILL after `ms`. */
async function stopDaemon(pidFile: string, ms = 5000): Promise<void> {
  const pid = await readPid(pidFile);
  if (pid === null || !alive(pid)) return;
  try {
    Deno.kill(pid, "SIGTERM");
  } catch { /* gone */ }
  const end = Date.now() + ms;
  while (alive(pid) && Date.now() < end) await sleep(100);
  if (alive(pid)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
}

/**
 * Starts munged, slurmctld and slurmd with `cpus` CPUs on one node named after this host and
 * waits until the node is idle. Always `stop()` it (in a finally).
 */
export async function startCluster(opts: { cpus?: number; memoryMb?: number } = {}): Promise<
  Cluster
> {
  const dir = await Deno.makeTempDir({ prefix: "epsam-slurm-" });
  const cpus = opts.cpus ?? 2;
  // slurmd and slurmctld know themselves by the short host name.
  const host = Deno.hostname().split(".")[0];
  const user = (await run("id", ["-un"], {})).out.trim() || "root";
  for (const d of ["munge", "state", "spool", "log"]) await Deno.mkdir(`${dir}/${d}`);
  await Deno.chmod(`${dir}/munge`, 0o700);
  const key = crypto.getRandomValues(new Uint8Array(1024));
  await Deno.writeFile(`${dir}/munge/munge.key`, key, { mode: 0o600 });
  const conf = `${dir}/slurm.conf`;
  const env = { ...Deno.env.toObject(), SLURM_CONF: conf };
  const stops = [`${dir}/slurmd.pid`, `${dir}/slurmctld.pid`, `${dir}/munge/munged.pid`];
  const stop = async () => {
    for (const p of stops) await stopDaemon(p);
  };
  try {
    const m = await run("munged", [
      "--force",
      `--key-file=${dir}/munge/munge.key`,
      `--socket=${dir}/munge/munge.socket`,
      `--pid-file=${dir}/munge/munged.pid`,
      `--log-file=${dir}/munge/munged.log`,
      `--seed-file=${dir}/munge/munged.seed`,
    ], env);
    if (m.code !== 0) throw new Error(`munged failed: ${m.err}`);
    await Deno.writeTextFile(
      conf,
      [
        `ClusterName=epsamtest`,
        // Loopback addresses: the test needs no resolvable host name (containers often lack one).
        `SlurmctldHost=${host}(127.0.0.1)`,
        `SlurmctldPort=${freePort()}`,
        `SlurmdPort=${freePort()}`,
        `AuthType=auth/munge`,
        `AuthInfo=socket=${dir}/munge/munge.socket`,
        `CredType=cred/munge`,
        `SlurmUser=${user}`,
        `SlurmdUser=${user}`,
        `StateSaveLocation=${dir}/state`,
        `SlurmdSpoolDir=${dir}/spool`,
        `SlurmctldPidFile=${dir}/slurmctld.pid`,
        `SlurmdPidFile=${dir}/slurmd.pid`,
        `SlurmctldLogFile=${dir}/log/slurmctld.log`,
        `SlurmdLogFile=${dir}/log/slurmd.log`,
        `ProctrackType=proctrack/linuxproc`,
        `TaskPlugin=task/none`,
        `SelectType=select/cons_tres`,
        `SelectTypeParameters=CR_CPU`,
        `SchedulerType=sched/backfill`,
        `SchedulerParameters=sched_interval=1`,
        `JobAcctGatherType=jobacct_gather/none`,
        `AccountingStorageType=accounting_storage/none`,
        `JobCompType=jobcomp/none`,
        `MpiDefault=none`,
        `ReturnToService=2`,
        // Finished jobs stay visible to scontrol for a while (no accounting database here).
        `MinJobAge=600`,
        `KillWait=2`,
        `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${
          opts.memoryMb ?? 8000
        } State=UNKNOWN`,
        `PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
        ``,
      ].join("\n"),
    );
    for (const d of ["slurmctld", "slurmd"]) {
      const r = await run(d, ["-f", conf], env);
      if (r.code !== 0) throw new Error(`${d} failed to start: ${r.err}`);
    }
    const end = Date.now() + 30_000;
    let state = "";
    while (Date.now() < end) {
      const r = await run("sinfo", ["-h", "-o", "%t"], env);
      state = r.out.trim() || r.err.trim();
      if (r.code === 0 && /^idle/.test(state)) break;
      await sleep(300);
    }
    if (!/^idle/.test(state)) {
      const log = await Deno.readTextFile(`${dir}/log/slurmctld.log`).catch(() => "");
      throw new Error(`the test cluster's node never became idle (${state}):\n${log.slice(-2000)}`);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    dir,
    env: { SLURM_CONF: conf },
    async cmd(name, args) {
      const r = await run(name, args, env);
      if (r.code !== 0) throw new Error(`${name} ${args.join(" ")}: exit ${r.code}: ${r.err}`);
      return r.out;
    },
    async stop() {
      await run("scancel", ["--user", user], env).catch(() => {});
      await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
