/**
 * Where the GPU time of a model case goes: runs one `bench/models.ts` case once to compile, then
 * once under `profileGpu` (every dispatch in its own timestamped pass) and prints milliseconds per
 * kernel key, largest first, with the share of the total.
 *
 * `deno run -A bench/profile.ts "<case name filter>" [--top N] [--batch B]`
 */
import { parseArgs } from "node:util";
import { initGpu, profileGpu, sync } from "../engine/mod.ts";
import { modelCases } from "./models.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { top: { type: "string", default: "25" }, batch: { type: "string", default: "2" } },
});
await initGpu();
const filter = positionals[0] ?? "";
const cases = modelCases(Number(values.batch)).filter((c) => c.name.includes(filter));
if (!cases.length) throw new Error(`no model case matches "${filter}"`);
for (const c of cases) {
  const run = await c.setup();
  await run.step();
  await sync();
  const t0 = performance.now();
  const rows = await profileGpu(() => run.step());
  const wall = performance.now() - t0;
  run.done();
  const total = rows.reduce((s, r) => s + r.ms, 0);
  console.log(
    `\n${c.name}: GPU ${(total / 1000).toFixed(2)} s in ${
      rows.reduce((s, r) => s + r.count, 0)
    } dispatches (wall ${(wall / 1000).toFixed(2)} s, profiled)`,
  );
  for (const r of rows.slice(0, Number(values.top))) {
    console.log(
      `${(r.ms / 1000).toFixed(3).padStart(8)} s ${(100 * r.ms / total).toFixed(1).padStart(5)}% ${
        String(r.count).padStart(5)
      }×  ${r.kernel}`,
    );
  }
}
