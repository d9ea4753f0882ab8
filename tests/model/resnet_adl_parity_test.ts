/**
 * ResNet-50-ADL parity with EP-SAM's PyTorch classifier on the resnet-adl-tiny fixture
 * (layers 1,1,2,3, width 16; ../shared/fixtures/README.md). f32 throughout; tolerances are stated
 * per comparison: forward outputs ~1e-4 relative, gradients ~1e-3 relative (sums over the batch
 * in a different order than PyTorch's CPU kernels), masks by IoU (rounding at mask borders).
 */
import assert from "node:assert/strict";
import { backward, F, noGrad, tensor, tidy } from "../../engine/mod.ts";
import { readSafetensors } from "../../engine/io/safetensors.ts";
import { loadCheckpoint } from "../../engine/io/state_dict.ts";
import { Adam } from "../../engine/optim/adam.ts";
import { ResNetAdl } from "../../model/resnet_adl.ts";
import { Adl } from "../../model/adl.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { setup } from "../util/gpu.ts";
import { assertGradClose, assertMatchesCase, readF32Case } from "../util/parity.ts";
import { maskIou } from "../util/masks.ts";
import { convTiles, matmulVariant, setConvPath, setConvTiles } from "../../engine/routing.ts";

const ok = haveFixtures();
if (ok) await setup();

const CONFIG = {
  layers: [1, 1, 2, 3] as [number, number, number, number],
  width: 16,
  adlPositions: [[], [], [], [0], [0, 2]],
  adlDropRate: 0.75,
  adlThreshold: 0.8,
  highFreq: true,
  seed: 0,
};

const loadCase = () => readF32Case("resnet-adl-tiny");

async function model(file: string): Promise<ResNetAdl> {
  const m = new ResNetAdl(CONFIG);
  m.loadStateDict(await loadCheckpoint(fixturePath("resnet-adl-tiny", file)), { file });
  return m;
}

Deno.test({
  name:
    "ResNet-ADL tiny: eval logits, layer4.0 features and raw CAM match PyTorch (.pth and safetensors)",
  ignore: !ok,
  fn: async () => {
    const c = await loadCase();
    for (const file of ["weights.pth", "weights.safetensors"]) {
      const m = (await model(file)).eval();
      const x = tensor(c.get("input")!, [2, 3, 64, 64]);
      const r = tidy(() => ({ logits: m.forward(x), feat: m.camFeatures(x), cam: m.camRaw(x) }));
      await assertMatchesCase(c, [
        ["eval_logits", r.logits, 1e-4, 1e-4],
        ["layer4_0_features", r.feat, 1e-4, 1e-4],
        ["cam_raw", r.cam, 1e-4, 1e-4],
      ], `${file} `);
      m.dispose();
    }
  },
});

Deno.test({
  name:
    "ResNet-ADL tiny: fused inference (noGrad, eval: conv + BN + ReLU in one pass) matches PyTorch on both conv paths",
  ignore: !ok,
  fn: async () => {
    // Same 1e-4 as the unfused forward: folding BN changes each conv output's rounding only
    // (acc·s + (β − mean·s) in one fma instead of (acc − mean)·s + β), a few ulps of values of
    // order 1. Measured on llvmpipe, largest error against PyTorch: fused 3.6e-7 (logits),
    // 3.9e-7 (features), 2.4e-7 (CAM) on either path; unfused 4.8e-7, 3.6e-7, 2.4e-7.
    const c = await loadCase();
    const m = (await model("weights.safetensors")).eval();
    const x = tensor(c.get("input")!, [2, 3, 64, 64]);
    // Both forced paths (the default one mixes them; the CAM test below runs it, fused).
    const paths: ["kernel" | "texture", string][] = [["kernel", "conv kernels"]];
    if (matmulVariant() === "texture") paths.push(["texture", "texture GEMMs"]);
    for (const [path, label] of paths) {
      setConvPath(path);
      try {
        const r = tidy(() =>
          noGrad(() => ({ logits: m.forward(x), feat: m.camFeatures(x), cam: m.camRaw(x) }))
        );
        await assertMatchesCase(c, [
          ["eval_logits", r.logits, 1e-4, 1e-4],
          ["layer4_0_features", r.feat, 1e-4, 1e-4],
          ["cam_raw", r.cam, 1e-4, 1e-4],
        ], `${label} `);
        for (const t of [r.logits, r.feat, r.cam]) t.dispose();
      } finally {
        setConvPath(null);
      }
    }
    x.dispose();
    m.dispose();
  },
});

