/**
 * Hostile run folders and configs (issue 13, items 9 and 10): each input is built here, read in a
 * bounded child process, and must end with an error naming the file and the field. The lock test
 * starts several processes at the same moment on a stale lock: exactly one may win.
 */
import assert from "node:assert/strict";
import { runChild } from "../util/child.ts";
import { readRunConfig, resolveConfig } from "../../pipeline/config.ts";

const CHILD = new URL("../util/load_child.ts", import.meta.url).pathname;
const BOUNDS = { ms: 15_000, rssMiB: 300 };

interface Loaded {
  ok: boolean;
  name?: string;
  message?: string;
}

async function readBounded(reader: string, arg: string, ...opts: string[]): Promise<Loaded> {
  const r = await runChild([CHILD, reader, arg, ...opts], {
    timeoutS: 2 * BOUNDS.ms / 1000,
    memLimitMiB: 2 * BOUNDS.rssMiB,
  });
  assert.ok(!r.timedOut && r.peakMiB <= 2 * BOUNDS.rssMiB, `${reader} child killed`);
  assert.equal(r.code, 0, r.stderr);
  const line = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  const peak = Math.max(r.peakMiB, line.hwmMiB);
  assert.ok(r.seconds * 1000 < BOUNDS.ms, `took ${r.seconds.toFixed(1)} s`);
  assert.ok(peak < BOUNDS.rssMiB, `peak RSS ${peak.toFixed(0)} MiB`);
  return line;
}

function refused(r: Loaded, ...needles: (string | RegExp)[]): void {
  assert.equal(r.ok, false, "the hostile input was accepted");
  assert.equal(r.name, "InputError", `not the reader's own error: ${r.name}: ${r.message}`);
  for (const n of needles) {
    if (typeof n === "string") assert.ok(r.message!.includes(n), `${r.message} lacks ${n}`);
    else assert.match(r.message!, n);
  }
}

async function runFolder(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  return dir;
}

