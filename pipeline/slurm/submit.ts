/**
 * `deno task slurm submit`: writes one sbatch script per step into `<run>/slurm/` and submits the
 * steps that are not finished as one chain of `afterok` dependencies (`sbatch --parsable
 * --kill-on-invalid-dep=yes`, so a failed step cancels what waits on it instead of leaving it
 * pending). On a run submitted before, finished steps are skipped and an array step resubmits only
 * the shards without a manifest; submitting while jobs of the run are still queued is refused.
 */
import {
  type Exec,
  exec,
  indexList,
  latestJobs,
  queue,
  readJobs,
  readStages,
  stepDone,
  type SubmittedStep,
  writeJobs,
} from "./jobs.ts";
import { type PlanConfig, planSteps, type Step } from "./plan.ts";
import { logDir, sbatchScript, type ScriptOptions, scriptPath, taskDir } from "./script.ts";

export interface SubmitOptions extends Omit<ScriptOptions, "trainFlags"> {
  trainFlags: string[];
  plan: PlanConfig;
  dryRun: boolean;
  log: (m: string) => void;
  exec?: Exec;
}

export interface SubmitResult {
  submitted: SubmittedStep[];
  skipped: string[];
  /** The sbatch command lines (also in a dry run). */
  commands: string[][];
}

/** Submits (or, dry, only writes) the run's remaining steps. */
export async function submitRun(o: SubmitOptions): Promise<SubmitResult> {
  const run = o.run, ex = o.exec ?? exec;
  const steps = planSteps(o.plan);
  const prev = await readJobs(run);
  if (prev && prev.arraySize !== o.arraySize) {
    throw new Error(
      `${run} was submitted with --array-size ${prev.arraySize}; its shards are cut that way: ` +
        `submit again with --array-size ${prev.arraySize}`,
    );
  }
  if (prev && !o.dryRun) {
    const ids = new Set([...latestJobs(prev).values()].map((s) => s.job));
    const q = await queue(ex);
    if (typeof q === "string") throw new Error(`cannot list the queue: ${q}`);
    const live = q.filter((e) => ids.has(e.job));
    if (live.length) {
      throw new Error(
        `jobs of this run are still queued or running (${
          [...new Set(live.map((e) => `${e.job} ${e.state}`))].join(", ")
        }); wait for them, or scancel them, before submitting again`,
      );
    }
  }
  await Deno.mkdir(logDir(run), { recursive: true });
  await Deno.mkdir(taskDir(run), { recursive: true });
  const stages = readStages(run);
  const submitted: SubmittedStep[] = [], skipped: string[] = [], commands: string[][] = [];
  let last: string | null = null;
  let pending = false; // an earlier step of this submission is still to run
  for (const step of steps) {
    const script = scriptPath(run, step);
    await Deno.writeTextFile(script, sbatchScript(step, o));
    const st = await stepDone(run, o.plan.dataDir, step, stages, o.arraySize);
    if (st.done && !pending) {
      skipped.push(step.name);
      continue;
    }
    // After an unfinished step, later single steps always run (their inputs change); arrays still
    // run only the shards that have no manifest.
    if (st.done && step.pass !== null) {
      skipped.push(step.name);
      continue;
    }
    pending = true;
    const tasks = step.pass !== null ? indexList(st.missing) : null;
    const args = ["--parsable", "--kill-on-invalid-dep=yes"];
    if (last) args.push(`--dependency=afterok:${last}`);
    if (tasks !== null) args.push(`--array=${tasks}`);
    args.push(script);
    commands.push(["sbatch", ...args]);
    if (o.dryRun) {
      last = `<${step.name}>`;
      continue;
    }
    const r = await ex("sbatch", args);
    if (r.code !== 0) {
      throw new Error(
        `sbatch of step ${step.name} failed (exit ${r.code}): ${r.err.trim() || r.out.trim()}` +
          (submitted.length
            ? `; already submitted: ${submitted.map((s) => `${s.step} ${s.job}`).join(", ")}`
            : ""),
      );
    }
    const job = r.out.trim().split(";")[0];
    if (!/^\d+$/.test(job)) throw new Error(`sbatch answered "${r.out.trim()}", not a job id`);
    last = job;
    submitted.push({ step: step.name, job, tasks, script });
    o.log(`submitted ${step.name}: job ${job}${tasks !== null ? ` tasks ${tasks}` : ""}`);
  }
  if (!o.dryRun && submitted.length) {
    const j = prev ?? {
      version: 1 as const,
      arraySize: o.arraySize,
      trainFlags: o.trainFlags,
      ...(o.plan.prepare ? { prepare: o.plan.prepare } : {}),
      submissions: [],
    };
    j.submissions.push({ time: new Date().toISOString(), steps: submitted });
    await writeJobs(run, j);
  }
  return { submitted, skipped, commands };
}

export type { Step };
