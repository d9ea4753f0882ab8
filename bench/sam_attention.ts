/**
 * SAM attention paths A/B, interleaved in one process: the composed path (the default on software
 * adapters: texture matmuls + bias softmax through buffers) against the opt-in texture path
 * (engine/ops/attention_texture.ts), on one ViT-B global-attention block's attention alone and the
 * whole block, one windowed block, the whole encoder @1024 and one pseudo-label (encoder + 50
 * points, 512² patch), all without gradients. Each round runs both paths (order alternating per
 * round); printed: the median per path of the wall clock and of the process's CPU time (the
 * rasteriser's threads included: less moved by other processes' load), their ratios, the load
 * average at each run, the peak GPU memory in tensors and the largest difference between the two
 * paths' outputs. `--peers` adds PyTorch CPU (2 threads) on the block and encoder cases, in the
 * same process run.
 *
 * `deno run -A bench/sam_attention.ts --help` for the flags.
 */
import { F, initGpu, noGrad, pool, sync, type Tensor, tensor, tidy } from "../engine/mod.ts";
import { type AttentionImpl, setAttentionImpl } from "../engine/routing.ts";
import { Sam } from "../model/sam/sam.ts";
import { SAM_CONFIGS } from "../model/sam/configs.ts";
import { SamPredictor } from "../model/sam/predictor.ts";
import { attention } from "../model/sam/attention.ts";
import { randomData } from "./models.ts";
import { timeInterleaved } from "./interleaved_ab.ts";
import { runTorchPeer } from "./peers/torch.ts";
import { numberFlag, runCommand, stringFlag, UsageError } from "../pipeline/cli/args.ts";
import { writeFileAtomic } from "../engine/io/atomic.ts";

const PATHS: readonly AttentionImpl[] = ["composed", "texture"];
const CASES = [
  "attention-global",
  "block-global",
  "block-window",
  "encoder",
  "pseudo-label",
] as const;
type CaseName = typeof CASES[number];
const PEER: Partial<Record<CaseName, string>> = {
  "block-global": "sam_block_global",
  "block-window": "sam_block_window",
  encoder: "sam_encoder",
};

export interface Runner {
  /** One run; returns the output to compare across paths (read back after timing). */
  step: () => Promise<Tensor>;
  done: () => void;
}

function setupCase(name: CaseName, sam: Sam): Runner {
  const enc = sam.imageEncoder, cfg = enc.cfg;
  const g = cfg.img_size / cfg.patch_size, d = cfg.embed_dim;
  if (name === "attention-global") {
    // The attention alone as the global block runs it: 12 heads of 4096 tokens, strided views of
    // a qkv projection, the relative-position terms of 64×64 tables.
    const nh = cfg.num_heads, hd = d / nh;
    const proj = tensor(randomData(g * g * 3 * d, 5, -2, 2), [1, g * g, 3 * d]);
    const rh = tensor(randomData(g * g * hd, 6, -1, 1), [g, g, hd]);
    const rw = tensor(randomData(g * g * hd, 7, -1, 1), [g, g, hd]);
    return {
      step: () =>
        Promise.resolve(tidy(() =>
          noGrad(() => {
            const qkv = F.permute(F.reshape(proj, [1, g * g, 3, nh, hd]), [2, 0, 3, 1, 4]);
            const [q, k, v] = [0, 1, 2].map((i) => F.select(qkv, 0, i));
            return F.dense(attention(q, k, v, hd ** -0.5, { rh, rw, qh: g, qw: g }));
          })
        )),
      done: () => [proj, rh, rw].forEach((t) => t.dispose()),
    };
  }
  if (name === "block-global" || name === "block-window") {
    const block = enc.blocks[name === "block-global" ? cfg.global_attn_indexes[0] : 0];
    const x = tensor(randomData(g * g * d, 5, -1, 1), [1, g, g, d]);
    return {
      step: () => Promise.resolve(tidy(() => noGrad(() => block.forward(x)))),
      done: () => x.dispose(),
    };
  }
  if (name === "encoder") {
    const S = cfg.img_size;
    const x = tensor(randomData(3 * S * S, 3, -2, 2), [1, 3, S, S]);
    return {
      step: () => Promise.resolve(tidy(() => noGrad(() => sam.embed(x)))),
      done: () => x.dispose(),
    };
  }
  return pseudoLabelRunner(sam);
}

/**
 * One pseudo-label as the pipeline makes it: a 512² patch through the encoder @1024, 50 positive
 * points through the decoder, the mask read back (also bench/sam_encoder_ab.ts's case).
 */
export function pseudoLabelRunner(sam: Sam): Runner {
  const orig = 512, nPoints = 50;
  const predictor = new SamPredictor(sam);
  const img = Uint8Array.from(randomData(orig * orig * 3, 11, 0, 255), Math.floor);
  const pointCoords = randomData(nPoints * 2, 13, 0, orig - 1);
  const pointLabels = new Float32Array(nPoints).fill(1);
  return {
    step: async () => {
      predictor.setImage(img, orig, orig);
      const r = predictor.predict({ pointCoords, pointLabels, multimask: false });
      // Read back, as the pseudo-label pass does.
      await r.masksLogits.data();
      r.lowResLogits.dispose();
      r.iou.dispose();
      return r.masksLogits;
    },
    done: () => predictor.dispose(),
  };
}

