/**
 * The paper's SAM setting at fixture size: `deno task train` with a pretrained SAM `.pth`
 * (`--sam-checkpoint`, here the sam-tiny fixture written by the official code) and a frozen encoder
 * (`--no-train-encoder`), as `--profile paper` runs sam_vit_b_01ec64.pth. Only the mask decoder
 * trains, on image embeddings cached once per patch; checkpoints hold the decoder alone; the encoder
 * stays the checkpoint's; `deno task infer` rebuilds the model from the checkpoint and the decoder.
 */
import assert from "node:assert/strict";
import { readSafetensors } from "../../engine/io/safetensors.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { runCli } from "../util/cli.ts";

const train = new URL("../../pipeline/cli/train.ts", import.meta.url).pathname;
const infer = new URL("../../pipeline/cli/infer.ts", import.meta.url).pathname;
Deno.test({
  name:
    "train with a SAM .pth checkpoint: decoder-only fine-tuning on cached embeddings, then infer",
  ignore: !haveFixtures(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "epsam_ckpt_" });
    const cj = JSON.parse(await Deno.readTextFile(fixturePath("sam-tiny", "case.json")));
    const model = `${out}/sam_tiny.json`;
    await Deno.writeTextFile(
      model,
      JSON.stringify({
        encoder: cj.encoder,
        prompt_encoder: cj.prompt_encoder,
        mask_decoder: cj.mask_decoder,
      }),
    );
    const pth = fixturePath("sam-tiny", "weights.pth");
    const run1 = `${out}/run`;
    const r = await runCli(train, [
      "--profile",
      "tiny",
      "--out",
      run1,
      "--sam-checkpoint",
      pth,
      "--sam-model",
      model,
      "--no-train-encoder",
      "--epochs",
      "2",
      "--sam-epochs",
      "2",
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.text.slice(-3000));
    const s = JSON.parse(await Deno.readTextFile(`${run1}/summary.json`));
    assert.match(
      s.samWeights,
      /pretrained checkpoint .*weights\.pth; mask decoder only fine-tuned/,
    );
    for (const k of ["cam", "final"]) assert.ok(Number.isFinite(s[k].dice) && s[k].n > 0, k);

    // Embeddings cached once per patch, at the encoder's output size (C × h × w f32).
    const [eh, ew] = cj.prompt_encoder.image_embedding_size;
    const per = cj.prompt_encoder.embed_dim * eh * ew * 4;
    for (const split of ["train", "val", "test"]) {
      let n = 0;
      for await (const e of Deno.readDir(`${run1}/embeddings/${split}`)) {
        assert.equal((await Deno.stat(`${run1}/embeddings/${split}/${e.name}`)).size, per);
        n++;
      }
      assert.ok(n > 0, `no cached ${split} embeddings`);
    }

    // Stage checkpoints hold the mask decoder and its optimiser state only.
    for (const tag of ["preliminary", "iter_1"]) {
      const ck = await readSafetensors(`${run1}/checkpoints/sam_${tag}_best.safetensors`);
      const keys = [...ck.keys()];
      assert.ok(keys.length > 0);
      assert.ok(
        keys.every((k) => k.startsWith("model.mask_decoder.")),
        `${tag}: ${keys.find((k) => !k.startsWith("model.mask_decoder."))}`,
      );
    }

    // infer rebuilds SAM from the .pth plus the selected decoder and reproduces the summary.
    const i = await runCli(infer, ["--run", run1, "--out", `${out}/infer`, "--quiet"]);
    assert.equal(i.code, 0, i.text.slice(-3000));
    const m = JSON.parse(await Deno.readTextFile(`${out}/infer/metrics.json`));
    assert.ok(Math.abs(m.dice - s.final.dice) < 1e-6, `infer ${m.dice} vs summary ${s.final.dice}`);
    await Deno.remove(out, { recursive: true });
  },
});
