/**
 * `deno task slurm status`: per step, its latest job ids and their state, the shards and items
 * done, and each failed task with its log. Job states come from `sacct` where the cluster keeps
 * accounting, else from `squeue` (queued and running jobs) and `scontrol show job` (finished ones,
 * while slurmctld remembers them: MinJobAge), and always from the tasks' own records in the run
 * folder; the report names the sources it used.
 */
import { listManifests, readManifest } from "../shard/manifest.ts";
import {
  type Exec,
  exec,
  latestJobs,
  queue,
  readJobs,
  readStages,
  stepDone,
  type TaskRecord,
  taskRecordsOf,
} from "./jobs.ts";
import { manifestPass, passRoot, type PlanConfig, planSteps } from "./plan.ts";

export interface StepStatus {
  step: string;
  what: string;
  /** done, running, pending, failed, cancelled, not submitted, incomplete. */
  state: string;
  job: string | null;
  tasks: string | null;
  shards?: { done: number; of: number; items: number };
  /** Tasks that failed or ended without finishing: task, what happened, log. */
  failures: { task: string; what: string; log: string | null }[];
}

export interface RunStatus {
  steps: StepStatus[];
  sources: string[];
  finished: boolean;
}

/** Slurm's view of the jobs: state per "job" or "job_task". */
async function slurmStates(
  ids: string[],
  ex: Exec,
  sources: string[],
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (!ids.length) return out;
  const acct = await ex("sacct", [
    "-n",
    "-P",
    "-X",
    "-j",
    ids.join(","),
    "--format=JobID,State",
  ]);
  if (acct.code === 0 && acct.out.trim()) {
    for (const l of acct.out.split("\n")) {
      const [id, state] = l.split("|");
      if (!id || !state) continue;
      const st = state.trim().split(" ")[0];
      // Array tasks that never started are one line: "123_[0-3]" (maybe with "%limit").
      const pend = /^(\d+)_\[([\d,-]+)(?:%\d+)?\]$/.exec(id.trim());
      if (pend) { for (const t of expand(pend[2])) out.set(`${pend[1]}_${t}`, st); }
      else out.set(id.trim(), st);
    }
    sources.push("sacct");
  } else {
    sources.push(`scontrol (sacct: ${(acct.err || "no records").trim().split("\n")[0]})`);
    for (const id of ids) {
      const r = await ex("scontrol", ["show", "job", "-o", id]);
      if (r.code !== 0) continue;
      for (const l of r.out.split("\n")) {
        const job = /JobId=(\d+)/.exec(l)?.[1];
        const arr = /ArrayJobId=(\d+) ArrayTaskId=([\d,-]+)/.exec(l);
        const state = /JobState=(\S+)/.exec(l)?.[1];
        if (!job || !state) continue;
        // Tasks that never started are one record: "ArrayTaskId=0-3" or "1,3".
        if (arr) { for (const t of expand(arr[2])) out.set(`${arr[1]}_${t}`, state); }
        else out.set(job, state);
      }
    }
  }
  const q = await queue(ex);
  if (typeof q === "string") sources.push(`squeue failed: ${q}`);
  else {
    sources.push("squeue");
    for (const e of q) out.set(e.task !== null ? `${e.job}_${e.task}` : e.job, e.state);
  }
  return out;
}

/** Expands "0-2,5" to [0,1,2,5]. */
function expand(list: string): number[] {
  return list.split(",").flatMap((p) => {
    const [a, b] = p.split("-").map(Number);
    return b === undefined ? [a] : Array.from({ length: b - a + 1 }, (_, i) => a + i);
  });
}

