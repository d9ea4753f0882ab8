/**
 * The decisions behind every timed figure, on made-up clocks (no GPU): which clock a batch's figure
 * comes from (`pickClock`), and whether a profile's kernel times account for its pass
 * (`accountFor`). tests/bench/timer_test.ts runs the same code on a real kernel.
 */
import { accountFor, pickClock } from "../../engine/dispatch.ts";

function assert(ok: boolean, msg: string): void {
  if (!ok) throw new Error(msg);
}

const reliable = { bracket: true, detail: "probe agreed" };

Deno.test("timestamps within 2× of the wall clock of the same batch are the figure", () => {
  const c = pickClock(reliable, 90, 100);
  assert(c.method === "timestamp" && c.ms === 90 && c.note === "", JSON.stringify(c));
  assert(pickClock(reliable, 51, 100).method === "timestamp", "1.96× apart still agrees");
});

Deno.test("timestamps more than 2× off the wall clock give way to it, and the note says so", () => {
  for (const ts of [0.14, 49, 201, 0, NaN]) {
    const c = pickClock(reliable, ts, 100);
    assert(c.method === "wall" && c.ms === 100, `${ts}: ${JSON.stringify(c)}`);
    assert(/disagree with wall 100 ms \(> 2×\)/.test(c.note), c.note);
  }
});

Deno.test("a failed start-up probe means the wall clock throughout", () => {
  const c = pickClock({ bracket: false, detail: "per-pass 0.13 ms against 154 ms" }, 100, 100);
  assert(c.method === "wall" && /failed the start-up probe \(per-pass/.test(c.note), c.note);
  const none = pickClock(null, null, 7);
  assert(
    none.method === "wall" && none.ms === 7 && /no timestamp-query/.test(none.note),
    none.note,
  );
});

Deno.test("a profile accounts for its pass within 20 % or says how much it cannot", () => {
  assert(accountFor(850, 1000).accounted, "15 % short is accounted for");
  assert(accountFor(1150, 1000).accounted, "15 % over is accounted for");
  const short = accountFor(700, 1000);
  assert(!short.accounted && /cannot account for 0\.30 s \(30 %\)/.test(short.rest), short.rest);
  const over = accountFor(1300, 1000);
  assert(!over.accounted && /exceed the wall time by 0\.30 s \(30 %\)/.test(over.rest), over.rest);
  assert(!accountFor(1000, 1000, "lost device").accounted, "a failed replay accounts for nothing");
});