Deno.test({
  name: "ResNet-ADL tiny: ADL importance and drop branches match PyTorch",
  ignore: !ok,
  fn: async () => {
    const c = await loadCase();
    const adl = new Adl({ dropRate: 0.75, threshold: 0.8 });
    adl.train();
    const x = tensor(c.get("adl_input")!, [2, 8, 5, 5]);
    await assertMatchesCase(c, [
      ["adl_importance_out", adl.forward(x, "importance"), 1e-6, 1e-5],
      ["adl_drop_out", adl.forward(x, "drop"), 1e-6, 1e-5],
    ]);
    adl.eval();
    if (adl.forward(x) !== x) throw new Error("ADL must be the identity in eval mode");
  },
});

Deno.test({
  name:
    "ResNet-ADL tiny: a training step (BCE, batch-stat BN, ADL identity) gives PyTorch's loss, gradients and Adam update",
  ignore: !ok,
  fn: async () => {
    // The conv kernels (the texture GEMMs are checked in the next test).
    setConvTiles(convTiles());
    try {
      await trainingStep(true);
    } finally {
      setConvTiles(null);
    }
  },
});

Deno.test({
  name: "ResNet-ADL tiny: the same training step through the texture conv path (software adapters)",
  ignore: !ok || matmulVariant() !== "texture",
  fn: async () => {
    setConvPath("texture"); // every conv, whatever its channel count
    try {
      await trainingStep(false);
    } finally {
      setConvPath(null);
    }
  },
});

/**
 * One training step against the fixture. `strict`: every gradient to 1e-3 of its tensor's largest
 * entry, then the Adam update. Otherwise (the texture GEMMs sum in another order) one
 * pre-activation of 4.7e-6 in layer4.0 changes sign after bn2 (measured), so one channel's
 * gradients of that block legitimately differ by a few per cent: each gradient must then have
 * a relative L2 error under 1e-2 and a cosine similarity above 0.9999 with PyTorch's.
 */
