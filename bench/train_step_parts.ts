/**
 * The parts of a ResNet-50-ADL training step that the "Training step" work changed, before/after in
 * ONE process, interleaved (as bench/train_step_ab.ts: `--base DIR` is another checkout, each side
 * with its own engine and device): BatchNorm forward + backward with ReLU, the passes of 1×1 convs
 * (texture packs) and a strided 1×1 conv's input gradient, ADL's broadcast multiply and channel
 * mean, the stem's max pool and the head's global average pool with their gradients, an Adam step. Each figure is this process's CPU time (all threads) for `reps` calls and a
 * sync, median of `--runs`; on a shared machine CPU time is far steadier than the wall clock.
 *
 *   deno run -A bench/train_step_parts.ts --base /tmp/base [--runs 5] [--filter bn|conv|adl|adam]
 */
import { numberFlag, requiredFlag, runCommand, stringFlag } from "../pipeline/cli/args.ts";
import { importFromCheckout } from "./checkout.ts";
import { loadavg, processCpuMs, upperMedian } from "./registry.ts";

const USAGE = `usage: deno run -A bench/train_step_parts.ts --base DIR [--runs N] [--filter S]
  --base DIR   another checkout of this repository (the "before")
  --runs N     interleaved runs per side (default 5)
  --filter S   only parts whose names contain S`;

const rnd = (n: number, s: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + s));
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

// deno-lint-ignore no-explicit-any
type Engine = any;

interface Part {
  name: string;
  /** Builds the work on one side's engine: a function that launches it `reps` times. */
  make: (e: Engine, conv: Engine, optim: Engine) => () => void;
}

/**
 * BatchNorm + ReLU forward and backward: as one op (`relu` option) on a side whose batchNorm2d has
 * it, else F.relu after it (what ResNet-ADL runs on each side).
 */
function bnPart(shape: number[]): Part {
  return {
    name: `bn+relu fwd+bwd [${shape}] x4`,
    make: (e) => {
      const x = e.requireGrad(e.tensor(rnd(numel(shape), 1), shape));
      const w = e.requireGrad(e.tensor(new Float32Array(shape[1]).fill(1.1), [shape[1]]));
      const gy = e.tensor(rnd(numel(shape), 2), shape);
      const fused = String(e.F.batchNorm2d).includes("opts.relu");
      const f = () =>
        fused
          ? e.F.batchNorm2d(x, { weight: w, training: true, relu: true })
          : e.F.relu(e.F.batchNorm2d(x, { weight: w, training: true }));
      return () => {
        for (let r = 0; r < 4; r++) {
          e.tidy(() => e.backward(f(), gy));
          x.grad.dispose();
          x.grad = null;
          w.grad.dispose();
          w.grad = null;
        }
      };
    },
  };
}

/** A conv geometry's parts, one per pass in `passes`' order (forward, input or weight gradient). */
function convParts(
  label: string,
  xs: number[],
  ws: number[],
  o: Record<string, number>,
  passes: ("forward" | "input" | "weight")[],
): Part[] {
  return passes.map((pass) => ({
    name: `conv ${label} ${pass} x4`,
    make: (e, conv) => {
      const x = e.tensor(rnd(numel(xs), 1), xs);
      const w = e.tensor(rnd(numel(ws), 2), ws);
      const g = conv.conv2dGeometry("conv2d", x, w, null, o);
      const dy = e.tensor(rnd(g.N * g.O * g.OH * g.OW, 3), [g.N, g.O, g.OH, g.OW]);
      const f = pass === "forward"
        ? () => conv.conv2dForwardRaw(x, w, null, g)
        : pass === "input"
        ? () => conv.conv2dBackwardDataRaw(dy, w, null, g)
        : () => conv.conv2dBackwardWeightRaw(x, dy, g);
      return () => {
        for (let r = 0; r < 4; r++) f().dispose();
      };
    },
  }));
}

