/**
 * A half-finished run folder made before config keys existed (its config.json lacks
 * classifier.preciseBn, classifier.checkpoint and sam.warmStartLrScale, as this project wrote them
 * until those keys came): `deno task train` with the same command resumes it without --force and
 * trains as the code that made it did — the classifier checkpoint is bit for bit the one of a run
 * started with those old values, and not the one the current defaults give; a genuinely different
 * command is refused, naming the field. About a minute on lavapipe.
 */
import assert from "node:assert/strict";
import { readCheckpoint } from "../../pipeline/run_dir.ts";
import { runCli } from "../util/cli.ts";

const train = new URL("../../pipeline/cli/train.ts", import.meta.url).pathname;

/** The classifier's last checkpoint, tensor by tensor, as bytes. */
async function classifierTensors(run: string): Promise<Map<string, Uint8Array>> {
  const { tensors } = await readCheckpoint(`${run}/checkpoints/classifier_last.safetensors`);
  const out = new Map<string, Uint8Array>();
  for (const [k, t] of tensors) {
    out.set(k, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return out;
}

function sameBytes(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, x] of a) {
    const y = b.get(k);
    if (!y || y.length !== x.length || x.some((v, i) => v !== y[i])) return false;
  }
  return true;
}

async function copyDir(from: string, to: string): Promise<void> {
  const r = await new Deno.Command("cp", { args: ["-a", from, to] }).output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
}

Deno.test({
  name: "train: a run folder made before config keys existed resumes as it was started",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "epsam_old_run_" });
    const base = ["--profile", "tiny", "--epochs", "1", "--quiet"];
    const now = `${root}/now`, old = `${root}/old`, off = `${root}/off`;

    // One synthetic dataset for the three folders (the dataset stage does not read these keys).
    const made = await runCli(train, [...base, "--out", now, "--stop-after", "dataset"]);
    assert.equal(made.code, 0, made.stderr);
    await copyDir(now, old);
    await copyDir(now, off);
    const cfg = JSON.parse(await Deno.readTextFile(`${now}/config.json`));
    assert.equal(cfg.classifier.preciseBn, true, "the tiny profile recalibrates BatchNorm now");

    // `old`: config.json as written before the keys existed.
    const oldCfg = structuredClone(cfg);
    delete oldCfg.classifier.preciseBn;
    delete oldCfg.classifier.checkpoint;
    delete oldCfg.sam.warmStartLrScale;
    const oldText = JSON.stringify(oldCfg, null, 2) + "\n";
    await Deno.writeTextFile(`${old}/config.json`, oldText);
    // `off`: a current run started with the old values by hand.
    await Deno.writeTextFile(
      `${off}/config.json`,
      JSON.stringify({ ...cfg, classifier: { ...cfg.classifier, preciseBn: false } }, null, 2),
    );

    // Genuinely different commands are refused, naming the field and both values (had they been
    // accepted, --stop-after dataset would end them at once).
    const stop = ["--stop-after", "dataset"];
    const epochs = await runCli(train, [
      "--profile",
      "tiny",
      "--epochs",
      "2",
      "--out",
      old,
      ...stop,
    ]);
    assert.equal(epochs.code, 1, epochs.stderr);
    assert.match(epochs.stderr, /classifier\.epochs: the run has 1, this command 2/);
    const on = await runCli(train, [
      ...base,
      "--out",
      old,
      "--set",
      "classifier.preciseBn=true",
      ...stop,
    ]);
    assert.equal(on.code, 1, on.stderr);
    assert.match(
      on.stderr,
      /classifier\.preciseBn: the run has false \(its config\.json predates the key\), this command true/,
    );
    // Slurm's check of the folder (read-only, as shards open it) accepts it.
    const plan = await runCli(train, [...base, "--out", old, "--plan"]);
    assert.equal(plan.code, 0, plan.stderr);

    // The same command resumes it, without --force, and says with what.
    const resumed = await runCli(train, [...base, "--out", old, "--stop-after", "classifier"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(
      resumed.stderr,
      /train: run made before sam\.warmStartLrScale, classifier\.checkpoint, classifier\.preciseBn existed: resuming with .*classifier\.preciseBn off/,
    );
    assert.equal(await Deno.readTextFile(`${old}/config.json`), oldText, "config.json untouched");
    const state = JSON.parse(await Deno.readTextFile(`${old}/state.json`));
    assert.equal(state.stages.classifier.status, "done");
    assert.equal(state.legacyConfig["classifier.preciseBn"], false);

    const runs: [string, string[]][] = [[off, ["--set", "classifier.preciseBn=false"]], [now, []]];
    for (const [dir, extra] of runs) {
      const r = await runCli(train, [
        ...base,
        "--out",
        dir,
        "--stop-after",
        "classifier",
        ...extra,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /run made before/);
    }
    const [o, f, n] = await Promise.all([old, off, now].map(classifierTensors));
    assert.ok(sameBytes(o, f), "the old folder trained as a run with preciseBn off does");
    assert.ok(!sameBytes(o, n), "...which the current default (preciseBn on) does not");
    await Deno.remove(root, { recursive: true });
  },
});
