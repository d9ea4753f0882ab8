/** `deno task classify` on the resnet-adl-tiny fixture: outputs exist and agree with PyTorch. */
import assert from "node:assert/strict";
import { readSafetensors, toFloat32 } from "../../engine/io/safetensors.ts";
import { writePng } from "../../engine/io/png.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";
import { assertClose } from "../util/gpu.ts";
import { runCli } from "../util/cli.ts";

Deno.test({
  name: "classify CLI writes logit, raw CAM, CAM mask and overlays matching the fixture",
  ignore: !haveFixtures(),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const c = await readSafetensors(fixturePath("resnet-adl-tiny", "case.safetensors"));
    await writePng(`${dir}/patch.png`, {
      data: c.get("cam_image_u8")!.data as Uint8Array,
      width: 128,
      height: 128,
      channels: 3,
    });
    const cli = new URL("../../pipeline/cli/classify.ts", import.meta.url).pathname;
    const run = (args: string[]) => runCli(cli, args);
    const r = await run([
      "--checkpoint",
      fixturePath("resnet-adl-tiny", "weights.pth"),
      "--layers",
      "1,1,2,3",
      "--width",
      "16",
      "--image",
      `${dir}/patch.png`,
      "--dataset",
      "camelyon16",
      "--out",
      `${dir}/out`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = await readSafetensors(`${dir}/out/cam.safetensors`);
    assertClose(toFloat32(out.get("logit")!), toFloat32(c.get("cam_image_logit")!), {
      atol: 1e-4,
      rtol: 1e-4,
      what: "logit",
    });
    assertClose(toFloat32(out.get("cam_raw")!), toFloat32(c.get("cam_image_cam_raw")!), {
      atol: 1e-4,
      rtol: 1e-4,
      what: "cam_raw",
    });
    assertClose(toFloat32(out.get("cam_norm")!), toFloat32(c.get("cam_norm_camelyon16")!), {
      atol: 1e-5,
      rtol: 1e-5,
      what: "cam_norm",
    });
    for (const f of ["mask.png", "cam_overlay.png"]) {
      assert.ok((await Deno.stat(`${dir}/out/${f}`)).size > 0);
    }
    const bad = await run([
      "--checkpoint",
      "x.pth",
      "--image",
      `${dir}/patch.png`,
      "--dataset",
      "camelyon18",
      "--out",
      dir,
    ]);
    assert.equal(bad.code, 2);
    assert.match(
      bad.stderr,
      /--dataset must be camelyon16 or camelyon17/,
    );
    await Deno.remove(dir, { recursive: true });
  },
});
