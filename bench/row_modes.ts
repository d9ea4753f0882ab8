/**
 * Row kernels' two modes on this adapter (the rule in engine/routing.ts `rowModeFor`): softmax
 * over the row shapes SAM produces, a thread per row against a workgroup of 64 / 256 per row,
 * interleaved (one of each per round, median of the rounds), wall clock around one dispatch and
 * its sync. `deno run -A bench/row_modes.ts --help` for flags.
 */
import { dispatch, empty, grid1d, initGpu, sync, tensor } from "../engine/mod.ts";
import {
  rowItemsPerGroup,
  type RowMode,
  rowModeKey,
  SOFTMAX_UNIFORMS,
  softmaxKernel,
} from "../kernels/softmax.ts";
import { numberFlag, runCommand } from "../pipeline/cli/args.ts";
import { upperMedian } from "./registry.ts";

const USAGE = `usage: deno run -A bench/row_modes.ts [--rounds N]
  --rounds N  interleaved rounds per shape (default 5)`;

/** [rows, L]: decoder image→token and token→image scores, a 64-wide window, ViT-B / decoder LayerNorm widths. */
const SHAPES: [number, number][] = [[32768, 55], [440, 4096], [16384, 64], [4096, 768], [
  4096,
  256,
]];
const MODES: RowMode[] = [{ wg: 0 }, { wg: 64 }, { wg: 256 }];

Deno.exit(
  await runCommand(
    { name: "bench/row_modes.ts", usage: USAGE, options: { rounds: { type: "string" } } },
    Deno.args,
    async (flags) => {
      const rounds = numberFlag(flags, "rounds", { def: 5, min: 1, integer: true })!;
      await initGpu();
      console.log(`load ${(await Deno.readTextFile("/proc/loadavg")).trim()}`);
      for (const [rows, L] of SHAPES) {
        const x = tensor(Float32Array.from({ length: rows * L }, (_, i) => Math.sin(i)), [rows, L]);
        const y = empty([rows, L]);
        const run = (m: RowMode) =>
          dispatch(
            softmaxKernel(false, m),
            [x.binding(), y.binding()],
            SOFTMAX_UNIFORMS.pack({ rows, L, inner: 1 }),
            grid1d(rows, rowItemsPerGroup(m)),
          );
        for (const m of MODES) run(m);
        await sync();
        const times = MODES.map(() => [] as number[]);
        for (let r = 0; r < rounds; r++) {
          for (const [i, m] of MODES.entries()) {
            const t0 = performance.now();
            run(m);
            await sync();
            times[i].push(performance.now() - t0);
          }
        }
        console.log(
          `softmax ${rows} rows × ${L}: ` +
            MODES.map((m, i) => `${rowModeKey(m)} ${upperMedian(times[i]).toFixed(1)} ms`).join(
              ", ",
            ),
        );
        x.dispose();
        y.dispose();
      }
    },
  ),
);
