/**
 * `deno task slurm submit|status`: a whole training run on a Slurm cluster as one chain of
 * dependent jobs (per-item passes as job arrays), and where it stands. See SCALE.md.
 */
import { numberFlag, requiredFlag, runCommand, stringFlag, UsageError } from "./args.ts";
import type { PlanConfig } from "../slurm/plan.ts";
import { submitRun } from "../slurm/submit.ts";
import { formatStatus, runStatus } from "../slurm/status.ts";
import { readJobs } from "../slurm/jobs.ts";

const USAGE =
  `usage: deno task slurm submit --run <dir> [train's flags: --profile P, --set k=v, ...]
           [--array-size N] [--partition P] [--account A] [--gpus-per-task G]
           [--cpus-per-task C] [--time T] [--mem M] [--dry-run]
           [--slides <dir> --annotations <dir> --prepare-dataset camelyon16|camelyon17]
       deno task slurm status --run <dir> [--json]

submit  writes one sbatch script per step into <dir>/slurm/ and submits the steps not yet
        finished as a chain of afterok jobs (per-item passes as arrays of N tasks, default 4);
        again on a run with failed or cancelled steps, it resubmits only what is missing.
        With --slides, the chain first prepares train's --data folder from the slides (arrays).
status  per step: job ids, state (sacct, else squeue/scontrol), shards and items done, failures
        with their log.`;

/** Flags of this command; every other flag is train's and is passed through. */
const OWN: Record<string, "string" | "boolean"> = {
  run: "string",
  "array-size": "string",
  partition: "string",
  account: "string",
  "gpus-per-task": "string",
  "cpus-per-task": "string",
  time: "string",
  mem: "string",
  "dry-run": "boolean",
  slides: "string",
  annotations: "string",
  "prepare-dataset": "string",
  json: "boolean",
  help: "boolean",
};

/** Splits argv into this command's arguments and train's flags (with their values). */
export function splitArgs(argv: string[]): { own: string[]; train: string[] } {
  const own: string[] = [], train: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const name = a.startsWith("--") ? a.slice(2).split("=")[0] : null;
    if (a === "-h" || (name !== null && name in OWN)) {
      own.push(a);
      if (name && OWN[name] === "string" && !a.includes("=") && i + 1 < argv.length) {
        own.push(argv[++i]);
      }
    } else if (!a.startsWith("-") && own.length === 0 && train.length === 0) {
      own.push(a); // the subcommand
    } else {
      train.push(a);
      // A train flag's value follows it unless it is a flag itself or given with "=".
      if (
        a.startsWith("--") && !a.includes("=") && i + 1 < argv.length &&
        !argv[i + 1].startsWith("--")
      ) {
        train.push(argv[++i]);
      }
    }
  }
  return { own, train };
}

const TRAIN = new URL("./train.ts", import.meta.url).pathname;
const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Asks train to check the flags, create or check the run folder, and describe the plan. */
async function trainPlan(run: string, trainFlags: string[]): Promise<PlanConfig> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", TRAIN, ...trainFlags, "--out", run, "--plan"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  if (r.code !== 0) {
    const err = d.decode(r.stderr).trim();
    throw (r.code === 2 ? new UsageError(err.split("\n")[0]) : new Error(err));
  }
  const j = JSON.parse(d.decode(r.stdout));
  return { iterations: j.iterations, dataDir: j.dataDir };
}

export async function main(argv: string[]): Promise<number> {
  const { own, train } = splitArgs(argv);
  const options = Object.fromEntries(Object.entries(OWN).map(([k, t]) => [k, { type: t }]));
  delete options.help;
  return await runCommand(
    { name: "slurm", usage: USAGE, options, positionals: true },
    own,
    async (flags, pos) => {
      const sub = pos[0];
      if (pos.length !== 1 || (sub !== "submit" && sub !== "status")) {
        throw new UsageError(`expected one subcommand, submit or status, got "${pos.join(" ")}"`);
      }
      const run = Deno.realPathSync(
        (Deno.mkdirSync(requiredFlag(flags, "run"), { recursive: true }), String(flags.run)),
      );
      if (sub === "status") {
        if (train.length) throw new UsageError(`status takes no train flags: ${train.join(" ")}`);
        const jobs = await readJobs(run);
        if (!jobs) throw new Error(`${run}: never submitted (no slurm/jobs.json)`);
        const plan = { ...(await trainPlan(run, jobs.trainFlags)), prepare: jobs.prepare };
        const s = await runStatus(run, plan);
        console.log(flags.json ? JSON.stringify(s, null, 2) : formatStatus(run, s));
        return 0;
      }
      if (flags.json) throw new UsageError("--json is for status");
      const prev = await readJobs(run);
      const trainFlags = train.length ? train : prev?.trainFlags ?? [];
      if (prev && train.length && JSON.stringify(train) !== JSON.stringify(prev.trainFlags)) {
        throw new UsageError(
          `${run} was submitted with train flags "${prev.trainFlags.join(" ")}"; ` +
            `submit again with the same flags, or none (they are remembered)`,
        );
      }
      const plan: PlanConfig = await trainPlan(run, trainFlags);
      const slides = stringFlag(flags, "slides");
      if (slides) {
        if (plan.dataDir === null) {
          throw new UsageError(
            "--slides needs train's --data <dir>: where the prepared dataset goes",
          );
        }
        const di = trainFlags.indexOf("--dataset");
        const dataset = stringFlag(flags, "prepare-dataset") ??
          (di >= 0 ? trainFlags[di + 1] : undefined);
        if (!dataset) {
          throw new UsageError("--slides needs --prepare-dataset camelyon16|camelyon17");
        }
        plan.prepare = [
          "--dataset",
          dataset,
          "--slides",
          Deno.realPathSync(slides),
          "--annotations",
          Deno.realPathSync(requiredFlag(flags, "annotations")),
        ];
        if (prev?.prepare && JSON.stringify(prev.prepare) !== JSON.stringify(plan.prepare)) {
          throw new UsageError(
            `${run} was submitted with prepare flags "${prev.prepare.join(" ")}"`,
          );
        }
      } else if (prev?.prepare) plan.prepare = prev.prepare;
      const r = await submitRun({
        run,
        repo: REPO,
        deno: Deno.execPath(),
        trainFlags,
        arraySize: numberFlag(flags, "array-size", {
          def: prev?.arraySize ?? 4,
          min: 1,
          max: 1000,
          integer: true,
        })!,
        partition: stringFlag(flags, "partition"),
        account: stringFlag(flags, "account"),
        gpusPerTask: numberFlag(flags, "gpus-per-task", { def: 1, min: 0, integer: true })!,
        cpusPerTask: numberFlag(flags, "cpus-per-task", { def: 4, min: 1, integer: true })!,
        time: stringFlag(flags, "time"),
        mem: stringFlag(flags, "mem"),
        plan,
        dryRun: !!flags["dry-run"],
        log: (m) => console.error(`slurm: ${m}`),
      });
      if (flags["dry-run"]) {
        console.log(`scripts written to ${run}/slurm/; would run:`);
        for (const c of r.commands) console.log(`  ${c.join(" ")}`);
      } else if (!r.submitted.length) {
        console.log(`${run}: every step is finished; nothing to submit`);
      } else {
        console.log(
          `${r.submitted.length} steps submitted (${r.skipped.length} finished ones skipped); ` +
            `follow with: deno task slurm status --run ${run}`,
        );
      }
      return 0;
    },
  );
}

if (import.meta.main) Deno.exit(await main(Deno.args));
