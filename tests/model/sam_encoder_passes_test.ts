/**
 * The SAM encoder's eighth-session passes give the very values of the code they replace: windowed
 * blocks projecting qkv on the real tokens and padding the partition with the bias (against
 * projecting zero-padded windows), and the windows' probabilities split into heads as a view
 * (against a dense copy). Random weights on a grid that windows pad (18×18 in 14×14 windows, whose bias softmax pads its rows), with and
 * without gradients; bitwise, since every product adds the same terms in the same order.
 */
import { backward, dispatchStats, F, noGrad, type Tensor, tensor, tidy } from "../../engine/mod.ts";
import { deepStrictEqual as assertEquals } from "node:assert";
import { uploadInto } from "../../engine/nn/module.ts";
import {
  ImageEncoderViT,
  setEncoderHeadMajorWindows,
  setEncoderQkvOnTokens,
} from "../../model/sam/image_encoder.ts";
import { setAttentionProbabilityViews } from "../../model/sam/attention.ts";
import type { EncoderConfig } from "../../model/sam/configs.ts";
import { assertClose, randArray, setup } from "../util/gpu.ts";

await setup();

const CFG: EncoderConfig = {
  img_size: 288,
  patch_size: 16,
  embed_dim: 32,
  depth: 2,
  num_heads: 2,
  window_size: 14,
  global_attn_indexes: [1],
  mlp_ratio: 2,
  out_chans: 16,
  use_rel_pos: true,
  layernorm_eps: 1e-6,
};

function encoder(): ImageEncoderViT {
  const enc = new ImageEncoderViT(CFG, 3);
  // Non-zero relative-position tables and position embedding (they start at zero).
  for (const [name, p] of enc.namedParameters()) {
    if (name.includes("rel_pos") || name.includes("pos_embed")) {
      uploadInto(p, randArray(p.size, name.length, -0.5, 0.5));
    }
  }
  return enc.eval();
}

async function both(run: () => Tensor): Promise<[Float32Array, Float32Array]> {
  const out: Float32Array[] = [];
  for (const on of [false, true]) {
    const q = setEncoderQkvOnTokens(on), p = setAttentionProbabilityViews(on);
    const hm = setEncoderHeadMajorWindows(on);
    try {
      const t = tidy(run);
      out.push(await t.data() as Float32Array);
      t.dispose();
    } finally {
      setEncoderQkvOnTokens(q);
      setAttentionProbabilityViews(p);
      setEncoderHeadMajorWindows(hm);
    }
  }
  return [out[0], out[1]];
}

Deno.test("SAM encoder: qkv on tokens with a bias-padded partition, probabilities as views: bitwise the old passes", async () => {
  const enc = encoder();
  const g = CFG.img_size / CFG.patch_size;
  const x = tensor(randArray(g * g * CFG.embed_dim, 5, -2, 2), [1, g, g, CFG.embed_dim]);
  const img = tensor(randArray(3 * CFG.img_size ** 2, 6, -2, 2), [
    1,
    3,
    CFG.img_size,
    CFG.img_size,
  ]);
  try {
    // The two variants do differ: qkv's input (4 padded 14×14 windows, or the 18×18 grid) and the
    // dispatches (a dense copy of the probabilities, or none).
    const qkv = enc.blocks[0].attn.qkv, project = qkv.forward.bind(qkv);
    const seen: string[] = [], dispatches: number[] = [];
    qkv.forward = (t: Tensor) => {
      seen.push(`${t.shape}`);
      return project(t);
    };
    const [a, b] = await both(() => {
      const d0 = dispatchStats().dispatches;
      const y = noGrad(() => enc.blocks[0].forward(x));
      dispatches.push(dispatchStats().dispatches - d0);
      return y;
    });
    qkv.forward = project;
    assertEquals(seen, ["4,14,14,32", "1,18,18,32"]);
    if (!(dispatches[1] < dispatches[0])) {
      throw new Error(`expected fewer dispatches with the views, got ${dispatches}`);
    }
    assertClose(b, a, { atol: 0, rtol: 0, what: "windowed block, no gradient" });
    const [c, d] = await both(() => noGrad(() => enc.forward(img)));
    assertClose(d, c, { atol: 0, rtol: 0, what: "encoder, no gradient" });
    // Under gradients with the qkv bias trainable the old partition runs; with it frozen the new
    // one, and x's gradient is the same either way.
    for (const frozen of [false, true]) {
      enc.blocks[0].attn.qkv.bias!.requiresGrad = !frozen;
      const grads = await both(() => {
        const xg = tensor(randArray(x.size, 8, -2, 2), x.shape);
        xg.requiresGrad = true;
        const y = enc.blocks[0].forward(xg);
        backward(F.sum(F.mul(y, y)));
        return xg.grad!;
      });
      assertClose(grads[1], grads[0], {
        atol: 0,
        rtol: 0,
        what: `x gradient (bias frozen ${frozen})`,
      });
    }
  } finally {
    x.dispose();
    img.dispose();
    enc.dispose();
  }
});
