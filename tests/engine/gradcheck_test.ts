/**
 * gradCheck (tests/util/gpu.ts) evaluates its finite differences on the path its analytic
 * gradient takes. Code may branch on whether gradients are recorded — ResNet-ADL in eval mode
 * fuses conv + BatchNorm + ReLU into one inference pass where none are (engine/ops/conv_fused.ts)
 * — and differences of one path against the gradient of another check neither.
 */
import assert from "node:assert/strict";
import { dispatchStats, F, isGradEnabled, noGrad, type Tensor, tidy } from "../../engine/mod.ts";
import { setConvBnFusion } from "../../engine/routing.ts";
import { RESNET50_ADL, ResNetAdl } from "../../model/resnet_adl.ts";
import { gradCheck, randTensor, setup } from "../util/gpu.ts";

await setup();

Deno.test("gradCheck differentiates f on the path its gradient takes, not f's no-grad path", async () => {
  // x² with gradients recorded, 3x² without: the gradient is 2x, and so must the differences be
  // (differences taken under noGrad would see 6x and fail).
  const f = (x: Tensor) => isGradEnabled() ? F.mul(x, x) : F.mul(F.mul(x, x), 3);
  await gradCheck(f, [{ shape: [5, 3] }]);
  // It still catches a gradient that is wrong on its own path: d/dx of x·stopgrad(x) is x, not 2x.
  const g = (x: Tensor) => F.mul(x, noGrad(() => F.affine(x, 1, 0)));
  await assert.rejects(gradCheck(g, [{ shape: [5, 3] }]), /gradCheck/);
});

Deno.test("gradCheck of an eval-mode ResNet-ADL (conv + BN + ReLU fusion on) never runs the fused path", async () => {
  setConvBnFusion(true);
  const m = new ResNetAdl({
    ...RESNET50_ADL,
    layers: [1, 1, 1, 1],
    width: 4,
    highFreq: false,
    adlPositions: [[], [], [], [], []],
  }).eval();
  try {
    const x = randTensor([1, 3, 16, 16], 3, 0, 1);
    // The premise: without gradients this model takes the fused path (fewer dispatches).
    const count = (grad: boolean) => {
      const before = dispatchStats().dispatches;
      tidy(() => grad ? m.forward(x) : noGrad(() => m.forward(x)));
      return dispatchStats().dispatches - before;
    };
    assert.ok(count(false) < count(true), "no-grad forward fuses");
    x.dispose();
    const modes: boolean[] = [];
    await gradCheck(
      (x) => {
        modes.push(isGradEnabled());
        return m.forward(x);
      },
      [{ shape: [1, 3, 16, 16], lo: 0, hi: 1 }],
      { directions: 2, coords: 2 },
    );
    assert.ok(modes.length >= 1 + 1 + 2 * 4, `f ran ${modes.length} times`);
    assert.ok(modes.every((on) => on), "every evaluation recorded gradients (the unfused path)");
  } finally {
    setConvBnFusion(null);
    m.dispose();
  }
});