async function trainingStep(strict: boolean): Promise<void> {
  {
    const c = await loadCase();
    const m = (await model("weights.safetensors")).train();
    m.setAdl(false);
    const x = tensor(c.get("input")!, [2, 3, 64, 64]);
    const y = tensor(c.get("train_labels")!, [2]);
    const before = new Map<string, number>();
    for (const [k, t] of m.stateDict()) {
      if (k.endsWith("num_batches_tracked")) before.set(k, await t.item());
    }
    const logits = F.reshape(m.forward(x), [2]);
    // A training forward counts one batch in every BatchNorm, as torch does.
    for (const [k, t] of m.stateDict()) {
      if (k.endsWith("num_batches_tracked")) assert.equal(await t.item(), before.get(k)! + 1, k);
    }
    const loss = F.bceWithLogits(logits, y);
    await assertMatchesCase(c, [
      ["train_logits", logits, 1e-4, 1e-4],
      ["train_loss", loss, 1e-5, 1e-4],
    ]);
    backward(loss);
    let checked = 0;
    for (const [name, p] of m.namedParameters()) {
      const want = c.get(`grad.${name}`);
      if (!want) throw new Error(`fixture has no grad.${name}`);
      const got = await p.grad!.data();
      if (strict) {
        // Gradients: 1e-3 relative to the largest entry of the tensor (sums reordered).
        assertGradClose(got, want, 1e-3, 1e-7, `grad.${name}`);
      } else {
        let dot = 0, gg = 0, ww = 0, dd = 0;
        for (let i = 0; i < want.length; i++) {
          dot += got[i] * want[i];
          gg += got[i] ** 2;
          ww += want[i] ** 2;
          dd += (got[i] - want[i]) ** 2;
        }
        const cos = dot / Math.sqrt(gg * ww || 1), rel = Math.sqrt(dd / (ww || 1));
        assert.ok(
          (cos > 0.9999 || ww === 0) && rel < 1e-2,
          `grad.${name}: cosine ${cos}, relative L2 error ${rel}`,
        );
      }
      checked++;
    }
    if (checked < 50) throw new Error(`only ${checked} gradients checked`);
    if (!strict) {
      m.dispose();
      return;
    }
    const opt = new Adam(m.parameters(), { lr: 1e-3, weightDecay: 1e-3 });
    opt.step();
    // An Adam step moves each weight by at most ~lr; where the gradient is tiny next to weight
    // decay the step's sign can follow f32 rounding, so those elements may differ by up to 2·lr.
    // Everything else (and the BN running statistics) must agree to 1e-5.
    let loose = 0, total = 0;
    for (const [name, t] of m.stateDict()) {
      const want = c.get(`after_step.${name}`);
      if (!want || name.endsWith("num_batches_tracked")) continue;
      const got = await t.data();
      const isStat = name.endsWith("running_mean") || name.endsWith("running_var");
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(got[i] - want[i]);
        total++;
        if (d <= 1e-5 + 1e-4 * Math.abs(want[i])) continue;
        if (isStat || d > 2.05e-3) {
          throw new Error(`after_step.${name}[${i}]: ${got[i]} vs ${want[i]}`);
        }
        loose++;
      }
    }
    if (loose > total * 0.005) {
      throw new Error(`${loose} of ${total} updated values differ by more than 1e-5`);
    }
    m.dispose();
  }
}

Deno.test({
  name: "ResNet-ADL tiny: CAM masks and normalised CAMs of generate_cam_masks (camelyon16/17)",
  ignore: !ok,
  fn: async () => {
    const { camDefaults, generateCamMasks } = await import("../../model/cam.ts");
    const raw = await readSafetensors(fixturePath("resnet-adl-tiny", "case.safetensors"));
    const img = raw.get("cam_image_u8")!.data as Uint8Array;
    const c = await loadCase();
    const m = (await model("weights.safetensors")).eval();
    const chw = new Float32Array(3 * 128 * 128);
    for (let i = 0; i < 128 * 128; i++) {
      for (let ch = 0; ch < 3; ch++) chw[ch * 128 * 128 + i] = img[i * 3 + ch] / 255;
    }
    const logit = tidy(() => m.forward(tensor(chw, [1, 3, 128, 128])));
    await assertMatchesCase(c, [["cam_image_logit", logit, 1e-4, 1e-4]]);
    logit.dispose();
    for (const ds of ["camelyon16", "camelyon17"] as const) {
      const r = await generateCamMasks(m, img, 128, 128, camDefaults(ds));
      if (ds === "camelyon16") {
        await assertMatchesCase(c, [["cam_image_cam_raw", r.rawRot0, 1e-4, 1e-4]]);
      }
      const want = raw.get(`cam_mask_${ds}`)!.data as Uint8Array;
      const iou = maskIou(r.mask, want);
      // camelyon16 matches to rounding at mask borders. camelyon17 opens and thresholds at feature
      // resolution (8×8 here) and then upsamples ×16, so one feature pixel decides 256 output
      // pixels: measured IoU 0.969, the difference being at two corners of the mask.
      const need = ds === "camelyon16" ? 0.98 : 0.95;
      if (iou < need) throw new Error(`${ds}: CAM mask IoU ${iou.toFixed(4)} < ${need}`);
      await assertMatchesCase(c, [[`cam_norm_${ds}`, r.norm, 1e-5, 1e-5]]);
    }
    m.dispose();
  },
});
