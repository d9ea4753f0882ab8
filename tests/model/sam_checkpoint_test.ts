/**
 * loadSam: both containers, clear errors for missing/unexpected/mis-shaped keys, and position
 * parameters resized when the checkpoint's grid differs from the config; SamPredictor on top.
 */
import assert from "node:assert/strict";
import { F, tensor } from "../../engine/mod.ts";
import {
  type HostTensor,
  readSafetensors,
  toFloat32,
  writeSafetensors,
} from "../../engine/io/safetensors.ts";
import { parseSamConfig, type SamConfig } from "../../model/sam/configs.ts";
import { loadSam, resizePosEmbed, resizeRelPos } from "../../model/sam/checkpoint.ts";
import { SamPredictor } from "../../model/sam/predictor.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

const ok = haveFixtures();
await setup();

async function tinyConfig(): Promise<SamConfig> {
  return parseSamConfig(
    JSON.parse(await Deno.readTextFile(fixturePath("sam-tiny", "case.json"))),
    "case.json",
  );
}

Deno.test("resizePosEmbed / resizeRelPos match interpolate (bilinear / linear, align_corners=False)", async () => {
  const [h, w, c, nh, nw] = [5, 7, 3, 3, 9];
  const src = randArray(h * w * c, 11);
  const got = resizePosEmbed(src, h, w, c, nh, nw);
  const nchw = F.permute(tensor(src, [1, h, w, c]), [0, 3, 1, 2]);
  const want = F.permute(F.interpolateBilinear(nchw, [nh, nw]), [0, 2, 3, 1]);
  assertClose(got, await F.dense(want).data(), { atol: 1e-6, what: "pos_embed" });
  const rel = randArray(15 * 4, 12);
  const asRow = F.reshape(F.transpose(tensor(rel, [15, 4]), 0, 1), [1, 4, 1, 15]);
  const wantRel = F.transpose(F.reshape(F.interpolateBilinear(asRow, [1, 7]), [4, 7]), 0, 1);
  assertClose(resizeRelPos(rel, 15, 4, 7), await F.dense(wantRel).data(), {
    atol: 1e-6,
    what: "rel_pos shrink",
  });
  assertClose(resizeRelPos(rel, 15, 4, 27).subarray(0, 4), rel.subarray(0, 4), {
    atol: 1e-6,
    what: "rel_pos grow, edge",
  });
});

