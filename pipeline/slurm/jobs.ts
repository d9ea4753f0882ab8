/**
 * What `deno task slurm` keeps in `<run>/slurm/`: `jobs.json` (every submission: its settings and
 * the job id of each step), the sbatch scripts, `logs/` and `tasks/` (each task's own record,
 * written by its script). Also the Slurm client calls both `submit` and `status` use.
 */
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { listManifests, manifestName } from "../shard/manifest.ts";
import { manifestPass, passRoot, singleDone, type Stages, type Step } from "./plan.ts";
import { taskDir } from "./script.ts";
import { readRunJson, validateRunState } from "../run_dir.ts";

export interface SubmittedStep {
  step: string;
  job: string;
  /** Array indices submitted ("0-2", "1"), or null for a single job. */
  tasks: string | null;
  script: string;
}

export interface Submission {
  time: string;
  steps: SubmittedStep[];
}

export interface JobsFile {
  version: 1;
  arraySize: number;
  trainFlags: string[];
  /** `deno task prepare` flags when the chain prepares the dataset from slides. */
  prepare?: string[];
  submissions: Submission[];
}

const jobsPath = (run: string) => `${run}/slurm/jobs.json`;

export async function readJobs(run: string): Promise<JobsFile | null> {
  try {
    const j = JSON.parse(await Deno.readTextFile(jobsPath(run))) as JobsFile;
    if (j.version !== 1 || !Array.isArray(j.submissions)) {
      throw new Error("expected {version: 1, submissions: [...]}");
    }
    return j;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new Error(`${jobsPath(run)}: not a jobs record (${(e as Error).message})`);
  }
}

export async function writeJobs(run: string, j: JobsFile): Promise<void> {
  await Deno.mkdir(`${run}/slurm`, { recursive: true });
  await writeFileAtomic(jobsPath(run), JSON.stringify(j, null, 2) + "\n");
}

/** The latest submission of each step. */
export function latestJobs(j: JobsFile | null): Map<string, SubmittedStep> {
  const out = new Map<string, SubmittedStep>();
  for (const s of j?.submissions ?? []) for (const st of s.steps) out.set(st.step, st);
  return out;
}

/** Result of a command: exit code, stdout, stderr. */
export interface Exec {
  (cmd: string, args: string[]): Promise<{ code: number; out: string; err: string }>;
}

export const exec: Exec = async (cmd, args) => {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const d = new TextDecoder();
    return { code: r.code, out: d.decode(r.stdout), err: d.decode(r.stderr) };
  } catch (e) {
    return { code: 127, out: "", err: `${cmd}: ${(e as Error).message}` };
  }
};

/** The state.json stages of a run (empty when there is none yet). */
export function readStages(run: string): Stages {
  const path = `${run}/state.json`;
  let raw: unknown;
  try {
    raw = readRunJson(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw e;
  }
  return validateRunState(raw, path).stages as Stages;
}

/** Shard indices of an array step that have no manifest of `count` shards. */
export async function missingShards(
  run: string,
  dataDir: string | null,
  pass: string,
  count: number,
): Promise<number[]> {
  const have = new Set(
    ((await listManifests(passRoot(run, dataDir, pass), manifestPass(pass))) ?? []).map((p) =>
      p.slice(p.lastIndexOf("/") + 1)
    ),
  );
  return Array.from({ length: count }, (_, k) => k).filter((k) =>
    !have.has(manifestName({ index: k, count }))
  );
}

/** Whether a step is finished (array: every shard has its manifest or the stage is merged). */
export async function stepDone(
  run: string,
  dataDir: string | null,
  step: Step,
  stages: Stages,
  arraySize: number,
): Promise<{ done: boolean; missing: number[] }> {
  if (step.name === "prepare_merge") {
    // The merge writes the dataset's manifest.json last (shards never write it).
    const done = await Deno.stat(`${dataDir}/manifest.json`).then(() => true, () => false);
    return { done, missing: [] };
  }
  if (step.pass === null) return { done: singleDone(step, stages), missing: [] };
  if (singleDone({ ...step, name: "x" }, stages)) return { done: true, missing: [] };
  const missing = await missingShards(run, dataDir, step.pass, arraySize);
  return { done: missing.length === 0, missing };
}

/** Compact index list: [0,1,2,5] → "0-2,5". */
export function indexList(ix: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ix.length;) {
    let j = i;
    while (j + 1 < ix.length && ix[j + 1] === ix[j] + 1) j++;
    parts.push(i === j ? `${ix[i]}` : `${ix[i]}-${ix[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** One line of `squeue`: job (array job id), task index or null, state, reason. */
export interface QueueEntry {
  job: string;
  task: string | null;
  state: string;
  reason: string;
}

/** Jobs in the queue (pending, running, completing), or an error text when squeue failed. */
export async function queue(run: Exec = exec): Promise<QueueEntry[] | string> {
  const r = await run("squeue", ["-h", "-r", "-o", "%F|%K|%T|%r"]);
  if (r.code !== 0) return (r.err || r.out).trim() || `squeue exit ${r.code}`;
  return r.out.split("\n").filter((l) => l.trim()).map((l) => {
    const [job, task, state, reason] = l.split("|");
    return { job, task: task && task !== "N/A" ? task : null, state, reason };
  });
}

/** A task's own record, written by its sbatch script (`tasks/<step>.<task>.json`). */
export interface TaskRecord {
  step: string;
  task: string;
  job: string;
  host: string;
  /** running, done, failed, signalled. */
  status: string;
  rc: number | null;
  restarts: number;
  time: string;
  log: string;
}

/** Every task record of a run by "<step>.<task>" (unreadable ones are skipped: being replaced). */
export async function taskRecordsOf(run: string): Promise<Map<string, TaskRecord>> {
  const out = new Map<string, TaskRecord>();
  const dir = taskDir(run);
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".json")) continue;
      try {
        const r = JSON.parse(await Deno.readTextFile(`${dir}/${e.name}`)) as TaskRecord;
        out.set(e.name.slice(0, -5), r);
      } catch { /* torn by a kill mid-write: the script rewrites it atomically next time */ }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}
