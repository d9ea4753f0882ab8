/**
 * The fuzz runner's child process: generates the inputs of one target from a seed (input `i`
 * always from the same per-index seed, so a restarted child resumes exactly where the last one
 * was killed) and parses them in order, printing one JSON line per input on stdout:
 *   {"ready": true, "rssKiB": N}                  once the target is loaded
 *   {"i", "outcome", "kind"?, "message"?, "ms", "hwmKiB"}  per input
 * `outcome` is "accepted", "refused" (the parser's own error) or "crash" (anything else).
 * Hangs and memory blow-ups cannot be reported from inside; the parent watches for them.
 *
 *   deno run -A --v8-flags=--expose-gc tests/fuzz/child.ts <target file> <seed> <runs> <start>
 */
import fc from "fast-check";
import type { FuzzTarget } from "./target.ts";
import { inputSeed, MARK, messageKind } from "./kinds.ts";

const [file, seedText, runsText, startText] = Deno.args;
const target = (await import(new URL(file, `file://${Deno.cwd()}/`).href)).default as FuzzTarget;
const seed = Number(seedText), runs = Number(runsText);
const enc = new TextEncoder();
const emit = (o: unknown) => Deno.stdout.writeSync(enc.encode(`\n${MARK}${JSON.stringify(o)}\n`));

/** [VmRSS, VmHWM] of this process in KiB. */
function mem(): [number, number] {
  const s = Deno.readTextFileSync("/proc/self/status");
  const f = (n: string) => Number(new RegExp(`${n}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return [f("VmRSS"), f("VmHWM")];
}

/** Resets VmHWM so each input's peak is its own (Linux >= 4.0; harmless where refused). */
function resetPeak(): void {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
  } catch { /* not permitted: peaks then accumulate */ }
}

const gc = (globalThis as { gc?: () => void }).gc;
const arb = target.input();
const baseline = mem()[0];
let gcAbove = baseline + 64 * 1024;
emit({ ready: true, rssKiB: baseline });
for (let i = Number(startText); i < runs; i++) {
  let input: Uint8Array;
  try {
    input = fc.sample(arb, { seed: inputSeed(seed, i), numRuns: 1 })[0];
  } catch (e) {
    // A bug in the target's generator, not in the parser: reported, never silently skipped.
    emit({ i, outcome: "crash", message: `the target's input generator threw: ${e}`, ms: 0 });
    continue;
  }
  // Garbage from earlier inputs would count as this one's memory: collect it when it piles up.
  if (gc && mem()[0] > gcAbove) {
    gc();
    gcAbove = mem()[0] + 64 * 1024; // V8 keeps the heap it grew: wait for new growth
  }
  resetPeak();
  const t0 = performance.now();
  let outcome: "accepted" | "refused" | "crash" = "accepted";
  let message: string | undefined;
  try {
    await target.parse(input);
  } catch (e) {
    outcome = target.isParserError(e) ? "refused" : "crash";
    message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  const ms = performance.now() - t0;
  emit({
    i,
    outcome,
    kind: message === undefined ? undefined : messageKind(message),
    message: outcome === "crash" ? message?.slice(0, 2000) : undefined,
    ms,
    hwmKiB: mem()[1],
  });
}