Deno.test('hostile state.json: "stages": null and other bad fields are named with the file', async () => {
  const good = { version: 1, created: "x", updated: "x" };
  const cases: [unknown, string][] = [
    [{ ...good, stages: null }, "field stages: expected an object"],
    [{ ...good, stages: { classifier: null } }, "field stages.classifier: expected an object"],
    [{ ...good, stages: { classifier: { status: "finished" } } }, "field stages.classifier.status"],
    [{ ...good, stages: { c: { status: "done", epoch: -1 } } }, "field stages.c.epoch"],
    [{ ...good, version: 2, stages: {} }, "field version: expected 1"],
    [[], "field (root)"],
  ];
  for (const [state, field] of cases) {
    const dir = await runFolder({ "config.json": "{}", "state.json": JSON.stringify(state) });
    refused(await readBounded("run-dir", dir), `${dir}/state.json`, field);
    await Deno.remove(dir, { recursive: true });
  }
  // 100 000 levels of nesting: refused by depth, never recursed into.
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  const dir = await runFolder({ "config.json": deep, "state.json": "{}" });
  refused(await readBounded("run-dir", dir), `${dir}/config.json`, "nested deeper than 64");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a run folder's config.json is checked field by field when infer reads it", async () => {
  for (const profile of ["tiny", "default"] as const) {
    const cfg = await resolveConfig({ profile });
    const dir = await runFolder({ "config.json": JSON.stringify(cfg) });
    assert.deepEqual(await readRunConfig(dir), cfg, "a config train wrote reads back unchanged");
    await Deno.remove(dir, { recursive: true });
  }
  const good = JSON.parse(JSON.stringify(await resolveConfig({ profile: "tiny" })));
  const cases: [unknown, RegExp][] = [
    [{ ...good, iterations: null }, /"iterations" must be a number, got null/],
    [{ ...good, profile: undefined }, /field profile: expected one of tiny, default, paper/],
    [
      { ...good, classifier: { ...good.classifier, width: 1e9 } },
      /classifier.width must be at most/,
    ],
    [{ ...good, sam: { ...good.sam, model: { encoder: {} } } }, /sam.model: missing object/],
    [[1, 2], /field \(root\)/],
  ];
  for (const [cfg, want] of cases) {
    const dir = await runFolder({ "config.json": JSON.stringify(cfg) });
    refused(await readBounded("run-config", dir), `${dir}/config.json`, want);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hostile SAM configs: num_heads 0, patch_size 0, embed_dim 47 name the field", async () => {
  const base = JSON.parse(
    await Deno.readTextFile(new URL("../../../shared/fixtures/sam-tiny/case.json", import.meta.url))
      .catch(() => "null"),
  ) ?? {
    encoder: {
      img_size: 128,
      patch_size: 16,
      embed_dim: 48,
      depth: 3,
      num_heads: 3,
      window_size: 3,
      global_attn_indexes: [1],
      mlp_ratio: 4,
      out_chans: 32,
    },
    prompt_encoder: { embed_dim: 32, image_embedding_size: [8, 8], mask_in_chans: 4 },
    mask_decoder: {
      transformer_dim: 32,
      depth: 2,
      mlp_dim: 64,
      num_heads: 2,
      attention_downsample_rate: 2,
      num_multimask_outputs: 3,
      iou_head_depth: 3,
      iou_head_hidden_dim: 32,
    },
  };
  const cfg = {
    encoder: base.encoder,
    prompt_encoder: base.prompt_encoder,
    mask_decoder: base.mask_decoder,
  };
  const cases: [string, string, unknown, RegExp][] = [
    ["encoder", "num_heads", 0, /field encoder\.num_heads: expected an integer in \[1, /],
    ["encoder", "patch_size", 0, /field encoder\.patch_size: expected an integer in \[1, 128\]/],
    ["encoder", "embed_dim", 47, /field encoder\.embed_dim: expected a multiple of 3/],
    ["encoder", "img_size", 1e300, /field encoder\.img_size/],
    ["mask_decoder", "transformer_dim", 36, /field mask_decoder\.transformer_dim/],
    ["encoder", "global_attn_indexes", [7], /field encoder\.global_attn_indexes\[0\]/],
  ];
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, JSON.stringify(cfg));
    assert.equal((await readBounded("sam-config", path)).ok, true, "the valid config was refused");
    for (const [section, key, value, want] of cases) {
      const bad = structuredClone(cfg) as Record<string, Record<string, unknown>>;
      bad[section][key] = value;
      await Deno.writeTextFile(path, JSON.stringify(bad));
      refused(await readBounded("sam-config", path), path, want);
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("hostile --set and config files: prototype keys are refused by name", async () => {
  for (
    const s of ["__proto__.x=1", "constructor.name=1", "sam.prototype=1", "sam.__proto__.lr=1"]
  ) {
    refused(
      await readBounded("set", s),
      "--set",
      /is not allowed \(".+" names JavaScript's prototype/,
    );
  }
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    for (const text of ['{"__proto__": {"x": 1}}', '{"sam": {"constructor": 1}}']) {
      await Deno.writeTextFile(path, text);
      refused(await readBounded("config", path), path, "is not allowed");
    }
    await Deno.writeTextFile(path, '{"sam": {"model": {"encoder": {}}}}');
    refused(await readBounded("config", path), "sam.model", "missing object");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("stale run.lock: of several processes taking it over at the same moment, exactly one wins", async () => {
  const holder = new URL("../util/lock_taker.ts", import.meta.url).pathname;
  for (let round = 0; round < 1; round++) {
    const dir = await Deno.makeTempDir();
    // A lock left by a process that no longer exists (pids above pid_max never do).
    await Deno.writeTextFile(
      `${dir}/run.lock`,
      JSON.stringify({ pid: 2 ** 30 + round, host: Deno.hostname(), started: "then" }),
    );
    const start = Date.now() + 1500; // all children call open at this instant
    const takers = Array.from({ length: 4 }, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", holder, dir, String(start)],
        stdout: "piped",
        stderr: "piped",
        // Every taker pauses after seeing the stale lock: they all collide on the takeover.
        env: { EPSAM_TEST_LOCK_PAUSE_MS: "300" },
      }).output());
    const outs = await Promise.all(takers);
    const lines = outs.map((o) => new TextDecoder().decode(o.stdout).trim());
    const won = lines.filter((l) => l === "won");
    assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(lines)}`);
    for (const l of lines.filter((l) => l !== "won")) assert.match(l, /^lost: .*in use|taken over/);
    await Deno.remove(dir, { recursive: true });
  }
});
