/**
 * A training run as a chain of cluster steps. Per-item passes become job arrays (one task per
 * shard, `train --pass P --shard K/N`); the stages that are not per-item run as single jobs
 * (`train --stop-after S`), and each of those first merges the shards of the pass before it, so
 * an incomplete set stops the chain there with the missing items named. Step order:
 *
 *   dataset_candidates[N] → dataset_patches[N] → classifier → initial_masks[N] →
 *   preliminary (SAM training) → pseudo_0[N] → iter_1 → pseudo_1[N] → … → iter_I → evaluate[N]
 *   → summary
 *
 * (the dataset arrays only when the run makes its synthetic slides; with `--data` the dataset is
 * prepared beforehand, see SCALE.md). Whether a step is finished is read from the run folder, so a
 * resubmission skips finished steps and, in an array, the shards whose manifest exists.
 */

/** The parts of the pipeline config the plan depends on. */
export interface PlanConfig {
  iterations: number;
  /** A prepared dataset (null: synthetic slides made by the run). */
  dataDir: string | null;
  /**
   * `deno task prepare` flags that make `dataDir` from slides (`--dataset --slides
   * --annotations`, without `--out`): the chain then starts by preparing it as arrays.
   */
  prepare?: string[];
}

export interface Step {
  /** Unique step name (also the sbatch script's and the logs' name). */
  name: string;
  /** Per-item pass run as an array (its name), or null for a single job. */
  pass: string | null;
  /** `train` arguments of the step (besides the run's own flags). */
  trainArgs: string[];
  /** Set for the steps that run `deno task prepare` instead: its full arguments. */
  prepareArgs?: string[];
  /** What the step does, for `status`. */
  what: string;
}

/** The steps of a run, in dependency order. */
export function planSteps(c: PlanConfig): Step[] {
  const steps: Step[] = [];
  const array = (pass: string, what: string) =>
    steps.push({ name: pass, pass, trainArgs: ["--pass", pass], what });
  const single = (name: string, stopAfter: string | null, what: string) =>
    steps.push({
      name,
      pass: null,
      trainArgs: stopAfter ? ["--stop-after", stopAfter] : [],
      what,
    });
  if (c.prepare && c.dataDir !== null) {
    const p = [...c.prepare, "--out", c.dataDir];
    for (const phase of ["candidates", "patches"]) {
      steps.push({
        name: `prepare_${phase}`,
        pass: `prepare_${phase}`,
        trainArgs: [],
        prepareArgs: [...p, "--phase", phase],
        what: phase === "candidates"
          ? "tissue masks and candidate patches, per slide"
          : "patch selection; extraction, per slide",
      });
    }
    steps.push({
      name: "prepare_merge",
      pass: null,
      trainArgs: [],
      prepareArgs: p,
      what: "check the prepare shards; write the dataset's manifest.json",
    });
  }
  if (c.dataDir === null) {
    array("dataset_candidates", "synthetic slides and their candidate patches, per slide");
    array("dataset_patches", "patch extraction, per slide");
  }
  single("classifier", "classifier", "merge the dataset; train the classifier (one GPU)");
  array("initial_masks", "CAM masks (and frozen-encoder embeddings), per patch");
  single(
    "preliminary",
    "preliminary:train",
    "merge initial masks; preliminary SAM training (one GPU)",
  );
  array("pseudo_0", "pseudo-labels of the preliminary SAM, per batch of patches");
  for (let k = 1; k <= c.iterations; k++) {
    single(`iter_${k}`, `iter_${k}:train`, `merge pseudo-labels; SAM re-training ${k} (one GPU)`);
    if (k < c.iterations) array(`pseudo_${k}`, `pseudo-labels of iteration ${k}, per batch`);
  }
  array("evaluate", "final SAM and CAM on the test positives, per batch");
  single("summary", null, "merge evaluation; metrics, plots, summary.json");
  return steps;
}

/** The stage whose completion (in state.json) means the step's work is in and merged. */
function stageOfStep(step: Step): string {
  if (step.pass?.startsWith("dataset_")) return "dataset";
  if (step.pass === "pseudo_0") return "preliminary";
  const m = /^pseudo_(\d+)$/.exec(step.pass ?? "");
  if (m) return `iter_${m[1]}`;
  if (step.name === "summary") return "evaluate";
  return step.name;
}

/** Folder a pass's files and `shards/` live under: the dataset for the dataset passes. */
export function passRoot(run: string, dataDir: string | null, pass: string): string {
  return pass.startsWith("dataset_") || pass.startsWith("prepare_")
    ? dataDir ?? `${run}/data`
    : run;
}

/** Name of the folder under `shards/` holding a pass's manifests (dataset passes: prepare's). */
export function manifestPass(pass: string): string {
  return pass === "dataset_candidates"
    ? "prepare_candidates"
    : pass === "dataset_patches"
    ? "prepare_patches"
    : pass;
}

/** Stage records as state.json holds them. */
export type Stages = Record<string, { status?: string; trained?: boolean } | undefined>;

/** Whether a single-job step's work is done according to the run state. */
export function singleDone(step: Step, stages: Stages): boolean {
  const st = stages[stageOfStep(step)];
  if (!st) return false;
  if (st.status === "done") return true;
  return step.name !== "summary" && step.name !== "classifier" && st.trained === true;
}
