/**
 * Run folders made before a config key existed (pipeline/config_compat.ts): they resume without
 * --force, with the value the code that made them had, recorded in state.json; a genuinely
 * different config is still refused, naming the field. The table must list every key that a
 * config.json as first written (tests/pipeline/data/config_3faab6b_tiny.json, written by the
 * pipeline's first version, 3faab6b) lacks.
 */
import assert from "node:assert/strict";
import {
  absentKeys,
  ADDED_KEYS,
  describeOldRun,
  withOldValues,
} from "../../pipeline/config_compat.ts";
import { type PipelineConfig, readRunConfig, resolveConfig } from "../../pipeline/config.ts";
import { RunDir, validateRunState } from "../../pipeline/run_dir.ts";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Dotted paths of every leaf value (arrays are leaves). */
function leafPaths(v: unknown, prefix = ""): string[] {
  if (!isObj(v)) return [prefix];
  return Object.entries(v).flatMap(([k, x]) => leafPaths(x, prefix ? `${prefix}.${k}` : k)).sort();
}

const at = (cfg: unknown, path: string): unknown =>
  path.split(".").reduce<unknown>((o, p) => isObj(o) ? o[p] : undefined, cfg);

/** The current tiny config as train writes config.json, with the added keys removed. */
async function oldFormat(): Promise<{ now: PipelineConfig; old: Obj }> {
  const now = await resolveConfig({ profile: "tiny" });
  const old = JSON.parse(JSON.stringify(now));
  for (const k of ADDED_KEYS) {
    const parts = k.path.split(".");
    delete (at(old, parts.slice(0, -1).join(".")) as Obj)[parts[parts.length - 1]];
  }
  return { now, old };
}

function runFolder(config: Obj): string {
  const dir = Deno.makeTempDirSync({ prefix: "config_compat_test_" });
  Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify(config, null, 2) + "\n");
  return dir;
}

Deno.test("the table lists every key a first-format config.json lacks, with a value of its type", async () => {
  const first = JSON.parse(
    await Deno.readTextFile(new URL("data/config_3faab6b_tiny.json", import.meta.url)),
  );
  const now = await resolveConfig({ profile: "tiny" });
  const missing = leafPaths(now).filter((p) => !leafPaths(first).includes(p));
  assert.deepEqual(
    ADDED_KEYS.map((k) => k.path).sort(),
    missing,
    "every config key added since run folders were first written needs its old value in " +
      "pipeline/config_compat.ts ADDED_KEYS",
  );
  assert.deepEqual(leafPaths(withOldValues(first)), leafPaths(now));
  for (const k of ADDED_KEYS) assert.equal(typeof k.value, typeof at(now, k.path), k.path);
});

Deno.test("resolveConfig for a run made before the keys: their old values, unless set", async () => {
  const { old } = await oldFormat();
  const madeBefore = absentKeys(old);
  assert.deepEqual(madeBefore.map((k) => k.path), ADDED_KEYS.map((k) => k.path));
  const c = await resolveConfig({ profile: "tiny" }, { madeBefore });
  assert.equal(c.classifier.preciseBn, false);
  assert.equal(c.classifier.checkpoint, false);
  assert.equal(c.sam.warmStartLrScale, 1);
  assert.deepEqual(c as unknown as Obj, withOldValues(old), "the run's config as it was started");
  const set = await resolveConfig(
    { profile: "tiny", set: ["classifier.preciseBn=true"] },
    { madeBefore },
  );
  assert.equal(set.classifier.preciseBn, true, "--set still overrides the old value");
  assert.match(
    describeOldRun(madeBefore.filter((k) => k.path === "classifier.preciseBn")),
    /^run made before classifier\.preciseBn existed: resuming with it off$/,
  );
});

Deno.test("RunDir.open resumes an old-format run folder without force, recorded in state.json", async () => {
  const { old } = await oldFormat();
  const dir = runFolder(old);
  const text = Deno.readTextFileSync(`${dir}/config.json`);
  const cfg = await resolveConfig({ profile: "tiny" }, { madeBefore: absentKeys(old) });
  const run = RunDir.open(dir, cfg as unknown as Obj);
  assert.equal(run.resumed, true);
  assert.deepEqual(run.madeBefore.map((k) => k.path), ADDED_KEYS.map((k) => k.path));
  run.close();
  assert.equal(Deno.readTextFileSync(`${dir}/config.json`), text, "config.json left as written");
  const state = JSON.parse(Deno.readTextFileSync(`${dir}/state.json`));
  assert.deepEqual(state.legacyConfig, {
    "sam.warmStartLrScale": 1,
    "classifier.checkpoint": false,
    "classifier.preciseBn": false,
  });
  // Shards and infer read it the same way.
  RunDir.openShared(dir, cfg as unknown as Obj);
  const read = await readRunConfig(dir);
  assert.equal(read.classifier.preciseBn, false, "infer reads the run's value, not the profile's");
  assert.deepEqual(read, cfg);

  // A genuinely different config is refused, naming each field with both values.
  const other = await resolveConfig(
    { profile: "tiny", epochs: "9", set: ["classifier.preciseBn=true"] },
    { madeBefore: absentKeys(old) },
  );
  const refused = (f: () => unknown) =>
    assert.throws(
      f,
      (e: Error) => {
        assert.match(
          e.message,
          /different config \(keys: classifier\.epochs, classifier\.preciseBn\)/,
        );
        assert.match(e.message, /classifier\.epochs: the run has 8, this command 9/);
        assert.match(
          e.message,
          /classifier\.preciseBn: the run has false \(its config\.json predates the key\), this command true/,
        );
        assert.match(e.message, /--profile tiny --config .*config\.json/);
        return true;
      },
    );
  refused(() => RunDir.open(dir, other as unknown as Obj));
  refused(() => RunDir.openShared(dir, other as unknown as Obj));

  // --force takes the new config whole; nothing is then filled in.
  RunDir.open(dir, other as unknown as Obj, { force: true }).close();
  assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${dir}/config.json`)), other);
  assert.equal(JSON.parse(Deno.readTextFileSync(`${dir}/state.json`)).legacyConfig, undefined);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("a config.json without a whole section is damaged, not old: no value is filled", async () => {
  const { now } = await oldFormat();
  const { classifier: _c, ...rest } = JSON.parse(JSON.stringify(now));
  assert.deepEqual(absentKeys(rest), []);
  const dir = runFolder(rest);
  assert.throws(() => RunDir.open(dir, now as unknown as Obj), /keys: classifier\b/);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("state.json's legacyConfig is checked field by field", () => {
  const state = { version: 1, created: "a", updated: "b", stages: {} };
  assert.deepEqual(
    validateRunState({ ...state, legacyConfig: { "classifier.preciseBn": false } }).legacyConfig,
    { "classifier.preciseBn": false },
  );
  assert.throws(
    () => validateRunState({ ...state, legacyConfig: { "classifier.preciseBn": "off" } }, "s.json"),
    /s\.json: field legacyConfig\.classifier\.preciseBn: expected a boolean or number/,
  );
  assert.throws(
    () => validateRunState({ ...state, legacyConfig: [] }, "s.json"),
    /s\.json: field legacyConfig: expected an object/,
  );
});
