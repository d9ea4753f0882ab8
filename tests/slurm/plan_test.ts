/**
 * The cluster plan without a cluster: the step chain per config, the sbatch scripts (valid bash,
 * the directives asked for, the shard taken from the array task), the argument split of
 * `deno task slurm`, and a dry-run submission that resubmits only missing shards.
 */
import assert from "node:assert/strict";
import { planSteps } from "../../pipeline/slurm/plan.ts";
import { sbatchScript, shQuote } from "../../pipeline/slurm/script.ts";
import { splitArgs } from "../../pipeline/cli/slurm.ts";
import { submitRun } from "../../pipeline/slurm/submit.ts";
import { ShardRecorder } from "../../pipeline/shard/manifest.ts";

/** A state.json as RunDir writes it, with these stages. */
const stateJson = (stages: Record<string, unknown>) =>
  JSON.stringify({ version: 1, created: "2026-01-01", updated: "2026-01-01", stages });

Deno.test("slurm plan: steps per config", () => {
  const names = (c: { iterations: number; dataDir: string | null }) =>
    planSteps(c).map((s) => (s.pass ? `${s.name}[]` : s.name));
  assert.deepEqual(names({ iterations: 2, dataDir: "/d" }), [
    "classifier",
    "initial_masks[]",
    "preliminary",
    "pseudo_0[]",
    "iter_1",
    "pseudo_1[]",
    "iter_2",
    "evaluate[]",
    "summary",
  ]);
  const withPrepare = planSteps({
    iterations: 1,
    dataDir: "/d",
    prepare: ["--dataset", "camelyon16", "--slides", "/s", "--annotations", "/a"],
  });
  assert.deepEqual(withPrepare.slice(0, 4).map((s) => s.name), [
    "prepare_candidates",
    "prepare_patches",
    "prepare_merge",
    "classifier",
  ]);
  assert.deepEqual(withPrepare[1].prepareArgs!.slice(-4), ["--out", "/d", "--phase", "patches"]);
  const script = sbatchScript(withPrepare[0], {
    run: "/r",
    repo: "/repo",
    deno: "deno",
    trainFlags: ["--profile", "paper"],
    arraySize: 4,
    gpusPerTask: 0,
    cpusPerTask: 2,
  });
  assert.match(
    script,
    /deno run -A \/repo\/pipeline\/cli\/prepare\.ts --dataset camelyon16 .* --phase candidates --shard "\$SLURM_ARRAY_TASK_ID\/4"/,
  );
  assert.deepEqual(names({ iterations: 0, dataDir: null }).slice(0, 3), [
    "dataset_candidates[]",
    "dataset_patches[]",
    "classifier",
  ]);
});

Deno.test("slurm script: directives, shard from the array task, valid bash", async () => {
  const steps = planSteps({ iterations: 1, dataDir: null });
  const o = {
    run: "/shared/runs/my run",
    repo: "/opt/ep-sam",
    deno: "/usr/bin/deno",
    trainFlags: ["--profile", "paper", "--set", "sam.points=5"],
    arraySize: 8,
    partition: "gpu",
    account: "proj",
    gpusPerTask: 1,
    cpusPerTask: 4,
    time: "2:00:00",
  };
  const arr = sbatchScript(steps.find((s) => s.name === "pseudo_0")!, o);
  for (
    const d of [
      "--array=0-7",
      "--requeue",
      "--gpus-per-task=1",
      "--partition=gpu",
      "--account=proj",
      "--cpus-per-task=4",
      "--time=2:00:00",
    ]
  ) assert.match(arr, new RegExp(`^#SBATCH ${d}$`, "m"));
  assert.match(arr, /--pass pseudo_0 --shard "\$SLURM_ARRAY_TASK_ID\/8"/);
  assert.match(arr, /--out '\/shared\/runs\/my run'/);
  const single = sbatchScript(steps.find((s) => s.name === "preliminary")!, {
    ...o,
    gpusPerTask: 0,
  });
  assert.doesNotMatch(single, /--array|--gpus-per-task|--shard/);
  assert.match(single, /--stop-after preliminary:train/);
  for (const text of [arr, single]) {
    const r = await new Deno.Command("bash", { args: ["-n"], stdin: "piped", stderr: "piped" })
      .spawn();
    const w = r.stdin.getWriter();
    await w.write(new TextEncoder().encode(text));
    await w.close();
    const st = await r.output();
    assert.equal(st.code, 0, new TextDecoder().decode(st.stderr));
  }
  assert.equal(shQuote("it's"), `'it'\\''s'`);
});

Deno.test("slurm CLI: its own flags apart from train's", () => {
  const { own, train } = splitArgs([
    "submit",
    "--run",
    "r",
    "--profile",
    "tiny",
    "--array-size=3",
    "--no-adl",
    "--set",
    "a.b=1",
    "--dry-run",
  ]);
  assert.deepEqual(own, ["submit", "--run", "r", "--array-size=3", "--dry-run"]);
  assert.deepEqual(train, ["--profile", "tiny", "--no-adl", "--set", "a.b=1"]);
});

