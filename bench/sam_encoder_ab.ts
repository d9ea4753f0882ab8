/**
 * The SAM encoder's passes A/B, interleaved in one process: "composed" (the views,
 * pads and strided copies, the patch embedding as a conv, the relative-position terms as batched
 * matmuls: the code before issue 16's encoder pass) against "fused" (the one-pass kernels: window
 * partition/unpartition, patch embedding as one linear, relative-position terms in one kernel, LayerNorm rows as vec4s, the scores by the vec4-store
 * scores kernel, the windows' bias softmax over vec4 periods),
 * toggled by `setEncoderComposedPasses`, and "before" (fused as it was before the eighth session:
 * the windowed blocks' qkv on the zero-padded windows, the windows' probabilities copied densely
 * before the product with v, the windows' slices staged window by window). `--variants` picks two or three (default before,fused). Cases: one ViT-B block (global or windowed) on the
 * 64×64 grid, the ViT-B encoder at `--size` (1024 is the real
 * one; smaller sizes keep ViT-B's widths and windows, for iteration) and one pseudo-label (a 512²
 * patch: the encoder @1024 and 50 points through the decoder). Each round runs both (order
 * alternating); printed: medians of the wall clock and of the process's CPU time, their ratios,
 * the load average at each run and the largest difference between the two outputs.
 *
 * `deno run -A bench/sam_encoder_ab.ts --help` for the flags.
 */
import { F, initGpu, noGrad, pool, sync, tensor, tidy } from "../engine/mod.ts";
import { Sam } from "../model/sam/sam.ts";
import { SAM_CONFIGS, type SamConfig } from "../model/sam/configs.ts";
import {
  ImageEncoderViT,
  setEncoderComposedPasses as setComposedModel,
  setEncoderHeadMajorWindows,
  setEncoderQkvOnTokens,
} from "../model/sam/image_encoder.ts";
import { setAttentionProbabilityViews } from "../model/sam/attention.ts";
import { setLayerNormVec4Rows } from "../kernels/norm/layer_norm.ts";
import { loadavg } from "./registry.ts";
import { randomData } from "./models.ts";
import { timeInterleaved } from "./interleaved_ab.ts";
import { pseudoLabelRunner, type Runner } from "./sam_attention.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";

const VARIANTS = ["composed", "before", "fused"] as const;
type Variant = typeof VARIANTS[number];
const CASES = ["encoder", "pseudo-label", "block-global", "block-window"] as const;
type CaseName = typeof CASES[number];

/**
 * Switches every pass the A/B compares: the model's and the engine's (LayerNorm's vec4 rows, the
 * period softmax), and the eighth session's (on in "fused" only).
 */
function setVariant(v: Variant): void {
  const composed = v === "composed";
  setComposedModel(composed);
  setLayerNormVec4Rows(!composed);
  F.setSoftmaxRelBiasPeriods(!composed);
  setEncoderQkvOnTokens(v === "fused");
  setEncoderHeadMajorWindows(v === "fused");
  setAttentionProbabilityViews(v === "fused");
}

/** ViT-B with the encoder's input at `size` (a multiple of 16). */
function vitB(size: number): SamConfig {
  const base = SAM_CONFIGS.vit_b;
  const g = size / 16;
  return {
    ...base,
    encoder: { ...base.encoder, img_size: size },
    prompt_encoder: { ...base.prompt_encoder, image_embedding_size: [g, g] },
  };
}

function setup(name: CaseName, size: number): Runner {
  if (name === "block-global" || name === "block-window") {
    // One ViT-B block on the 64×64 grid of a 1024² input (global: block 2; windowed: block 0).
    const enc = new ImageEncoderViT(vitB(1024).encoder, 0);
    enc.eval();
    const block = enc.blocks[name === "block-global" ? 2 : 0];
    const x = tensor(randomData(64 * 64 * 768, 5, -2, 2), [1, 64, 64, 768]);
    return {
      step: () => Promise.resolve(tidy(() => noGrad(() => block.forward(x)))),
      done: () => {
        x.dispose();
        enc.dispose();
      },
    };
  }
  const sam = new Sam(vitB(name === "pseudo-label" ? 1024 : size), 0);
  sam.eval();
  if (name === "encoder") {
    const x = tensor(randomData(3 * size * size, 3, -2, 2), [1, 3, size, size]);
    return {
      step: () => Promise.resolve(tidy(() => noGrad(() => sam.embed(x)))),
      done: () => {
        x.dispose();
        sam.dispose();
      },
    };
  }
  const p = pseudoLabelRunner(sam);
  return {
    step: p.step,
    done: () => {
      p.done();
      sam.dispose();
    },
  };
}