const PARTS: Part[] = [
  bnPart([2, 2048, 16, 16]),
  bnPart([2, 256, 64, 64]),
  ...convParts("1x1 256->64 @64²", [2, 256, 64, 64], [64, 256, 1, 1], {}, [
    "forward",
    "input",
    "weight",
  ]),
  ...convParts("1x1/2 256->512 @64²", [2, 256, 64, 64], [512, 256, 1, 1], { stride: 2 }, [
    "input",
  ]),
  ...convParts("3x3/2 128->128 @64²", [2, 128, 64, 64], [128, 128, 3, 3], {
    stride: 2,
    padding: 1,
  }, ["input"]),
  ...convParts("stem 7x7/2 4->64 @256²", [2, 4, 256, 256], [64, 4, 7, 7], {
    stride: 2,
    padding: 3,
  }, ["forward", "weight"]),
  {
    name: "adl x·m [2,2048,16,16]·[2,1,16,16] x10",
    make: (e) => {
      const x = e.tensor(rnd(2 * 2048 * 256, 1), [2, 2048, 16, 16]);
      const m = e.tensor(rnd(2 * 256, 2), [2, 1, 16, 16]);
      return () => {
        for (let r = 0; r < 10; r++) e.F.mul(x, m).dispose();
      };
    },
  },
  {
    name: "adl channel mean [2,2048,16,16] x10",
    make: (e) => {
      const x = e.tensor(rnd(2 * 2048 * 256, 1), [2, 2048, 16, 16]);
      return () => {
        for (let r = 0; r < 10; r++) e.F.mean(x, 1, true).dispose();
      };
    },
  },
  {
    name: "stem maxpool 3x3/2 fwd+bwd [2,64,128,128] x4",
    make: (e) => {
      const shape = [2, 64, 128, 128];
      const x = e.requireGrad(e.tensor(rnd(numel(shape), 1), shape));
      const gy = e.tensor(rnd(numel([2, 64, 64, 64]), 2), [2, 64, 64, 64]);
      return () => {
        for (let r = 0; r < 4; r++) {
          e.tidy(() => e.backward(e.F.maxPool2d(x, { kernel: 3, stride: 2, padding: 1 }), gy));
          x.grad.dispose();
          x.grad = null;
        }
      };
    },
  },
  {
    name: "global avgpool fwd+bwd [2,2048,16,16] x10",
    make: (e) => {
      const shape = [2, 2048, 16, 16];
      const x = e.requireGrad(e.tensor(rnd(numel(shape), 1), shape));
      const gy = e.tensor(rnd(4096, 2), [2, 2048, 1, 1]);
      return () => {
        for (let r = 0; r < 10; r++) {
          e.tidy(() => e.backward(e.F.adaptiveAvgPool2d(x, [1, 1]), gy));
          x.grad.dispose();
          x.grad = null;
        }
      };
    },
  },
  {
    name: "adam step, 4 parameters of 2^20 x4",
    make: (e, _conv, optim) => {
      const ps = [0, 1, 2, 3].map((i) => e.requireGrad(e.tensor(rnd(1 << 20, i), [1 << 20])));
      const opt = new optim.Adam(ps, { lr: 1e-4, weightDecay: 1e-4 });
      for (const p of ps) p.grad = e.tensor(rnd(1 << 20, 9), [1 << 20]);
      return () => {
        for (let r = 0; r < 4; r++) opt.step();
      };
    },
  },
];

Deno.exit(
  await runCommand(
    {
      name: "bench/train_step_parts.ts",
      usage: USAGE,
      options: { base: { type: "string" }, runs: { type: "string" }, filter: { type: "string" } },
    },
    Deno.args,
    async (flags) => {
      const base = requiredFlag(flags, "base");
      const runs = numberFlag(flags, "runs", { def: 5, min: 1, integer: true })!;
      const filter = stringFlag(flags, "filter") ?? "";
      const here = new URL("..", import.meta.url).pathname;
      const sides: { e: Engine; conv: Engine; optim: Engine }[] = [];
      for (const root of [base, here]) {
        const e = await importFromCheckout(root, "engine/mod.ts");
        await e.initGpu();
        sides.push({
          e,
          conv: await importFromCheckout(root, "engine/ops/conv.ts"),
          optim: await importFromCheckout(root, "engine/optim/adam.ts"),
        });
      }
      console.log(`CPU ms per part (medians of ${runs}, interleaved), load ${loadavg()}`);
      for (const part of PARTS.filter((p) => p.name.includes(filter))) {
        const fs = sides.map((s) => part.make(s.e, s.conv, s.optim));
        const t: number[][] = [[], []];
        for (let r = -1; r < runs; r++) {
          for (let i = 0; i < 2; i++) {
            const c0 = processCpuMs();
            fs[i]();
            await sides[i].e.sync();
            if (r >= 0) t[i].push(processCpuMs() - c0); // r = -1: warm-up (pipelines compiled)
          }
        }
        const [a, b] = t.map(upperMedian);
        console.log(
          `${part.name.padEnd(44)} before ${String(a).padStart(6)}  after ${
            String(b).padStart(6)
          }  ${(a / Math.max(b, 1)).toFixed(2)}×  (load ${loadavg()})`,
        );
      }
    },
  ),
);
