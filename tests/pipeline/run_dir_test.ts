import assert from "node:assert/strict";
import {
  diffConfig,
  parseMetrics,
  readCheckpoint,
  RunDir,
  writeCheckpoint,
} from "../../pipeline/run_dir.ts";

const tmp = () => Deno.makeTempDirSync({ prefix: "run_dir_test_" });

Deno.test("diffConfig lists differing dotted keys", () => {
  assert.deepEqual(
    diffConfig({ a: 1, b: { c: 2, d: [1, 2] } }, { a: 1, b: { c: 3, d: [1, 2] }, e: 0 }),
    ["b.c", "e"],
  );
  assert.deepEqual(diffConfig({ x: [1] }, { x: [1] }), []);
});

Deno.test("create, lock, resume, config mismatch and --force", () => {
  const dir = tmp();
  const cfg = { lr: 1e-5, model: { depth: 50 }, seed: 22 };
  const run = RunDir.open(dir, cfg);
  assert.equal(run.resumed, false);
  assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${dir}/config.json`)), cfg);
  assert.throws(
    () => RunDir.open(dir, cfg),
    new RegExp(`run\\.lock: this run folder is in use by process ${Deno.pid}`),
  );
  run.updateStage("classifier", { status: "running", epoch: 3 });
  run.close();
  assert.throws(() => run.updateStage("x", {}), /was closed/);

  const again = RunDir.open(dir, cfg);
  assert.equal(again.resumed, true);
  assert.deepEqual([again.stage("classifier").status, again.stage("classifier").epoch], [
    "running",
    3,
  ]);
  assert.equal(again.isDone("classifier"), false);
  assert.equal(again.stage("sam").status, "pending");
  again.close();

  const other = { lr: 1e-4, model: { depth: 18 }, seed: 22 };
  assert.throws(
    () => RunDir.open(dir, other),
    /different config \(keys: lr, model\.depth\).*--force/,
  );
  assert.ok(
    !Deno.statSync(dir).isFile && !exists(`${dir}/run.lock`),
    "a refused open leaves no lock",
  );
  const forced = RunDir.open(dir, other, { force: true });
  assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${dir}/config.json`)), other);
  forced.close();
  Deno.removeSync(dir, { recursive: true });
});

function exists(p: string) {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

Deno.test("a lock left by a dead process is taken over; one from another host is not", () => {
  const dir = tmp();
  Deno.writeTextFileSync(
    `${dir}/run.lock`,
    JSON.stringify({ pid: 2 ** 30, host: Deno.hostname(), started: "x" }),
  );
  RunDir.open(dir, {}).close();
  Deno.writeTextFileSync(
    `${dir}/run.lock`,
    JSON.stringify({ pid: 1, host: "elsewhere", started: "y" }),
  );
  assert.throws(() => RunDir.open(dir, {}), /in use by process 1 on elsewhere/);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("metrics.jsonl: appends, torn last line dropped and repaired, middle damage reported", async () => {
  assert.deepEqual(parseMetrics('{"stage":"a"}\n{"stage":"b","ep'), [{ stage: "a" }]);
  assert.throws(
    () => parseMetrics('{"stage":"a"}\n{oops\n{"stage":"b"}\n', "m.jsonl"),
    /m\.jsonl:2: not a JSON line/,
  );
  const dir = tmp();
  const run = RunDir.open(dir, {});
  await run.appendMetrics({ stage: "cls", epoch: 0, loss: 0.7 });
  await run.appendMetrics({ stage: "sam", step: 5, dice: 0.5 });
  await Deno.writeTextFile(`${dir}/metrics.jsonl`, '{"stage":"cls","epo', { append: true });
  assert.deepEqual((await run.readMetrics("cls")).map((r) => r.loss), [0.7]);
  run.close();
  const again = RunDir.open(dir, {});
  await again.appendMetrics({ stage: "cls", epoch: 1, loss: 0.6 });
  assert.deepEqual((await again.readMetrics("cls")).map((r) => r.epoch), [0, 1]);
  assert.equal((await again.readMetrics()).length, 3);
  // ensureMetrics restores an epoch record a kill lost, and only that one.
  await again.ensureMetrics({ stage: "cls", epoch: 1, loss: 0.6 });
  await again.ensureMetrics({ stage: "cls", epoch: 2, loss: 0.5 });
  assert.deepEqual((await again.readMetrics("cls")).map((r) => r.epoch), [0, 1, 2]);
  again.close();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("kill -9 during a run: the next open takes over the lock and resumes", async () => {
  const dir = tmp();
  const url = new URL("../../pipeline/run_dir.ts", import.meta.url).href;
  const code = `import { RunDir } from "${url}";
const r = RunDir.open(${JSON.stringify(dir)}, { a: 1 });
r.updateStage("cls", { status: "running", epoch: 2 });
await r.appendMetrics({ stage: "cls", epoch: 2 });
console.log("ready");
await new Promise(() => setInterval(() => {}, 1000));`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.match(new TextDecoder().decode(value), /ready/);
  assert.throws(() => RunDir.open(dir, { a: 1 }), /in use by process/);
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  const run = RunDir.open(dir, { a: 1 });
  assert.equal(run.stage("cls").epoch, 2);
  assert.equal((await run.readMetrics()).length, 1);
  run.close();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("checkpoints round-trip and corruption is reported with the file name", async () => {
  const dir = tmp();
  const p = `${dir}/ck.safetensors`;
  const w = Float32Array.from({ length: 6 }, (_, i) => i / 3);
  await writeCheckpoint(
    p,
    new Map<string, { shape: number[]; data: Float32Array | Int32Array }>([
      ["layer.weight", { shape: [2, 3], data: w }],
      ["step", { shape: [], data: Int32Array.of(42) }],
    ]),
    { epoch: "3" },
  );
  const r = await readCheckpoint(p);
  assert.deepEqual(Array.from(r.tensors.get("layer.weight")!.data as Float32Array), Array.from(w));
  assert.deepEqual(r.tensors.get("layer.weight")!.shape, [2, 3]);
  assert.equal((r.tensors.get("step")!.data as Int32Array)[0], 42);
  assert.deepEqual(r.metadata, { epoch: "3" });

  const bytes = Deno.readFileSync(p);
  const flipped = bytes.slice();
  flipped[flipped.length - 5] ^= 0x40;
  Deno.writeFileSync(p, flipped);
  await assert.rejects(readCheckpoint(p), new RegExp(`checkpoint ${p} is corrupt`));
  Deno.writeFileSync(p, bytes.subarray(0, bytes.length - 3));
  await assert.rejects(readCheckpoint(p), new RegExp(`checkpoint ${p}`));
  Deno.removeSync(dir, { recursive: true });
});
