/**
 * Config keys added since run folders were first written, and the value a run folder whose
 * config.json lacks one ran with: the behaviour of the code that wrote it. A run folder resumes
 * exactly as it was started, so such a key is not a difference from the current config (no
 * `--force`) and does not take the current profile's default either (no silent change of model):
 * it takes this value, at the profile's layer, so `--set`/`--config` still override it and are
 * then refused as a different config. Readers of a run's config (resume, shards, `infer`) all fill
 * absent keys from here.
 *
 * Adding a config key that changes results: add it here with the value that reproduces the code
 * before it (tests/pipeline/config_compat_test.ts fails until every key a first-format config.json
 * lacks is listed).
 */

/** One key added to {@link PipelineConfig} after run folders existed. */
export interface AddedKey {
  /** Dotted path in the config. */
  path: string;
  /** What a run folder made before the key existed ran with. */
  value: boolean | number;
  /** That value in words, for the log line ("resuming with it off"). */
  said: string;
  /** When it was added (date, commit). */
  added: string;
}

/** Every config key added since run folders were first written (2026-11-25, 3faab6b). */
export const ADDED_KEYS: readonly AddedKey[] = [
  {
    // Warm-started SAM iterations trained at the full learning rate before.
    path: "sam.warmStartLrScale",
    value: 1,
    said: "1 (warm-started iterations at the full learning rate)",
    added: "2026-11-25, 4f8f076",
  },
  {
    // Activation checkpointing: the same step to float rounding, not bit for bit.
    path: "classifier.checkpoint",
    value: false,
    said: "off",
    added: "2026-11-26, f648ca1",
  },
  {
    // BatchNorm recalibration before each validation (pipeline/classifier/precise_bn.ts).
    path: "classifier.preciseBn",
    value: false,
    said: "off",
    added: "2026-12-03, 7d07985",
  },
];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The added keys a stored config lacks. Only where the key's parent object is there: a config
 * without the whole `classifier` object is damaged, not old, and stays a difference.
 */
export function absentKeys(stored: Obj): AddedKey[] {
  return ADDED_KEYS.filter((k) => {
    const parts = k.path.split(".");
    let at: unknown = stored;
    for (const p of parts.slice(0, -1)) at = isObj(at) && Object.hasOwn(at, p) ? at[p] : undefined;
    return isObj(at) && !Object.hasOwn(at, parts[parts.length - 1]);
  });
}

/** The keys' old values as a nested partial config ({classifier: {preciseBn: false}}). */
export function oldValues(keys: readonly AddedKey[]): Obj {
  const out: Obj = {};
  for (const k of keys) {
    const parts = k.path.split(".");
    let cur = out;
    for (const p of parts.slice(0, -1)) cur = (cur[p] ??= {}) as Obj;
    cur[parts[parts.length - 1]] = k.value;
  }
  return out;
}

/** A copy of `stored` with its absent added keys filled with their old values. */
export function withOldValues(stored: Obj): Obj {
  const out = structuredClone(stored);
  for (const k of absentKeys(stored)) {
    const parts = k.path.split(".");
    let cur = out;
    for (const p of parts.slice(0, -1)) cur = cur[p] as Obj;
    cur[parts[parts.length - 1]] = k.value;
  }
  return out;
}

/** The log line for a run folder made before `keys` existed (empty when none). */
export function describeOldRun(keys: readonly AddedKey[]): string {
  if (!keys.length) return "";
  return `run made before ${keys.map((k) => k.path).join(", ")} existed: resuming with ` +
    keys.map((k) => keys.length === 1 ? `it ${k.said}` : `${k.path} ${k.said}`).join(", ");
}

/** `{path: value}` of `keys`, as state.json records them. */
export function recordOf(keys: readonly AddedKey[]): Record<string, boolean | number> {
  return Object.fromEntries(keys.map((k) => [k.path, k.value]));
}
