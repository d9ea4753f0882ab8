/**
 * The tiny profile (epochs cut) submitted to a real one-node Slurm cluster (tests/slurm/cluster.ts)
 * with arrays of 2 tasks, against the same config run unsharded on this machine:
 * - one array task is cancelled while it runs (scancel): `status` reports it with its log, the next
 *   stage's merge refuses the incomplete set and names the missing items, and nothing the
 *   cancelled shard left on disk is accepted;
 * - `submit` again resubmits only that task and the steps after it; the finished shard is not
 *   redone (its manifest is untouched);
 * - the finished run's files (data, CAMs, masks, pseudo-labels, checkpoints, predictions,
 *   metrics, plots, examples) are byte-identical to the unsharded run's.
 * Skips, saying why, where Slurm or munge is not installed.
 */
import assert from "node:assert/strict";
import { slurmMissing, startCluster } from "./cluster.ts";
import { parseMetrics } from "../../pipeline/run_dir.ts";
import { listFiles } from "../util/files.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const TRAIN = `${REPO}pipeline/cli/train.ts`;
const SLURM = `${REPO}pipeline/cli/slurm.ts`;
const dec = new TextDecoder();

/** Same config for both runs: the tiny profile with fewer epochs and smaller slides. */
const FLAGS = [
  "--profile",
  "tiny",
  "--epochs",
  "3",
  "--sam-epochs",
  "2",
  "--ids-threshold",
  "0.2",
  "--quiet",
];

const missing = await slurmMissing();
if (missing) console.warn(`tests/slurm/slurm_e2e_test.ts skipped: ${missing}`);

