/**
 * `deno task sam` end to end on the sam-tiny fixture: PNG in, masks/overlay/logits out, compared
 * with the official predictor's outputs; and the CLI's errors for bad flags and missing files.
 */
import assert from "node:assert/strict";
import { encodePng, readPng } from "../../engine/io/png.ts";
import { readSafetensors, toFloat32, writeSafetensors } from "../../engine/io/safetensors.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { assertClose } from "../util/gpu.ts";
import { runCli } from "../util/cli.ts";

const ok = haveFixtures();
const cli = new URL("../../pipeline/cli/sam.ts", import.meta.url).pathname;

const run = (args: string[]) => runCli(cli, args);

/** Temp dir with config.json, image.png and mask_input.safetensors from the fixture. */
async function inputs() {
  const dir = await Deno.makeTempDir({ prefix: "sam_cli_" });
  const cj = JSON.parse(await Deno.readTextFile(fixturePath("sam-tiny", "case.json")));
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      encoder: cj.encoder,
      prompt_encoder: cj.prompt_encoder,
      mask_decoder: cj.mask_decoder,
    }),
  );
  const c = await readSafetensors(fixturePath("sam-tiny", "case.safetensors"));
  await Deno.writeFile(
    `${dir}/image.png`,
    encodePng({ data: c.get("image_u8")!.data as Uint8Array, width: 64, height: 48, channels: 3 }),
  );
  await writeSafetensors(`${dir}/mask_input.safetensors`, { mask_input: c.get("mask_input")! });
  const f = (k: string) => toFloat32(c.get(k)!);
  const pc = f("point_coords"), pl = f("point_labels");
  const points = (n: number) =>
    Array.from({ length: n }, (_, i) => `${pc[2 * i]},${pc[2 * i + 1]},${pl[i]}`).join(";");
  return { dir, c, f, points, box: Array.from(f("box")).join(",") };
}

/** The flags naming the model and the image of `inputs()`, any of them replaced by `o`. */
const base = (
  dir: string,
  o: { checkpoint?: string; config?: string; image?: string } = {},
) => [
  "--checkpoint",
  o.checkpoint ?? fixturePath("sam-tiny", "weights.pth"),
  "--config",
  o.config ?? `${dir}/config.json`,
  "--image",
  o.image ?? `${dir}/image.png`,
];

Deno.test({
  name: "sam CLI: points only, one mask (EP-SAM path) matches the official predictor",
  ignore: !ok,
  fn: async () => {
    const { dir, f, points } = await inputs();
    const out = `${dir}/out1`;
    const r = await run([...base(dir), "--points", points(5), "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    const got = await readSafetensors(`${out}/logits.safetensors`);
    assert.deepEqual(got.get("masks_logits")!.shape, [1, 1, 48, 64]);
    assert.deepEqual(got.get("low_res_logits")!.shape, [1, 1, 32, 32]);
    assert.deepEqual(got.get("iou_predictions")!.shape, [1, 1]);
    assert.deepEqual(got.get("image_embeddings")!.shape, [1, 32, 8, 8]);
    const g = (k: string) => toFloat32(got.get(k)!);
    assertClose(g("image_embeddings"), f("image_embeddings"), {
      atol: 2e-4,
      rtol: 2e-4,
      what: "image_embeddings",
    });
    assertClose(g("low_res_logits"), f("p1_low_res"), {
      atol: 1e-3,
      rtol: 1e-3,
      what: "low_res_logits",
    });
    assertClose(g("iou_predictions"), f("p1_iou"), {
      atol: 1e-4,
      rtol: 1e-3,
      what: "iou_predictions",
    });
    const logits = g("masks_logits");
    assertClose(logits, f("p1_masks_logits"), { atol: 1e-3, rtol: 1e-3, what: "masks_logits" });
    const mask = await readPng(`${out}/mask_0.png`);
    assert.deepEqual([mask.width, mask.height, mask.channels], [64, 48, 1]);
    assert.ok(
      mask.data.every((v, i) => v === (logits[i] > 0 ? 255 : 0)),
      "mask_0.png is logits > 0",
    );
    const ov = await readPng(`${out}/overlay.png`);
    assert.deepEqual([ov.width, ov.height, ov.channels], [64, 48, 3]);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "sam CLI: points + box + mask input, three masks match the official predictor",
  ignore: !ok,
  fn: async () => {
    const { dir, f, points, box } = await inputs();
    const out = `${dir}/out2`;
    const r = await run([
      ...base(dir),
      "--points",
      points(3),
      "--box",
      box,
      "--mask-input",
      `${dir}/mask_input.safetensors`,
      "--multimask",
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const got = await readSafetensors(`${out}/logits.safetensors`);
    const g = (k: string) => toFloat32(got.get(k)!);
    assert.deepEqual(got.get("masks_logits")!.shape, [1, 3, 48, 64]);
    assertClose(g("low_res_logits"), f("p2_low_res"), {
      atol: 1e-3,
      rtol: 1e-3,
      what: "p2 low_res_logits",
    });
    assertClose(g("iou_predictions"), f("p2_iou"), { atol: 1e-4, rtol: 1e-3, what: "p2 iou" });
    assertClose(g("masks_logits"), f("p2_masks_logits"), {
      atol: 1e-3,
      rtol: 1e-3,
      what: "p2 masks_logits",
    });
    for (const k of [0, 1, 2]) assert.ok((await Deno.stat(`${out}/mask_${k}.png`)).isFile);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "sam CLI: bad flags and missing files are reported with the flag and the expected form",
  ignore: !ok,
  fn: async () => {
    const { dir, points } = await inputs();
    const out = `${dir}/out`;
    const cases: [string[], RegExp][] = [
      [
        ["--image", `${dir}/image.png`, "--points", "1,2,1", "--out", out],
        /--checkpoint is required/,
      ],
      [[...base(dir), "--points", "1,2", "--out", out], /--points "1,2".*x,y,label/],
      [[...base(dir), "--points", "1,2,5", "--out", out], /label 0 or 1/],
      [[...base(dir), "--points", "a,2,1", "--out", out], /--points/],
      [[...base(dir), "--box", "5,5,1,1", "--out", out], /--box "5,5,1,1": expected x0,y0,x1,y1/],
      [[...base(dir), "--out", out], /at least one prompt/],
      [[
        ...base(dir),
        "--points",
        points(1),
        "--mask-input",
        `${dir}/nope.safetensors`,
        "--out",
        out,
      ], /--mask-input .*not found/],
      [
        [...base(dir), "--points", points(1), "--mask-input", `${dir}/config.json`, "--out", out],
        /--mask-input/,
      ],
      [
        [...base(dir, { checkpoint: `${dir}/nope.pth` }), "--points", "1,2,1", "--out", out],
        /--checkpoint .*nope\.pth: file not found/,
      ],
      [
        [...base(dir, { image: `${dir}/nope.png` }), "--points", "1,2,1", "--out", out],
        /--image .*nope\.png: file not found/,
      ],
      [
        [...base(dir, { config: "vit_x" }), "--points", "1,2,1", "--out", out],
        /--config vit_x: not one of vit_b/,
      ],
      [[...base(dir), "--frobnicate"], /frobnicate/],
    ];
    for (const [args, re] of cases) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, re, args.join(" "));
    }
    // Nothing was written for failed runs.
    await assert.rejects(Deno.stat(out));
    await Deno.remove(dir, { recursive: true });
  },
});
