/**
 * The SAM encoder's non-matmul passes A/B, interleaved in one process: "composed" (the views,
 * pads and strided copies, the patch embedding as a conv, the relative-position terms as batched
 * matmuls: the code before issue 16's encoder pass) against "fused" (the one-pass kernels: window
 * partition/unpartition, patch embedding as one linear, relative-position terms in one kernel, LayerNorm rows as vec4s, the scores by the vec4-store
 * scores kernel, the windows' bias softmax over vec4 periods),
 * toggled by `setEncoderComposedPasses`. Cases: one ViT-B block (global or windowed) on the
 * 64×64 grid, the ViT-B encoder at `--size` (1024 is the real
 * one; smaller sizes keep ViT-B's widths and windows, for iteration) and one pseudo-label (a 512²
 * patch: the encoder @1024 and 50 points through the decoder). Each round runs both (order
 * alternating); printed: medians of the wall clock and of the process's CPU time, their ratios,
 * the load average at each run and the largest difference between the two outputs.
 *
 * `deno run -A bench/sam_encoder_ab.ts --help` for the flags.
 */
import { F, initGpu, noGrad, pool, sync, type Tensor, tensor, tidy } from "../engine/mod.ts";
import { Sam } from "../model/sam/sam.ts";
import { SAM_CONFIGS, type SamConfig } from "../model/sam/configs.ts";
import { SamPredictor } from "../model/sam/predictor.ts";
import {
  ImageEncoderViT,
  setEncoderComposedPasses as setComposedModel,
} from "../model/sam/image_encoder.ts";
import { setLayerNormVec4Rows } from "../kernels/norm/layer_norm.ts";

/** Every pass the A/B compares: the model's and the engine's (LayerNorm's vec4 rows). */
function setEncoderComposedPasses(on: boolean): void {
  setComposedModel(on);
  setLayerNormVec4Rows(!on);
  F.setSoftmaxRelBiasPeriods(!on);
}
import { loadavg, median, processCpuMs } from "./registry.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";

const VARIANTS = ["composed", "fused"] as const;
type Variant = typeof VARIANTS[number];
const CASES = ["encoder", "pseudo-label", "block-global", "block-window"] as const;
type CaseName = typeof CASES[number];

function randomData(n: number, seed: number, lo = 0, hi = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = lo + (s / 4294967296) * (hi - lo);
  }
  return a;
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

interface Runner {
  step: () => Promise<Tensor>;
  done: () => void;
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
  const orig = 512, nPoints = 50;
  const predictor = new SamPredictor(sam);
  const img = Uint8Array.from(randomData(orig * orig * 3, 11, 0, 255), Math.floor);
  const pointCoords = randomData(nPoints * 2, 13, 0, orig - 1);
  const pointLabels = new Float32Array(nPoints).fill(1);
  return {
    step: () => {
      predictor.setImage(img, orig, orig);
      const r = predictor.predict({ pointCoords, pointLabels, multimask: false });
      r.lowResLogits.dispose();
      r.iou.dispose();
      return Promise.resolve(r.masksLogits);
    },
    done: () => {
      predictor.dispose();
      sam.dispose();
    },
  };
}

async function runCase(name: CaseName, size: number, reps: number): Promise<void> {
  const r = setup(name, size);
  const runs: Record<Variant, number[]> = { composed: [], fused: [] };
  const cpu: Record<Variant, number[]> = { composed: [], fused: [] };
  const last: Record<Variant, Tensor | null> = { composed: null, fused: null };
  try {
    for (const v of VARIANTS) {
      // Warm-up: compiles each variant's pipelines.
      setEncoderComposedPasses(v === "composed");
      (await r.step()).dispose();
      await sync();
    }
    for (let i = 0; i < reps; i++) {
      for (const v of i % 2 ? VARIANTS.slice().reverse() : VARIANTS) {
        setEncoderComposedPasses(v === "composed");
        last[v]?.dispose();
        await sync();
        const c0 = processCpuMs(), t0 = performance.now();
        last[v] = await r.step();
        await sync();
        const ms = performance.now() - t0, c = processCpuMs() - c0;
        runs[v].push(ms);
        cpu[v].push(c);
        console.error(
          `[sam-encoder-ab] ${name} ${v} ${ms.toFixed(0)} ms, CPU ${
            c.toFixed(0)
          } ms (load ${loadavg()})`,
        );
      }
    }
    const [a, b] = await Promise.all(VARIANTS.map((v) => last[v]!.data())) as Float32Array[];
    let diff = 0, mx = 0;
    for (let i = 0; i < a.length; i++) {
      diff = Math.max(diff, Math.abs(a[i] - b[i]));
      mx = Math.max(mx, Math.abs(a[i]));
    }
    const m = (v: Variant) => median(runs[v]), mc = (v: Variant) => median(cpu[v]);
    const label = name === "encoder"
      ? `encoder @${size}`
      : name === "pseudo-label"
      ? "pseudo-label (512² patch, 50 points)"
      : `${name} 64×64×768`;
    console.log(
      `${label}: composed ${m("composed").toFixed(0)} ms (CPU ${
        mc("composed").toFixed(0)
      }), fused ${m("fused").toFixed(0)} ms (CPU ${mc("fused").toFixed(0)}): ${
        (m("composed") / m("fused")).toFixed(2)
      }× wall, ${(mc("composed") / mc("fused")).toFixed(2)}× CPU; max |diff| ${
        diff.toExponential(2)
      } (max |v| ${mx.toFixed(3)}); load now ${loadavg()}`,
    );
  } finally {
    for (const v of VARIANTS) last[v]?.dispose();
    setEncoderComposedPasses(false);
    r.done();
    await sync();
    pool.trim();
  }
}

const USAGE = `usage: deno run -A bench/sam_encoder_ab.ts [--cases LIST] [--size S] [--reps N]
  --cases LIST  comma-separated, of ${CASES.join(", ")} (default: encoder)
  --size S      the encoder case's input size, a multiple of 16 from 256 (default 1024)
  --reps N      rounds, each running both variants (default 3)`;

Deno.exit(
  await runCommand(
    {
      name: "bench/sam_encoder_ab.ts",
      usage: USAGE,
      options: { cases: { type: "string" }, size: { type: "string" }, reps: { type: "string" } },
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
      await initGpu();
      console.error(`[sam-encoder-ab] load at start ${loadavg()}`);
      for (const c of list) await runCase(c as CaseName, size, reps);
    },
  ),
);
