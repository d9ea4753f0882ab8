/**
 * Preloaded before every test module (deno.json's test task): fast-check runs with a fixed seed so
 * CI is reproducible; set FC_SEED to explore other seeds (a failure prints the seed to replay).
 */
import fc from "fast-check";

fc.configureGlobal({ seed: Number(Deno.env.get("FC_SEED") ?? 20261125) });

// Default matmul tiles in tests, whatever a developer's tuning cache holds (engine/autotune.ts);
// tests of the tuner itself pass their own cache paths.
if (Deno.env.get("ENGINE_AUTOTUNE") === undefined) Deno.env.set("ENGINE_AUTOTUNE", "off");
