import assert from "node:assert/strict";
import { tensor, tidy } from "../../engine/mod.ts";
import { Adl } from "../../model/adl.ts";
import { ResNetAdl } from "../../model/resnet_adl.ts";
import { setup } from "../util/gpu.ts";

await setup();

function branches(adl: Adl, n: number): string[] {
  const x = tensor(new Float32Array(2 * 3 * 4 * 4).map((_, i) => Math.sin(i)), [2, 3, 4, 4]);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    tidy(() => adl.forward(x));
    out.push(adl.lastBranch);
  }
  x.dispose();
  return out;
}

Deno.test("ADL: a saved draw state continues the same branch sequence (resume)", () => {
  const whole = branches(new Adl({ seed: 5 }).train(), 40);
  assert.ok(whole.includes("drop") && whole.includes("importance"), "both branches drawn");
  const first = new Adl({ seed: 5 }).train();
  const head = branches(first, 17);
  const resumed = new Adl({ seed: 5 }).train();
  resumed.rngState = first.rngState;
  assert.deepEqual([...head, ...branches(resumed, 23)], whole);
});

Deno.test("ResNetAdl: ADL draw states round-trip; a wrong count is refused", () => {
  const cfg = {
    layers: [1, 1, 1, 1] as [number, number, number, number],
    width: 4,
    adlPositions: [[], [], [], [0], [0]],
    adlDropRate: 0.75,
    adlThreshold: 0.8,
    highFreq: false,
    seed: 3,
  };
  const a = new ResNetAdl(cfg), b = new ResNetAdl(cfg);
  const states = a.adlStates();
  assert.equal(states.length, 2);
  b.setAdlStates(states.map((s) => s + 1));
  assert.deepEqual(b.adlStates(), states.map((s) => (s + 1) >>> 0));
  assert.throws(() => b.setAdlStates([1]), /1 ADL draw states for 2 ADL layers/);
  a.dispose();
  b.dispose();
});