Deno.test("slurm submit --dry-run: finished steps skipped, only missing shards resubmitted", async () => {
  const run = await Deno.makeTempDir({ prefix: "slurm_plan_" });
  try {
    await Deno.writeTextFile(
      `${run}/state.json`,
      stateJson({ dataset: { status: "done" }, classifier: { status: "done" } }),
    );
    // Shards 0 and 2 of initial_masks finished; 1 did not.
    for (const k of [0, 2]) {
      await (await ShardRecorder.start(run, "initial_masks", { index: k, count: 3 })).finish();
    }
    const r = await submitRun({
      run,
      repo: "/repo",
      deno: "deno",
      trainFlags: [],
      arraySize: 3,
      gpusPerTask: 0,
      cpusPerTask: 1,
      plan: { iterations: 1, dataDir: null },
      dryRun: true,
      log: () => {},
      exec: () => Promise.reject(new Error("a dry run runs nothing")),
    });
    assert.deepEqual(r.skipped.slice(0, 3), [
      "dataset_candidates",
      "dataset_patches",
      "classifier",
    ]);
    const first = r.commands[0];
    assert.ok(first.includes("--array=1"), first.join(" "));
    assert.ok(!first.some((a) => a.startsWith("--dependency")));
    assert.ok(r.commands[1].includes("--dependency=afterok:<initial_masks>"));
    assert.equal(r.commands.length, 6); // initial_masks … summary
  } finally {
    await Deno.remove(run, { recursive: true });
  }
});

Deno.test("slurm status: array records as scontrol and sacct give them, task records, sources", async () => {
  const { runStatus, formatStatus } = await import("../../pipeline/slurm/status.ts");
  const { writeJobs } = await import("../../pipeline/slurm/jobs.ts");
  const run = await Deno.makeTempDir({ prefix: "slurm_status_" });
  try {
    await Deno.writeTextFile(
      `${run}/state.json`,
      stateJson({ classifier: { status: "done" } }),
    );
    const steps = ["classifier", "initial_masks", "preliminary"].map((step, i) => ({
      step,
      job: String(10 + i),
      tasks: step === "initial_masks" ? "0-1" : null,
      script: "",
    }));
    await writeJobs(run, {
      version: 1,
      arraySize: 2,
      trainFlags: [],
      submissions: [{ time: "", steps }],
    });
    await (await ShardRecorder.start(run, "initial_masks", { index: 0, count: 2 })).finish();
    await Deno.mkdir(`${run}/slurm/tasks`, { recursive: true });
    await Deno.writeTextFile(
      `${run}/slurm/tasks/initial_masks.1.json`,
      JSON.stringify({ status: "failed", rc: 3, job: "12", log: "/logs/im_11_1.log" }),
    );
    const plan = { iterations: 1, dataDir: "/d" };
    const noAcct = (cmd: string, args: string[]) => {
      if (cmd === "sacct") return Promise.resolve({ code: 1, out: "", err: "accounting disabled" });
      if (cmd === "squeue") return Promise.resolve({ code: 0, out: "", err: "" });
      const id = args[args.length - 1];
      const out = id === "11"
        ? "JobId=11 ArrayJobId=11 ArrayTaskId=1 JobState=FAILED\nJobId=13 ArrayJobId=11 ArrayTaskId=0 JobState=COMPLETED\n"
        : id === "12"
        ? "JobId=12 JobState=CANCELLED Reason=DependencyNeverSatisfied\n"
        : "JobId=10 JobState=COMPLETED\n";
      return Promise.resolve({ code: 0, out, err: "" });
    };
    const s = await runStatus(run, plan, noAcct);
    const im = s.steps.find((x) => x.step === "initial_masks")!;
    assert.equal(im.state, "failed");
    assert.deepEqual(im.shards, { done: 1, of: 2, items: 0 });
    assert.deepEqual(im.failures, [{
      task: "1",
      what: "failed (exit 3)",
      log: "/logs/im_11_1.log",
    }]);
    assert.equal(s.steps.find((x) => x.step === "preliminary")!.state, "cancelled");
    assert.equal(s.steps.find((x) => x.step === "classifier")!.state, "done");
    assert.match(
      formatStatus(run, s),
      /sources: .*scontrol \(sacct: accounting disabled\); squeue/,
    );
    // With accounting: a never-started array is one line "job_[0-1]".
    const acct = (cmd: string) =>
      Promise.resolve(
        cmd === "sacct"
          ? { code: 0, out: "10|COMPLETED\n11_[0-1]|CANCELLED by 0\n12|CANCELLED\n", err: "" }
          : { code: 0, out: "", err: "" },
      );
    const s2 = await runStatus(run, plan, acct);
    const im2 = s2.steps.find((x) => x.step === "initial_masks")!;
    assert.deepEqual(im2.failures.map((f) => f.what), ["failed (exit 3)"]);
    assert.ok(s2.sources.includes("sacct"));
  } finally {
    await Deno.remove(run, { recursive: true });
  }
});

Deno.test("train refuses --shard on a stage that is not per item, naming the passes", async () => {
  const train = new URL("../../pipeline/cli/train.ts", import.meta.url).pathname;
  const out = await Deno.makeTempDir({ prefix: "slurm_refuse_" });
  try {
    for (
      const [args, re] of [
        [["--pass", "classifier", "--shard", "0/2"], /classifier is not a per-item pass/],
        [["--stop-after", "classifier", "--shard", "0/2"], /not per item and run whole/],
        [["--pass", "initial_masks", "--shard", "2/2"], /K counts from 0/],
      ] as [string[], RegExp][]
    ) {
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", train, "--profile", "tiny", "--out", `${out}/run`, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 2, err);
      assert.match(err, re);
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