async function runCase(
  name: CaseName,
  size: number,
  rounds: number,
  variants: readonly Variant[],
): Promise<void> {
  const r = setup(name, size);
  try {
    const t = await timeInterleaved({
      tag: "sam-encoder-ab",
      name,
      variants,
      select: setVariant,
      step: r.step,
      rounds,
    });
    const label = name === "encoder"
      ? `encoder @${size}`
      : name === "pseudo-label"
      ? "pseudo-label (512² patch, 50 points)"
      : `${name} 64×64×768`;
    const [a] = variants;
    const each = variants.map((v) =>
      `${v} ${t.ms[v].toFixed(0)} ms (CPU ${t.cpuMs[v].toFixed(0)})` +
      (v === a
        ? ""
        : `: ${(t.ms[a] / t.ms[v]).toFixed(3)}× wall, ${
          (t.cpuMs[a] / t.cpuMs[v]).toFixed(3)
        }× CPU of ${a}, max |diff| ${t.maxAbsDiff[v].toExponential(2)}`)
    );
    console.log(
      `${label}: ${each.join("; ")} (max |v| ${t.maxAbs.toFixed(3)}); load ${
        Math.min(...t.loads).toFixed(1)
      }–${Math.max(...t.loads).toFixed(1)}, now ${loadavg()}`,
    );
  } finally {
    setVariant("fused");
    r.done();
    await sync();
    pool.trim();
  }
}

const USAGE =
  `usage: deno run -A bench/sam_encoder_ab.ts [--cases LIST] [--variants LIST] [--size S] [--reps N]
  --cases LIST  comma-separated, of ${CASES.join(", ")} (default: encoder)
  --variants LIST  two or three of ${
    VARIANTS.join(", ")
  }, the first the reference (default before,fused)
  --size S      the encoder case's input size, a multiple of 16 from 256 (default 1024)
  --reps N      rounds, each running every variant (default 3)`;

Deno.exit(
  await runCommand(
    {
      name: "bench/sam_encoder_ab.ts",
      usage: USAGE,
      options: {
        cases: { type: "string" },
        variants: { type: "string" },
        size: { type: "string" },
        reps: { type: "string" },
      },
    },
    Deno.args,
    async (flags) => {
      const size = numberFlag(flags, "size", { def: 1024, min: 256, integer: true })!;
      if (size % 16) throw new UsageError(`--size must be a multiple of 16, got ${size}`);
      const reps = numberFlag(flags, "reps", { def: 3, min: 1, integer: true })!;
      const list = (stringFlag(flags, "cases") ?? "encoder").split(",").filter(Boolean);
      for (const c of list) {
        if (!(CASES as readonly string[]).includes(c)) {
          throw new UsageError(`--cases: unknown case "${c}" (known: ${CASES.join(", ")})`);
        }
      }
      const variants = (stringFlag(flags, "variants") ?? "before,fused").split(",")
        .filter(Boolean);
      if (
        variants.length < 2 || new Set(variants).size !== variants.length ||
        variants.some((v) => !(VARIANTS as readonly string[]).includes(v))
      ) {
        throw new UsageError(
          `--variants: two or three distinct of ${VARIANTS.join(", ")}, got "${variants}"`,
        );
      }
      await initGpu();
      console.error(`[sam-encoder-ab] load at start ${loadavg()}`);
      for (const c of list) await runCase(c as CaseName, size, reps, variants as Variant[]);
    },
  ),
);
