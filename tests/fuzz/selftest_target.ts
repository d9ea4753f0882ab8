/**
 * A deliberately broken target for testing the runner itself (not in targets/, so never
 * discovered): inputs are single bytes; 1 hangs, 2 allocates without bound, 3 throws a
 * TypeError (a crash), 4 kills its own process, everything else is refused or accepted (after
 * printing a line that looks like a result, which the runner must ignore).
 */
import fc from "fast-check";
import type { FuzzTarget } from "./target.ts";

class OwnError extends Error {}

const hog: Uint8Array[] = [];

const target: FuzzTarget = {
  name: "selftest",
  description: "runner self-test: hang, blow-up, crash and death on purpose",
  input: () => fc.nat(40).map((n) => new Uint8Array([n])),
  parse(input) {
    switch (input[0]) {
      case 1:
        for (;;) { /* hang */ }
      case 2:
        for (;;) hog.push(new Uint8Array(64 * 2 ** 20).fill(1));
      case 3:
        return (null as unknown as { x: () => void }).x();
      case 4:
        Deno.exit(7);
        break;
      default:
        console.log(`{"i": 0, "outcome": "crash"} stray output of byte ${input[0]}`);
        if (input[0] % 2) throw new OwnError(`refused byte ${input[0]}`);
    }
  },
  isParserError: (e) => e instanceof OwnError,
};
export default target;