async function sh(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; text: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args,
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: r.code, text: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

/** Files that differ by nature between two runs (timings, locks, cluster bookkeeping). */
const OWN_TO_A_RUN =
  /^(state\.json|run\.lock|summary\.json|metrics\.jsonl|slurm\/.*|(data\/)?shards\/.*|pseudo\/iter_\d+\/progress\.shard_.*)$/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, ms: number, f: () => Promise<T | null>): Promise<T> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await f();
    if (v !== null) return v;
    await sleep(500);
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test({
  name: "slurm: tiny run as job arrays; a cancelled task resubmitted; byte-identical to unsharded",
  ignore: missing !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "slurm_e2e_" });
    const cluster = await startCluster({ cpus: 2 });
    const env = cluster.env;
    try {
      const ref = `${root}/unsharded`, run = `${root}/sharded`;
      // The reference runs on this machine while the cluster works (2 cores shared).
      const refDone = sh(["run", "-A", TRAIN, ...FLAGS, "--out", ref], {});
      const submitArgs = [
        "run",
        "-A",
        SLURM,
        "submit",
        "--run",
        run,
        "--array-size",
        "2",
        "--gpus-per-task",
        "0",
        "--cpus-per-task",
        "1",
      ];
      const sub = await sh([...submitArgs, ...FLAGS], env);
      assert.equal(sub.code, 0, sub.text);
      const jobs = JSON.parse(await Deno.readTextFile(`${run}/slurm/jobs.json`));
      const first = jobs.submissions[0].steps;
      assert.deepEqual(
        first.map((s: { step: string }) => s.step),
        [
          "dataset_candidates",
          "dataset_patches",
          "classifier",
          "initial_masks",
          "preliminary",
          "pseudo_0",
          "iter_1",
          "evaluate",
          "summary",
        ],
      );
      // Cancel shard 1 of the first array once it runs.
      const cand = first[0].job;
      await until("dataset_candidates task 1 to start", 120_000, async () => {
        try {
          const r = JSON.parse(
            await Deno.readTextFile(`${run}/slurm/tasks/dataset_candidates.1.json`),
          );
          return r.status === "running" ? true : null;
        } catch {
          return null;
        }
      });
      await cluster.cmd("scancel", [`${cand}_1`]);
      const ids = new Set(first.map((s: { job: string }) => s.job));
      const idle = async () => {
        const q = await cluster.cmd("squeue", ["-h", "-r", "-o", "%F"]);
        return q.split("\n").some((l) => ids.has(l.trim())) ? null : true;
      };
      await until("the first submission's jobs to leave the queue", 300_000, idle);
      const st = await sh(["run", "-A", SLURM, "status", "--run", run], env);
      assert.equal(st.code, 0, st.text);
      assert.match(st.text, /dataset_candidates\s+cancelled/, st.text);
      assert.match(
        st.text,
        /dataset_candidates task 1: cancelled.*log .*dataset_candidates_/,
        st.text,
      );
      assert.match(st.text, /sources: .*squeue/, st.text);
      console.log(`status after the cancellation:\n${st.text}`);
      // The merge (the dataset stage) refuses the incomplete set, naming what is missing.
      const merge = await sh([
        "run",
        "-A",
        TRAIN,
        ...FLAGS,
        "--out",
        run,
        "--stop-after",
        "dataset",
      ], {});
      assert.equal(merge.code, 1, merge.text);
      assert.match(
        merge.text,
        /incomplete set: \d+ of 4 items missing \(synthetic-\d+.*1\/2/,
        merge.text,
      );
      const kept = `${run}/data/shards/prepare_candidates/shard_0_of_2.json`;
      const keptBytes = await Deno.readFile(kept);
      const keptTime = (await Deno.stat(kept)).mtime!.getTime();
      // Submit again (train flags remembered): only the cancelled task and what follows.
      const again = await sh(submitArgs, env);
      assert.equal(again.code, 0, again.text);
      const j2 = JSON.parse(await Deno.readTextFile(`${run}/slurm/jobs.json`));
      const second = j2.submissions[1].steps;
      assert.equal(second[0].step, "dataset_candidates");
      assert.equal(second[0].tasks, "1", "only the cancelled shard is resubmitted");
      const ids2 = new Set(second.map((s: { job: string }) => s.job));
      await until("the resubmitted run to finish", 900_000, async () => {
        const q = await cluster.cmd("squeue", ["-h", "-r", "-o", "%F"]);
        return q.split("\n").some((l) => ids2.has(l.trim())) ? null : true;
      });
      const st2 = await sh(["run", "-A", SLURM, "status", "--run", run], env);
      assert.match(st2.text, /9\/9 steps done \(finished\)/, st2.text);
      assert.deepEqual(await Deno.readFile(kept), keptBytes);
      assert.equal((await Deno.stat(kept)).mtime!.getTime(), keptTime, "shard 0 was redone");
      const r = await refDone;
      assert.equal(r.code, 0, r.text);
      // Byte-identical outputs.
      const a = (await listFiles(ref)).filter((f) => !OWN_TO_A_RUN.test(f));
      // The cancelled task was killed mid-write: its temp file stays as debris under a name no
      // manifest lists and no reader opens (writes are temp + rename).
      const debris = (await listFiles(run)).filter((f) => /\.tmp-\d+-[0-9a-f]+$/.test(f));
      const manifests = (await listFiles(run)).filter((f) => /shards\/.*\.json$/.test(f));
      for (const m of manifests) {
        const text = await Deno.readTextFile(`${run}/${m}`);
        assert.ok(!/\.tmp-\d+-/.test(text), `${m} lists a temp file`);
      }
      const b = (await listFiles(run)).filter((f) => !OWN_TO_A_RUN.test(f) && !debris.includes(f));
      assert.deepEqual(b, a);
      assert.ok(a.some((f) => f.startsWith("pseudo/iter_0/train/")), "no pseudo-label kept");
      for (const f of a) {
        if (f === "data/manifest.json") continue; // holds the slides' absolute paths: below
        assert.deepEqual(await Deno.readFile(`${run}/${f}`), await Deno.readFile(`${ref}/${f}`), f);
      }
      assert.equal(
        (await Deno.readTextFile(`${run}/data/manifest.json`)).replaceAll(run, "RUN"),
        (await Deno.readTextFile(`${ref}/data/manifest.json`)).replaceAll(ref, "RUN"),
      );
      const metrics = async (d: string) =>
        parseMetrics(await Deno.readTextFile(`${d}/metrics.jsonl`)).map(({ time: _t, ...x }) => x);
      assert.deepEqual(await metrics(run), await metrics(ref));
      const summary = async (d: string) => {
        const { seconds: _s, peakGpuBytes: _p, ...x } = JSON.parse(
          await Deno.readTextFile(`${d}/summary.json`),
        );
        return x;
      };
      assert.deepEqual(await summary(run), await summary(ref));
    } finally {
      await cluster.stop();
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
