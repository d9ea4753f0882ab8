/**
 * kill -9 in the middle of a classifier epoch, then the same command: the run resumes after the
 * last finished epoch (losing at most the one in progress) instead of starting over.
 */
import assert from "node:assert/strict";

const train = new URL("../../pipeline/cli/train.ts", import.meta.url).pathname;

Deno.test({
  name: "train: kill -9 mid-epoch, then the same command resumes after the last finished epoch",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "epsam_kill_" });
    const args = [
      "run",
      "-A",
      train,
      "--profile",
      "tiny",
      "--out",
      out,
      "--stop-after",
      "classifier",
    ];
    const env = { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1" };
    const child = new Deno.Command(Deno.execPath(), { args, env, stdout: "null", stderr: "piped" })
      .spawn();
    // Watch the progress output until the third epoch is under way, then kill -9.
    const reader = child.stderr.getReader();
    const dec = new TextDecoder();
    let log = "";
    const deadline = Date.now() + 180_000;
    while (!/classifier epoch 3\/\d+ \d+\/\d+/.test(log)) {
      const { value, done } = await reader.read();
      if (done || Date.now() > deadline) break;
      log += dec.decode(value);
    }
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stderr.cancel().catch(() => {});
    assert.match(
      log,
      /classifier epoch 3\//,
      `the run never reached epoch 3:\n${log.slice(-2000)}`,
    );
    const state = JSON.parse(await Deno.readTextFile(`${out}/state.json`));
    assert.equal(state.stages.classifier.status, "running");
    assert.equal(state.stages.classifier.epoch, 2);

    const again = await new Deno.Command(Deno.execPath(), {
      args,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = dec.decode(again.stdout) + dec.decode(again.stderr);
    assert.equal(again.code, 0, text.slice(-3000));
    assert.match(text, /classifier: resuming after epoch 2/);
    assert.doesNotMatch(text, /classifier epoch 1\/\d+:/);
    const done = JSON.parse(await Deno.readTextFile(`${out}/state.json`));
    assert.equal(done.stages.classifier.status, "done");
    await Deno.remove(out, { recursive: true });
  },
});