Deno.test({
  name: "loadSam: .pth and safetensors give the same weights; errors name the file and keys",
  ignore: !ok,
  fn: async () => {
    const cfg = await tinyConfig();
    const a = await loadSam(fixturePath("sam-tiny", "weights.pth"), cfg);
    const b = await loadSam(fixturePath("sam-tiny", "weights.safetensors"), cfg);
    assert.equal(a.training, false);
    const k = "mask_decoder.iou_prediction_head.layers.0.weight";
    assert.deepEqual(await a.stateDict().get(k)!.data(), await b.stateDict().get(k)!.data());
    a.dispose();
    b.dispose();
    await assert.rejects(
      loadSam("/nonexistent/sam.pth", cfg),
      /\/nonexistent\/sam\.pth: checkpoint file not found/,
    );
    const sd = await readSafetensors(fixturePath("sam-tiny", "weights.safetensors"));
    const bad = new Map<string, HostTensor>(sd);
    bad.delete("image_encoder.neck.0.weight");
    bad.set("extra.weight", { dtype: "F32", shape: [1], data: new Float32Array(1) });
    bad.set("mask_decoder.iou_token.weight", {
      dtype: "F32",
      shape: [2, 32],
      data: new Float32Array(64),
    });
    const dir = await Deno.makeTempDir();
    const file = `${dir}/bad.safetensors`;
    await writeSafetensors(file, bad);
    await assert.rejects(loadSam(file, cfg), (e: Error) => {
      assert.match(e.message, /bad\.safetensors/);
      assert.match(e.message, /missing keys \(1\):\s+image_encoder\.neck\.0\.weight/);
      assert.match(e.message, /unexpected keys \(1\):\s+extra\.weight/);
      assert.match(e.message, /mask_decoder\.iou_token\.weight: got \[2, 32\], expected \[1, 32\]/);
      return true;
    });
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name:
    "loadSam: a checkpoint trained at 128 runs at img_size 64 (pos_embed and global rel_pos resized)",
  ignore: !ok,
  fn: async () => {
    const cfg = await tinyConfig();
    const small: SamConfig = {
      ...cfg,
      encoder: { ...cfg.encoder, img_size: 64 },
      prompt_encoder: { ...cfg.prompt_encoder, image_embedding_size: [4, 4] },
    };
    const sd = await readSafetensors(fixturePath("sam-tiny", "weights.safetensors"));
    const sam = await loadSam(fixturePath("sam-tiny", "weights.pth"), small);
    const st = sam.stateDict();
    assert.deepEqual(st.get("image_encoder.pos_embed")!.shape, [1, 4, 4, 48]);
    assertClose(
      await st.get("image_encoder.pos_embed")!.data(),
      resizePosEmbed(toFloat32(sd.get("image_encoder.pos_embed")!), 8, 8, 48, 4, 4),
      { atol: 1e-7 },
    );
    // Block 1 is global (8×8 → 4×4 tokens: 15 → 7); blocks 0 and 2 are windowed (unchanged).
    const rel = sd.get("image_encoder.blocks.1.attn.rel_pos_h")!;
    assert.deepEqual(rel.shape[0], 15);
    assertClose(
      await st.get("image_encoder.blocks.1.attn.rel_pos_h")!.data(),
      resizeRelPos(toFloat32(rel), 15, rel.shape[1], 7),
      { atol: 1e-7 },
    );
    assertClose(
      await st.get("image_encoder.blocks.0.attn.rel_pos_w")!.data(),
      toFloat32(sd.get("image_encoder.blocks.0.attn.rel_pos_w")!),
      { atol: 0 },
    );
    // The predictor runs end to end at the new size.
    const c = await readSafetensors(fixturePath("sam-tiny", "case.safetensors"));
    const p = new SamPredictor(sam);
    p.setImage(c.get("image_u8")!.data as Uint8Array, 48, 64);
    assert.deepEqual(p.inputSize, [48, 64]);
    const r = p.predict({ pointCoords: [31, 21], pointLabels: [1], multimask: true });
    assert.deepEqual(r.lowResLogits.shape, [1, 3, 16, 16]);
    assert.deepEqual(r.masksLogits.shape, [1, 3, 48, 64]);
    assert.deepEqual(r.iou.shape, [1, 3]);
    assert.ok((await r.masksLogits.data()).every(Number.isFinite));
    assert.throws(
      () => p.predict({ pointCoords: [1, 2, 3], pointLabels: [1] }),
      /3 coordinates for 1 labels/,
    );
    assert.throws(
      () => p.predict({ maskInput: new Float32Array(10) }),
      /maskInput must be \[1, 16, 16\]/,
    );
    p.dispose();
    assert.throws(() => p.predict({ box: [0, 0, 1, 1] }), /setImage/);
    sam.dispose();
  },
});

Deno.test({
  name: "SamPredictor matches the fixture's p1 path (points in original pixels)",
  ignore: !ok,
  fn: async () => {
    const sam = await loadSam(fixturePath("sam-tiny", "weights.pth"), await tinyConfig());
    const c = await readSafetensors(fixturePath("sam-tiny", "case.safetensors"));
    const f = (k: string) => toFloat32(c.get(k)!);
    const p = new SamPredictor(sam);
    p.setImage(c.get("image_u8")!.data as Uint8Array, 48, 64);
    const r = p.predict({ pointCoords: f("point_coords"), pointLabels: f("point_labels") });
    assertClose(await r.masksLogits.data(), f("p1_masks_logits"), {
      atol: 1e-3,
      rtol: 1e-3,
      what: "p1 masks",
    });
    // Reusing the low-res logits as mask input is accepted as a tensor.
    const r2 = p.predict({
      pointCoords: f("point_coords"),
      pointLabels: f("point_labels"),
      maskInput: F.select(r.lowResLogits, 0, 0),
    });
    assert.deepEqual(r2.masksLogits.shape, [1, 1, 48, 64]);
    p.dispose();
    sam.dispose();
  },
});
