/**
 * SAM parity with the official PyTorch implementation on the sam-tiny fixture
 * (../shared/fixtures/sam-tiny, see its README). Everything runs in f32; tolerances are stated per
 * comparison (outputs of deep f32 stacks differ from PyTorch's CPU kernels by accumulation order).
 */
import { F, noGrad, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import { loadCheckpoint } from "../../engine/io/state_dict.ts";
import { parseSamConfig } from "../../model/sam/configs.ts";
import { Sam } from "../../model/sam/sam.ts";
import { setAttentionImpl } from "../../engine/routing.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { setup } from "../util/gpu.ts";
import { assertGradClose, assertMatchesCase, type CaseCheck, readF32Case } from "../util/parity.ts";

const ok = haveFixtures();
if (ok) await setup();

async function build(file: string): Promise<{ sam: Sam; case_: Map<string, Float32Array> }> {
  const cfgJson = JSON.parse(await Deno.readTextFile(fixturePath("sam-tiny", "case.json")));
  const sam = new Sam(parseSamConfig(cfgJson, "case.json"));
  sam.loadStateDict(await loadCheckpoint(fixturePath("sam-tiny", file)), { file });
  sam.eval();
  return { sam, case_: await readF32Case("sam-tiny") };
}

function pointsFor(c: Map<string, Float32Array>, n: number, scale: number) {
  const coords = c.get("point_coords")!.slice(0, n * 2).map((v) => v * scale);
  return { coords, labels: c.get("point_labels")!.slice(0, n), n };
}

Deno.test({
  name:
    "SAM tiny: encoder intermediates, both prompt paths and post-processing match PyTorch (.pth and safetensors; fused, composed and texture attention)",
  ignore: !ok,
  fn: async () => {
    for (
      const [file, impl] of [
        ["weights.pth", "fused"],
        ["weights.safetensors", "composed"],
        ["weights.safetensors", "texture"],
      ] as const
    ) {
      setAttentionImpl(impl);
      const { sam, case_: c } = await build(file);
      const taps = new Map<string, Tensor>();
      sam.imageEncoder.tap = (name, t) => taps.set(name, F.dense(t, true));
      const input = tensor(c.get("encoder_input")!, [1, 3, 128, 128]);
      // The texture path runs without gradients only (the global block's 8×8 keys; the 3×3
      // windows are not whole periods of lcm(3, 4) keys and compose).
      const emb = impl === "texture" ? noGrad(() => sam.embed(input)) : sam.embed(input);
      sam.imageEncoder.tap = null;
      // Token grids: rtol 1e-4 relative to values of order 1, atol for near-zero entries.
      const tokens = ["after_patch_embed", "after_block_0", "after_block_1", "after_block_2"];
      await assertMatchesCase(c, [
        ...tokens.map((name): CaseCheck => [name, taps.get(name)!, 2e-4, 2e-4]),
        ["image_embeddings", emb, 2e-4, 2e-4],
        ["dense_pe", sam.promptEncoder.densePe(), 1e-4, 1e-4],
      ], `${file} `);
      // The 48×64 image was resized ×2 to 96×128; point coordinates scale by 2.
      const p1 = tidy(() => {
        const r = sam.decode(emb, { points: pointsFor(c, 5, 2) }, false);
        return { ...r, logits: sam.postprocess(r.lowRes, [96, 128], [48, 64]) };
      });
      await assertMatchesCase(c, [
        ["p1_sparse", p1.sparse, 1e-4, 1e-4],
        ["p1_dense", p1.dense, 1e-5, 1e-5],
        ["p1_low_res", p1.lowRes, 1e-3, 1e-3],
        ["p1_iou", p1.iou, 1e-4, 1e-3],
        ["p1_masks_logits", p1.logits, 1e-3, 1e-3],
      ], `${file} `);
      const box = c.get("box")!.map((v) => v * 2);
      const p2 = tidy(() => {
        const r = sam.decode(emb, {
          points: pointsFor(c, 3, 2),
          boxes: box,
          masks: tensor(c.get("mask_input")!, [1, 1, 32, 32]),
        }, true);
        return { ...r, logits: sam.postprocess(r.lowRes, [96, 128], [48, 64]) };
      });
      await assertMatchesCase(c, [
        ["p2_low_res", p2.lowRes, 1e-3, 1e-3],
        ["p2_iou", p2.iou, 1e-4, 1e-3],
        ["p2_masks_logits", p2.logits, 1e-3, 1e-3],
      ], `${file} `);
      sam.dispose();
    }
    setAttentionImpl(null);
  },
});

Deno.test({
  name:
    "SAM tiny: Dice+IoU training loss and the gradient of every parameter and of the encoder input match PyTorch",
  ignore: !ok,
  fn: async () => {
    const { backward, requireGrad } = await import("../../engine/mod.ts");
    // The fused attention kernel's backward, inside the whole model.
    setAttentionImpl("fused");
    const { sam, case_: c } = await build("weights.safetensors");
    const input = requireGrad(tensor(c.get("encoder_input")!, [1, 3, 128, 128]));
    const emb = sam.embed(input);
    const r = sam.decode(emb, { points: pointsFor(c, 5, 2) }, false);
    const logits = sam.postprocess(r.lowRes, [96, 128], [48, 64]);
    const probs = F.sigmoid(F.reshape(logits, [1, 48, 64]));
    const target = tensor(c.get("train_target")!, [1, 48, 64]);
    const loss = F.add(F.diceLoss(probs, target), F.iouLoss(probs, target));
    await assertMatchesCase(c, [["train_loss", loss, 1e-5, 1e-4]]);
    backward(loss);
    // Gradients flow through ~40 f32 layers in a different summation order than PyTorch's:
    // each is compared at 2e-3 of its tensor's largest magnitude.
    let n = 0;
    for (const [name, p] of sam.namedParameters()) {
      const want = c.get(`grad.${name}`);
      if (!want) {
        // Unused by this prompt (box corners, mask input): PyTorch leaves its grad None.
        if (p.grad && (await p.grad.data()).some((v) => v !== 0)) {
          throw new Error(`${name}: unexpected gradient`);
        }
        continue;
      }
      if (!p.grad) throw new Error(`no gradient reached ${name}`);
      assertGradClose(await p.grad.data(), want, 2e-3, 1e-8, `grad.${name}`);
      n++;
    }
    if (n < 120) throw new Error(`only ${n} gradients compared`);
    const gi = c.get("grad_encoder_input")!;
    assertGradClose(await input.grad!.data(), gi, 2e-3, 0, "grad_encoder_input");
    sam.dispose();
    setAttentionImpl(null);
  },
});

Deno.test({
  name:
    "SAM tiny: EP-SAM decoder-only training — frozen encoder, cached embeddings, gradients reach only the decoder",
  ignore: !ok,
  fn: async () => {
    const { backward, noGrad } = await import("../../engine/mod.ts");
    const { sam, case_: c } = await build("weights.pth");
    sam.imageEncoder.requiresGrad(false);
    sam.promptEncoder.requiresGrad(false);
    const emb = noGrad(() => sam.embed(tensor(c.get("encoder_input")!, [1, 3, 128, 128])));
    const r = sam.decode(emb, { points: pointsFor(c, 5, 2) }, false);
    const probs = F.sigmoid(F.reshape(sam.postprocess(r.lowRes, [96, 128], [48, 64]), [1, 48, 64]));
    const target = tensor(c.get("train_target")!, [1, 48, 64]);
    backward(F.add(F.diceLoss(probs, target), F.iouLoss(probs, target)));
    for (const [name, p] of sam.namedParameters()) {
      if (!name.startsWith("mask_decoder.")) {
        if (p.grad) throw new Error(`${name} is frozen but got a gradient`);
        continue;
      }
      const want = c.get(`grad.${name}`);
      if (!want) continue;
      assertGradClose(await p.grad!.data(), want, 2e-3, 1e-8, `grad.${name}`);
    }
    sam.dispose();
  },
});
