/**
 * Preloaded before every test module (deno.json's test task): fast-check runs with a fixed seed so
 * CI is reproducible; set FC_SEED to explore other seeds (a failure prints the seed to replay).
 */
import fc from "fast-check";

fc.configureGlobal({ seed: Number(Deno.env.get("FC_SEED") ?? 20261125) });
