/**
 * Child for the lock-takeover test: waits for a shared start instant, opens the run folder, and
 * prints "won" (then holds the lock a moment) or "lost: <message>".
 *
 *   deno run -A tests/util/lock_taker.ts <dir> <start epoch ms>
 */
import { RunDir } from "../../pipeline/run_dir.ts";

const [dir, start] = Deno.args;
while (Date.now() < Number(start)) { /* spin: all takers leave this loop together */ }
try {
  const run = RunDir.open(dir, {});
  console.log("won");
  await new Promise((r) => setTimeout(r, 700));
  run.close();
} catch (e) {
  console.log(`lost: ${(e as Error).message}`);
}
