/**
 * The test cluster itself: a job array of 3 tasks (ids from 1, as `--array=1-3`) runs and each
 * task derives its shard from the Slurm environment; an afterok dependent runs after it. Skips,
 * saying why, where Slurm or munge is not installed.
 */
import assert from "node:assert/strict";
import { slurmMissing, startCluster } from "./cluster.ts";

const missing = await slurmMissing();
if (missing) console.warn(`tests/slurm/cluster_test.ts skipped: ${missing}`);

const SHARD = new URL("../../pipeline/shard/shard.ts", import.meta.url).pathname;

Deno.test({
  name: "slurm test cluster: an array from 1 to 3 maps to shards 0..2; afterok runs after it",
  ignore: missing !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const cluster = await startCluster({ cpus: 2 });
    const dir = await Deno.makeTempDir({ prefix: "slurm_cluster_" });
    try {
      const probe = `${dir}/probe.ts`;
      await Deno.writeTextFile(
        probe,
        `import { shardFromEnv } from "${SHARD}";\n` +
          `const s = shardFromEnv((k) => Deno.env.get(k))!;\n` +
          `Deno.writeTextFileSync("${dir}/task_" + Deno.env.get("SLURM_ARRAY_TASK_ID"), s.index + "/" + s.count);\n`,
      );
      const job = (await cluster.cmd("sbatch", [
        "--parsable",
        "--array=1-3",
        "--cpus-per-task=1",
        `--output=${dir}/%A_%a.log`,
        `--wrap=${Deno.execPath()} run -A ${probe}`,
      ])).trim();
      const after = (await cluster.cmd("sbatch", [
        "--parsable",
        `--dependency=afterok:${job}`,
        `--output=${dir}/after.log`,
        `--wrap=touch ${dir}/after`,
      ])).trim();
      const end = Date.now() + 120_000;
      while (Date.now() < end) {
        const q = await cluster.cmd("squeue", ["-h", "-r", "-o", "%F"]);
        if (!q.split("\n").some((l) => [job, after].includes(l.trim()))) break;
        await new Promise((r) => setTimeout(r, 300));
      }
      for (const [id, want] of [["1", "0/3"], ["2", "1/3"], ["3", "2/3"]]) {
        const got = await Deno.readTextFile(`${dir}/task_${id}`).catch(() => "missing");
        assert.equal(
          got,
          want,
          `task ${id}: ${await Deno.readTextFile(`${dir}/${job}_${id}.log`).catch(() => "")}`,
        );
      }
      await Deno.stat(`${dir}/after`);
    } finally {
      await cluster.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
