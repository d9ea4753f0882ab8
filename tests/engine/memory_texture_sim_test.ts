/**
 * bench/texture_sim.ts, the replay of a step's scratch-texture requests through other pool
 * policies (no GPU): what each hands out again, makes, evicts and holds.
 */
import assert from "node:assert/strict";
import type { TextureRequest } from "../../engine/texture_pool.ts";
import { simulateTextures, type TexturePolicy } from "../../bench/texture_sim.ts";

const MiB = 2 ** 20;
/** A W×H texture's bytes (rgba32float: 16 a texel). */
const bytes = (w: number, h: number) => w * h * 16;

/** A step that takes a 1024×1024 (16 MiB) then a 1024×960 texture, one after the other. */
const step: TextureRequest[] = [["a", 0, 1024, 1024], ["r", 0], ["a", 1, 1024, 960], ["r", 1]];

Deno.test("texture replay: exact shapes only, parked within the cap, second pass counted", () => {
  const exact: TexturePolicy = { name: "exact", rule: "exact", cap: 64 * MiB };
  // Both parked after the first pass: the second makes none.
  assert.deepEqual(simulateTextures(step, exact), {
    made: 0,
    madeBytes: 0,
    madeBytesOver64MiB: 0,
    heldPeak: bytes(1024, 1024) + bytes(1024, 960),
  });
  // A cap that holds one: each evicts the other, both made every pass.
  const one = simulateTextures(step, { ...exact, cap: 16 * MiB });
  assert.equal(one.made, 2);
  assert.equal(one.madeBytes, bytes(1024, 1024) + bytes(1024, 960));
  assert.equal(one.heldPeak, 16 * MiB + bytes(1024, 960), "in use + the parked one");
});

Deno.test("texture replay: fit hands out a larger parked texture within the slack; classes round up", () => {
  const fit = simulateTextures(step, { name: "fit", rule: "fit", cap: 16 * MiB, slack: 1.1 });
  assert.deepEqual([fit.made, fit.heldPeak], [0, 16 * MiB], "one texture serves both");
  const tight = simulateTextures(step, { name: "fit", rule: "fit", cap: 16 * MiB, slack: 1.01 });
  assert.equal(tight.made, 2, "16/15 over the slack: made anew as with exact shapes");
  const classes = simulateTextures(step, { name: "classes", rule: "classes", cap: 16 * MiB });
  assert.deepEqual([classes.made, classes.heldPeak], [0, 16 * MiB], "960 rounds up to 1024");
  // A 4096×2048 texture (128 MiB) made each pass under a cap below it: counted as over 64 MiB.
  const big = simulateTextures([["a", 0, 4096, 2048], ["r", 0]], {
    name: "exact",
    rule: "exact",
    cap: 64 * MiB,
  });
  assert.deepEqual([big.made, big.madeBytesOver64MiB], [1, 128 * MiB]);
});
