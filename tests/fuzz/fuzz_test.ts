/**
 * The short fuzz that CI runs: a few hundred seeded inputs per parser (every target in
 * tests/fuzz/targets/, discovered as `deno task fuzz` does), each in a bounded child process;
 * any crash, hang or memory blow-up fails the test and is saved under runs/fuzz/. Set FUZZ_RUNS
 * to change the count, FC_SEED to explore another seed (tests/setup.ts).
 * The first test checks the runner itself on a target that misbehaves on purpose.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { discoverTargets, formatReport, fuzzTarget, inputAt } from "./runner.ts";
import selftest from "./selftest_target.ts";

const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 300);
const SEED = fc.readConfigureGlobal().seed ?? 20261125;

Deno.test("fuzz runner: catches a hang, a memory blow-up, a crash and a dying child, and saves each", async () => {
  const out = await Deno.makeTempDir();
  try {
    const r = await fuzzTarget(new URL("./selftest_target.ts", import.meta.url).pathname, {
      runs: 32, // seed 1: inputs 0-31 hold each misbehaviour at least once
      seed: 1,
      timeMs: 2500,
      memMiB: 150,
      outDir: out,
    });
    assert.equal(r.inputs, 32);
    const byte = (i: number) => inputAt(selftest, 1, i)[0];
    const expected = { 1: "hang", 2: "memory", 3: "crash", 4: "crash" } as Record<number, string>;
    for (let i = 0; i < 32; i++) {
      const f = r.findings.find((f) => f.i === i);
      assert.equal(f?.kind, expected[byte(i)], `input ${i} (byte ${byte(i)}): ${f?.message}`);
      if (f) assert.deepEqual(await Deno.readFile(f.file!), new Uint8Array([byte(i)]));
    }
    for (const k of ["hang", "memory", "crash"]) {
      assert.ok(
        r.findings.some((f) => f.kind === k),
        `no ${k} among ${JSON.stringify(r.findings)}`,
      );
    }
    assert.ok(r.findings.some((f) => /TypeError/.test(f.message)));
    assert.ok(r.findings.some((f) => /child died \(exit 7/.test(f.message)));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

for (const [name, file] of await discoverTargets()) {
  Deno.test(`fuzz ${name}: ${RUNS} seeded inputs, no crash, hang or memory blow-up`, async () => {
    const r = await fuzzTarget(file, {
      runs: RUNS,
      seed: SEED,
      timeMs: 5000,
      memMiB: 1024,
      outDir: "runs/fuzz",
    });
    assert.equal(r.inputs, RUNS);
    assert.equal(r.findings.length, 0, formatReport(r));
  });
}
