/**
 * The sbatch script of one step. Each task runs `train` with the run's flags plus the step's own,
 * records itself in `<run>/slurm/tasks/<step>.<task>.json` (running, then done / failed /
 * signalled with the exit code and log path, written atomically) so `status` can report tasks
 * even where Slurm keeps no accounting, and exits with train's exit code so `afterok`
 * dependencies hold the chain on a failure. Jobs are `--requeue`: a preempted task starts again
 * and train resumes from the run folder (a shard skips items whose files exist).
 */
import type { Step } from "./plan.ts";

export interface ScriptOptions {
  /** Absolute run folder. */
  run: string;
  /** Absolute repository root (holds pipeline/cli/train.ts and deno.json). */
  repo: string;
  /** The deno executable the tasks run. */
  deno: string;
  /** The user's train flags (profile, --set, ...), passed to every step. */
  trainFlags: string[];
  /** Tasks per array step. */
  arraySize: number;
  partition?: string;
  account?: string;
  /** GPUs per task (0: none requested, e.g. software rendering). */
  gpusPerTask: number;
  cpusPerTask: number;
  /** Slurm time limit per task (`--time`). */
  time?: string;
  /** Memory per task (`--mem`), e.g. "16G". */
  mem?: string;
}

/** POSIX shell single-quoting. */
export function shQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

export const scriptPath = (run: string, step: Step) => `${run}/slurm/${step.name}.sbatch`;
export const logDir = (run: string) => `${run}/slurm/logs`;
export const taskDir = (run: string) => `${run}/slurm/tasks`;

/** The script text of `step`. */
export function sbatchScript(step: Step, o: ScriptOptions): string {
  const isArray = step.pass !== null;
  const logName = isArray ? `${step.name}_%A_%a.log` : `${step.name}_%j.log`;
  const directives = [
    `--job-name=epsam-${step.name}`,
    `--output=${logDir(o.run)}/${logName}`,
    `--open-mode=append`,
    `--requeue`,
    `--cpus-per-task=${o.cpusPerTask}`,
    ...(o.gpusPerTask > 0 ? [`--gpus-per-task=${o.gpusPerTask}`] : []),
    ...(o.partition ? [`--partition=${o.partition}`] : []),
    ...(o.account ? [`--account=${o.account}`] : []),
    ...(o.time ? [`--time=${o.time}`] : []),
    ...(o.mem ? [`--mem=${o.mem}`] : []),
    ...(isArray ? [`--array=0-${o.arraySize - 1}`] : []),
  ];
  const train =
    (step.prepareArgs
      ? [o.deno, "run", "-A", `${o.repo}/pipeline/cli/prepare.ts`, ...step.prepareArgs]
      : [
        o.deno,
        "run",
        "-A",
        `${o.repo}/pipeline/cli/train.ts`,
        ...o.trainFlags,
        "--out",
        o.run,
        ...step.trainArgs,
      ]).map(shQuote).join(" ");
  const shardArg = isArray ? ` --shard "$SLURM_ARRAY_TASK_ID/${o.arraySize}"` : "";
  const logFile = isArray
    ? `${logDir(o.run)}/${step.name}_\${SLURM_ARRAY_JOB_ID}_\${SLURM_ARRAY_TASK_ID}.log`
    : `${logDir(o.run)}/${step.name}_\${SLURM_JOB_ID}.log`;
  return `#!/bin/bash
${directives.map((d) => `#SBATCH ${d}`).join("\n")}
# Written by \`deno task slurm submit\`: step "${step.name}" of the run in ${o.run}.
# ${step.what}
set -uo pipefail
RUN=${shQuote(o.run)}
TASK="\${SLURM_ARRAY_TASK_ID:-single}"
REC="$RUN/slurm/tasks/${step.name}.$TASK"
LOG="${logFile}"
mkdir -p "$RUN/slurm/tasks"
record() {
  printf '{"step":"%s","task":"%s","job":"%s","host":"%s","status":"%s","rc":%s,"restarts":%s,"time":"%s","log":"%s"}\\n' \\
    ${
    shQuote(step.name)
  } "$TASK" "\${SLURM_JOB_ID:-}" "$(hostname)" "$1" "$2" "\${SLURM_RESTART_COUNT:-0}" \\
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$LOG" > "$REC.json.tmp" && mv -f "$REC.json.tmp" "$REC.json"
}
record running null
export XDG_RUNTIME_DIR="\${XDG_RUNTIME_DIR:-/tmp}" NO_COLOR=1
# Software adapters (lavapipe) use as many threads as the task has CPUs.
export LP_NUM_THREADS="\${LP_NUM_THREADS:-\${SLURM_CPUS_PER_TASK:-1}}"
cd ${shQuote(o.repo)} || { record failed 1; exit 1; }
${
    isArray || step.prepareArgs
      ? ""
      : `# A requeued job (preempted, node failure) finds the lock of its own killed run, held by a
# process on another node that train cannot check; the afterok chain runs one such job at a time.
if [ "\${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then rm -f "$RUN/run.lock"; fi
`
  }
echo "[$(date -u +%FT%TZ)] step ${step.name} task $TASK job \${SLURM_JOB_ID:-} on $(hostname)"
${train}${shardArg} &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; record signalled 143; exit 143' TERM INT
wait "$child"
rc=$?
if [ "$rc" -eq 0 ]; then record done 0; else record failed "$rc"; fi
exit "$rc"
`;
}
