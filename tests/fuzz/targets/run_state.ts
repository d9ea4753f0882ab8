/**
 * A run folder's `state.json`, as `RunDir.open` reads it: JSON with bounded nesting, then every
 * field checked (`parseRunJson` + `validateRunState`). Inputs: generated states with hostile
 * values in each field (null stages, unknown statuses, negative epochs, prototype-named stages),
 * and byte mutations of valid ones.
 */
import fc from "fast-check";
import { InputError } from "../../../engine/io/errors.ts";
import { parseRunJson, validateRunState } from "../../../pipeline/run_dir.ts";
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";

const enc = new TextEncoder();
const odd = fc.oneof(
  fc.constantFrom<unknown>(null, true, 0, -1, 1.5, "", "done", [], {}, 2 ** 60),
  fc.string({ maxLength: 6 }),
);
const stage = fc.record({
  status: fc.oneof(fc.constantFrom("pending", "running", "done"), odd),
  epoch: fc.oneof(fc.nat(50), odd),
  step: fc.oneof(fc.nat(50), odd),
  updated: fc.oneof(fc.constant("2026-01-01T00:00:00Z"), odd),
}, { requiredKeys: ["status"] });
const state = fc.record({
  version: fc.oneof(fc.constant(1), odd),
  created: fc.oneof(fc.constant("2026-01-01T00:00:00Z"), odd),
  updated: fc.oneof(fc.constant("2026-01-01T00:00:00Z"), odd),
  stages: fc.oneof(
    {
      weight: 4,
      arbitrary: fc.dictionary(
        fc.oneof(fc.constantFrom("classifier", "iter_1", "__proto__", "constructor"), fc.string()),
        fc.oneof({ weight: 4, arbitrary: stage }, { weight: 1, arbitrary: odd }),
        { maxKeys: 5 },
      ),
    },
    { weight: 1, arbitrary: odd },
  ),
}, { requiredKeys: [] });

const seeds = [
  enc.encode(JSON.stringify({
    version: 1,
    created: "2026-01-01T00:00:00Z",
    updated: "2026-01-01T00:00:00Z",
    stages: { dataset: { status: "done" }, classifier: { status: "running", epoch: 3 } },
  })),
];

const target: FuzzTarget = {
  name: "run_state",
  description: "state.json of a run folder → parseRunJson + validateRunState",
  input: () =>
    fc.oneof(
      { weight: 3, arbitrary: state.map((s) => enc.encode(JSON.stringify(s))) },
      {
        weight: 1,
        arbitrary: fc.nat(100_000).map((n) => enc.encode("[".repeat(n) + "]".repeat(n))),
      },
      { weight: 3, arbitrary: fuzzBytes(seeds) },
    ),
  parse(input) {
    const file = "<fuzz>/state.json";
    validateRunState(parseRunJson(new TextDecoder().decode(input), file), file);
  },
  isParserError: (e) => e instanceof InputError,
};
export default target;