interface Row {
  case: CaseName;
  ms: Record<string, number>;
  runs: Record<string, number[]>;
  /** CPU time of the process per run: less moved by other processes' load than the wall clock. */
  cpuMs: Record<string, number>;
  cpuRuns: Record<string, number[]>;
  cpuRatio: number;
  loads: number[];
  peakMB: Record<string, number>;
  ratio: number;
  maxAbsDiff: number;
  maxAbs: number;
  pytorchMs?: number | null;
}

async function runCase(name: CaseName, sam: Sam, reps: number, warmup: boolean): Promise<Row> {
  const r = setupCase(name, sam);
  try {
    const t = await timeInterleaved({
      tag: "sam-attention",
      name,
      variants: PATHS,
      select: setAttentionImpl,
      step: r.step,
      rounds: reps,
      warmup,
    });
    return {
      case: name,
      ms: t.ms,
      runs: t.runs,
      cpuMs: t.cpuMs,
      cpuRuns: t.cpuRuns,
      cpuRatio: t.cpuMs.composed / t.cpuMs.texture,
      loads: t.loads,
      peakMB: t.peakMB,
      ratio: t.ms.composed / t.ms.texture,
      maxAbsDiff: t.maxAbsDiff.texture,
      maxAbs: t.maxAbs,
    };
  } finally {
    r.done();
    setAttentionImpl(null);
    await sync();
    pool.trim();
  }
}

const USAGE =
  `usage: deno run -A bench/sam_attention.ts [--cases LIST] [--reps N] [--peers] [--json FILE]
  --cases LIST  comma-separated, of ${CASES.join(", ")} (default: all)
  --reps N      rounds per case, each running both paths (default 3)
  --peers       PyTorch CPU (2 threads) on the block and encoder cases, after ours
  --json FILE   also write the rows as JSON`;

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      {
        name: "bench/sam_attention.ts",
        usage: USAGE,
        options: {
          cases: { type: "string" },
          reps: { type: "string" },
          peers: { type: "boolean" },
          quick: { type: "boolean" },
          json: { type: "string" },
        },
      },
      Deno.args,
      async (flags) => {
        const list = (stringFlag(flags, "cases") ?? CASES.join(",")).split(",").filter(Boolean);
        for (const c of list) {
          if (!(CASES as readonly string[]).includes(c)) {
            throw new UsageError(`--cases: unknown case "${c}" (known: ${CASES.join(", ")})`);
          }
        }
        const reps = numberFlag(flags, "reps", { def: 3, min: 1, integer: true })!;
        await initGpu();
        const sam = new Sam(SAM_CONFIGS.vit_b, 0);
        sam.eval();
        const rows: Row[] = [];
        try {
          for (const c of list as CaseName[]) {
            const big = c === "encoder" || c === "pseudo-label";
            rows.push(await runCase(c, sam, reps, !(flags.quick && big)));
          }
        } finally {
          sam.dispose();
        }
        if (flags.peers) {
          const ids = rows.map((r) => PEER[r.case]).filter((x): x is string => !!x);
          const timed = await runTorchPeer(ids, Math.min(reps, 3));
          for (const r of rows) {
            const p = PEER[r.case] ? timed.get(PEER[r.case]!) : undefined;
            r.pytorchMs = p && !p.error && p.ms > 0 ? p.ms : null;
            if (p?.error) console.error(`[sam-attention] PyTorch ${r.case}: ${p.error}`);
          }
        }
        for (const r of rows) {
          const torch = r.pytorchMs
            ? `  PyTorch ${r.pytorchMs.toFixed(0)} ms (texture ${
              (r.ms.texture / r.pytorchMs).toFixed(2)
            }×)`
            : "";
          console.log(
            `${r.case.padEnd(13)} composed ${r.ms.composed.toFixed(0).padStart(7)} ms  texture ${
              r.ms.texture.toFixed(0).padStart(7)
            } ms  ratio ${r.ratio.toFixed(2)}×  CPU ${r.cpuMs.composed.toFixed(0)}/${
              r.cpuMs.texture.toFixed(0)
            } ms ratio ${r.cpuRatio.toFixed(2)}×  peak ${r.peakMB.composed.toFixed(0)}/${
              r.peakMB.texture.toFixed(0)
            } MB  max|diff| ${r.maxAbsDiff.toExponential(2)} of max|v| ${
              r.maxAbs.toPrecision(3)
            }  load ${Math.min(...r.loads).toFixed(1)}–${Math.max(...r.loads).toFixed(1)}${torch}`,
          );
        }
        if (flags.json) await writeFileAtomic(flags.json as string, JSON.stringify(rows, null, 2));
        return 0;
      },
    ),
  );
}
