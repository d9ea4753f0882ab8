/**
 * kill -9 in the middle of a classifier epoch, of a SAM epoch and of the pseudo-label pass, then
 * the same command each time: the run resumes after the last finished epoch or pseudo-label batch
 * (losing at most the one in progress) and ends bit-identical to an uninterrupted run — every
 * checkpoint, CAM, mask and pseudo-label file byte for byte, and the same metric records.
 */
import assert from "node:assert/strict";
import { parseMetrics } from "../../pipeline/run_dir.ts";
import { listFiles } from "../util/files.ts";

const train = new URL("../../pipeline/cli/train.ts", import.meta.url).pathname;
const env = { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1" };
const dec = new TextDecoder();

const argsFor = (out: string) => [
  "run",
  "-A",
  train,
  "--profile",
  "tiny",
  "--out",
  out,
  "--epochs",
  "3",
  "--sam-epochs",
  "3",
  "--stop-after",
  "preliminary",
];

/** Runs the command until its progress output matches `until`, then kills it with SIGKILL. */
async function killWhen(args: string[], until: RegExp): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), { args, env, stdout: "null", stderr: "piped" })
    .spawn();
  const reader = child.stderr.getReader();
  let log = "";
  const deadline = Date.now() + 300_000;
  while (!until.test(log)) {
    const { value, done } = await reader.read();
    if (done || Date.now() > deadline) break;
    log += dec.decode(value);
  }
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stderr.cancel().catch(() => {});
  assert.match(log, until, `the run never got there:\n${log.slice(-2000)}`);
  return log;
}

async function runToEnd(args: string[]): Promise<string> {
  const r = await new Deno.Command(Deno.execPath(), { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const text = dec.decode(r.stdout) + dec.decode(r.stderr);
  assert.equal(r.code, 0, text.slice(-3000));
  return text;
}

/** Metric records without their wall-clock fields. */
async function metricsOf(dir: string): Promise<Record<string, unknown>[]> {
  return parseMetrics(await Deno.readTextFile(`${dir}/metrics.jsonl`)).map((r) => {
    const { time: _t, ...rest } = r as Record<string, unknown>;
    return rest;
  });
}

Deno.test({
  name:
    "train: kill -9 mid-classifier, mid-SAM epoch and mid-pseudo-labels; resumed run is bit-identical",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const killed = await Deno.makeTempDir({ prefix: "epsam_kill_" });
    const clean = await Deno.makeTempDir({ prefix: "epsam_clean_" });
    const args = argsFor(killed);

    // 1. Killed while the classifier's second epoch is under way.
    await killWhen(args, /classifier epoch 2\/3 \d+\/\d+/);
    const state = JSON.parse(await Deno.readTextFile(`${killed}/state.json`));
    assert.equal(state.stages.classifier.status, "running");
    assert.equal(state.stages.classifier.epoch, 1);

    // 2. Resumed, then killed while SAM's second preliminary epoch is under way.
    const log2 = await killWhen(args, /sam preliminary epoch 2\/3 \d+\/\d+/);
    assert.match(log2, /classifier: resuming after epoch 1/);
    assert.doesNotMatch(log2, /classifier epoch 1\/3 /, "the finished epoch was redone");

    // 3. Resumed, then killed while the first pseudo-labels are being written.
    const log3 = await killWhen(args, /pseudo-labels iter_0 \(train\) \d+\/\d+/);
    assert.match(log3, /sam preliminary: resuming after epoch 1/);
    assert.doesNotMatch(log3, /classifier epoch/, "the classifier was retrained");
    assert.doesNotMatch(log3, /sam preliminary epoch 1\/3 /, "the finished SAM epoch was redone");

    // 4. Resumed to the end of the stage: decided pseudo-label batches are not recomputed.
    const log4 = await runToEnd(args);
    assert.match(log4, /pseudo-labels iter_0: resuming, [1-9]\d* patches already decided/);
    assert.doesNotMatch(log4, /sam preliminary epoch/, "SAM was retrained");

    // 5. The same command never interrupted.
    await runToEnd(argsFor(clean));

    // 6. Bit for bit: checkpoints, CAMs, initial masks and pseudo-labels; then the metrics.
    const outputs = async (dir: string) =>
      (await listFiles(dir)).filter((f) => /^(checkpoints|cam|initial_mask|pseudo)\//.test(f));
    const a = await outputs(killed), b = await outputs(clean);
    assert.deepEqual(a, b);
    assert.ok(a.some((f) => f.startsWith("checkpoints/sam_preliminary_last")));
    assert.ok(a.some((f) => f.startsWith("pseudo/iter_0/")));
    for (const f of a) {
      const [x, y] = [await Deno.readFile(`${killed}/${f}`), await Deno.readFile(`${clean}/${f}`)];
      assert.ok(
        x.length === y.length && x.every((v, i) => v === y[i]),
        `${f} differs between the resumed and the uninterrupted run`,
      );
    }
    assert.deepEqual(await metricsOf(killed), await metricsOf(clean));
    await Deno.remove(killed, { recursive: true });
    await Deno.remove(clean, { recursive: true });
  },
});
