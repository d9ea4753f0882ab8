/**
 * The stored-state readers read back on resume (summary.json, pseudo stats.json, state.json via
 * the slurm planner) refuse truncated, oversized and wrong-typed files with an error naming the
 * file and the field.
 */
import assert from "node:assert/strict";
import { readPseudoStats, readSummary } from "../../pipeline/result_files.ts";
import { readStages } from "../../pipeline/slurm/jobs.ts";

const stats = (iter: number) => ({
  iter,
  kept: 3,
  total: 4,
  dice: 0.5,
  iou: null, // NaN as JSON.stringify writes it
  pooledDice: 0.6,
  pooledIoU: 0.4,
  valKept: 1,
});
const scores = { dice: 0.7, iou: 0.6, pooledDice: 0.7, pooledIoU: 0.6, n: 5 };
const summary = () => ({
  profile: "tiny",
  samWeights: "sam/final.safetensors",
  dataset: "synthetic",
  cam: scores,
  pseudo: [stats(0)],
  final: scores,
  margin: { dice: 0, iou: 0 },
  seconds: { classifier: 1.5 },
  peakGpuBytes: { classifier: 1024 },
  testPatches: 5,
});
const state = () => ({
  version: 1,
  created: "2026-01-01",
  updated: "2026-01-01",
  stages: { classifier: { status: "done" } },
});

/** Runs `body` with a temporary folder holding `name` written as `content`. */
async function withFile(
  name: string,
  content: string | number,
  body: (dir: string, path: string) => void,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "result_files_" });
  const path = `${dir}/${name}`;
  try {
    if (typeof content === "string") await Deno.writeTextFile(path, content);
    else {
      // A sparse file of `content` bytes: the size check must refuse it before reading.
      using f = await Deno.open(path, { write: true, create: true });
      await f.truncate(content);
    }
    body(dir, path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const throwsNaming = (fn: () => unknown, path: string, what: RegExp) =>
  assert.throws(fn, (e: Error) => {
    assert.ok(e.message.startsWith(path), e.message);
    assert.match(e.message, what);
    return true;
  });

const OVERSIZED = 17 * 2 ** 20;

Deno.test("summary.json: valid read back (null scores as NaN); damaged ones name file and field", async () => {
  await withFile("summary.json", JSON.stringify(summary()), (_, p) => {
    const s = readSummary(p);
    assert.equal(s.final.n, 5);
    assert.ok(Number.isNaN(s.pseudo[0].iou));
  });
  const text = JSON.stringify(summary());
  await withFile("summary.json", text.slice(0, text.length / 2), (_, p) => {
    throwsNaming(() => readSummary(p), p, /not valid JSON/);
  });
  await withFile("summary.json", OVERSIZED, (_, p) => {
    throwsNaming(() => readSummary(p), p, /more than the \d+/);
  });
  const wrong: [string, (s: ReturnType<typeof summary>) => void, RegExp][] = [
    [
      "seconds",
      (s) => (s.seconds as Record<string, unknown>).evaluate = "x",
      /field seconds\.evaluate: expected a number, got "x"/,
    ],
    [
      "final",
      (s) => (s as Record<string, unknown>).final = null,
      /field final: expected an object/,
    ],
    [
      "cam.n",
      (s) => (s.cam as Record<string, unknown>) = { ...scores, n: -1 },
      /field cam\.n: expected a non-negative integer/,
    ],
    [
      "pseudo",
      (s) => (s.pseudo[0] as Record<string, unknown>).kept = "3",
      /field pseudo\[0\]\.kept/,
    ],
    ["margin", (s) => (s.margin as Record<string, unknown>).dice = "0", /field margin\.dice/],
    ["peak", (s) => (s.peakGpuBytes as Record<string, unknown>).x = [], /field peakGpuBytes\.x/],
  ];
  for (const [, edit, what] of wrong) {
    const s = summary();
    edit(s);
    await withFile("summary.json", JSON.stringify(s), (_, p) => {
      throwsNaming(() => readSummary(p), p, what);
    });
  }
});

Deno.test("pseudo stats.json: truncated, oversized and wrong-typed files name file and field", async () => {
  await withFile("stats.json", JSON.stringify(stats(2)), (_, p) => {
    assert.equal(readPseudoStats(p).kept, 3);
  });
  await withFile("stats.json", JSON.stringify(stats(2)).slice(0, 20), (_, p) => {
    throwsNaming(() => readPseudoStats(p), p, /not valid JSON/);
  });
  await withFile("stats.json", OVERSIZED, (_, p) => {
    throwsNaming(() => readPseudoStats(p), p, /more than the \d+/);
  });
  await withFile("stats.json", JSON.stringify({ ...stats(2), dice: "0.5" }), (_, p) => {
    throwsNaming(() => readPseudoStats(p), p, /field dice: expected a number/);
  });
  await withFile("stats.json", "[]", (_, p) => {
    throwsNaming(() => readPseudoStats(p), p, /field \(root\): expected an object/);
  });
});

Deno.test("slurm readStages: state.json truncated, oversized or wrong-typed names file and field", async () => {
  await withFile("state.json", JSON.stringify(state()), (dir) => {
    assert.equal(readStages(dir).classifier?.status, "done");
  });
  const text = JSON.stringify(state());
  await withFile("state.json", text.slice(0, text.length - 3), (dir, p) => {
    throwsNaming(() => readStages(dir), p, /not valid JSON/);
  });
  await withFile("state.json", OVERSIZED, (dir, p) => {
    throwsNaming(() => readStages(dir), p, /more than the \d+/);
  });
  const bad = { ...state(), stages: { classifier: { status: "finished" } } };
  await withFile("state.json", JSON.stringify(bad), (dir, p) => {
    throwsNaming(() => readStages(dir), p, /field stages\.classifier\.status: expected one of/);
  });
  const dir = await Deno.makeTempDir({ prefix: "result_files_" });
  try {
    assert.deepEqual(readStages(dir), {}); // no state.json yet: no stages
  } finally {
    await Deno.remove(dir);
  }
});