/** The status of every step of a run. */
export async function runStatus(
  run: string,
  plan: PlanConfig,
  ex: Exec = exec,
): Promise<RunStatus> {
  const jobs = await readJobs(run);
  const latest = latestJobs(jobs);
  const arraySize = jobs?.arraySize ?? 1;
  const stages = readStages(run);
  const sources: string[] = ["run folder (state.json, shard manifests, task records)"];
  const states = await slurmStates(
    [...new Set([...latest.values()].map((s) => s.job))],
    ex,
    sources,
  );
  const records = await taskRecordsOf(run);
  const steps: StepStatus[] = [];
  for (const step of planSteps(plan)) {
    const sub = latest.get(step.name) ?? null;
    const d = await stepDone(run, plan.dataDir, step, stages, arraySize);
    const st: StepStatus = {
      step: step.name,
      what: step.what,
      state: d.done ? "done" : sub ? "?" : "not submitted",
      job: sub?.job ?? null,
      tasks: sub?.tasks ?? null,
      failures: [],
    };
    if (step.pass !== null) {
      const root = passRoot(run, plan.dataDir, step.pass);
      let items = 0;
      const paths = (await listManifests(root, manifestPass(step.pass))) ?? [];
      for (const p of paths) items += (await readManifest(p)).items.length;
      st.shards = { done: arraySize - d.missing.length, of: arraySize, items };
    }
    if (sub) {
      const keys = sub.tasks !== null
        ? expand(sub.tasks).map((k) => ({ k: `${sub.job}_${k}`, task: String(k) }))
        : [{ k: sub.job, task: "single" }];
      const taskStates: string[] = [];
      for (const { k, task } of keys) {
        const rec: TaskRecord | undefined = records.get(`${step.name}.${task}`);
        const recMine = rec && rec.job !== "" &&
          (rec.job === k.split("_")[0] || sub.tasks !== null);
        let s = states.get(k) ?? states.get(sub.job) ??
          (recMine ? rec!.status.toUpperCase() : "UNKNOWN");
        if (/^(PENDING|RUNNING|COMPLETING|CONFIGURING|REQUEUED|SUSPENDED)/.test(s)) {
          taskStates.push(s.toLowerCase());
          continue;
        }
        // A shard with its manifest is done, whatever Slurm says of the job that was to redo it.
        if (d.done || (step.pass !== null && !d.missing.includes(Number(task)))) {
          taskStates.push("done");
          continue;
        }
        if (rec && rec.status === "failed") s = `FAILED (exit ${rec.rc})`;
        else if (
          rec && rec.status === "running" && !/CANCEL|FAIL|TIMEOUT|PREEMPT|NODE_FAIL/.test(s)
        ) {
          s = "ENDED WITHOUT A RECORD (killed, preempted, out of time or node failure)";
        }
        if (/^(COMPLETED|DONE)$/.test(s) && step.pass !== null) {
          const shard = Number(task);
          if (d.missing.includes(shard)) s = "COMPLETED WITHOUT A MANIFEST";
          else {
            taskStates.push("done");
            continue;
          }
        }
        if (/^(COMPLETED|DONE)$/.test(s)) {
          taskStates.push("completed");
          continue;
        }
        taskStates.push(s.toLowerCase());
        st.failures.push({ task, what: s.toLowerCase(), log: rec?.log ?? null });
      }
      if (!d.done) {
        st.state = taskStates.some((t) => t.startsWith("running"))
          ? "running"
          : taskStates.some((t) => t.startsWith("pending") || t === "requeued")
          ? "pending"
          : st.failures.some((f) => /cancel/.test(f.what))
          ? "cancelled"
          : st.failures.length
          ? "failed"
          : "incomplete";
      }
    }
    steps.push(st);
  }
  return { steps, sources, finished: steps.every((s) => s.state === "done") };
}

/** The status as a table plus failure lines. */
export function formatStatus(run: string, s: RunStatus): string {
  const rows = [["step", "state", "job", "tasks", "shards", "items"]];
  for (const st of s.steps) {
    rows.push([
      st.step,
      st.state,
      st.job ?? "-",
      st.tasks ?? (st.job ? "single" : "-"),
      st.shards ? `${st.shards.done}/${st.shards.of}` : "-",
      st.shards ? String(st.shards.items) : "-",
    ]);
  }
  const w = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
  const lines = rows.map((r) => r.map((c, j) => c.padEnd(w[j])).join("  ").trimEnd());
  const fails = s.steps.flatMap((st) =>
    st.failures.map((f) => `  ${st.step} task ${f.task}: ${f.what}${f.log ? `; log ${f.log}` : ""}`)
  );
  const done = s.steps.filter((x) => x.state === "done").length;
  return [
    `run ${run}: ${done}/${s.steps.length} steps done${s.finished ? " (finished)" : ""}`,
    `sources: ${s.sources.join("; ")}`,
    ...lines,
    ...(fails.length ? ["failures (submit again to rerun only what is missing):", ...fails] : []),
  ].join("\n");
}
