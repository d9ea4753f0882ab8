/**
 * The pipeline config: a `--config` JSON file, or `--set key.path=value` assignments, resolved
 * over the tiny profile by `resolveConfig` (type and range checks, SAM model objects included).
 * An input starting with `--set\n` is a list of assignments, one per line; anything else is the
 * text of a config file. Inputs: generated objects over the real key paths (and prototype keys,
 * unknown keys, wrong types, extreme numbers), generated assignments, and byte mutations.
 */
import fc from "fast-check";
import { InputError } from "../../../engine/io/errors.ts";
import { PROFILES, resolveConfig, smallSam } from "../../../pipeline/config.ts";
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";

/** Every dotted key path of the tiny profile (sam.model's object included). */
function paths(o: unknown, prefix = ""): string[] {
  if (o === null || typeof o !== "object" || Array.isArray(o)) return [prefix];
  return Object.entries(o).flatMap(([k, v]) => paths(v, prefix ? `${prefix}.${k}` : k));
}
const KEYS = [
  ...paths(PROFILES.tiny),
  "__proto__",
  "__proto__.x",
  "constructor",
  "sam.prototype",
  "classifier.toString",
  "nope",
  "sam.model",
  "",
  "a..b",
];

const value = fc.oneof(
  fc.integer({ min: -5, max: 5000 }),
  fc.constantFrom(0, -1, 1e308, -1e308, 2 ** 53, 0.5, 1e-300),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 12 }),
  fc.constantFrom("vit_b", "vit_h", "tiny"),
  fc.array(fc.integer({ min: -2, max: 300 }), { maxLength: 5 }),
  fc.constant(smallSam(64, 32, 2, 32, 4)),
);

/** A config object setting generated values at generated key paths. */
const configObject = fc.array(fc.tuple(fc.constantFrom(...KEYS), value), { maxLength: 8 }).map(
  (sets) => {
    const root: Record<string, unknown> = Object.create(null);
    for (const [path, shared] of sets) {
      const v = structuredClone(shared); // values may be shared objects: never mutate them
      let at = root;
      const parts = path.split(".");
      parts.forEach((p, i) => {
        if (i === parts.length - 1) at[p] = v;
        else {
          const next = at[p];
          at = at[p] = typeof next === "object" && next !== null && !Array.isArray(next)
            ? next as Record<string, unknown>
            : Object.create(null);
        }
      });
    }
    return root;
  },
);

/** A SAM model object with one field changed (the config names sam.model by object too). */
const samModel = fc.tuple(
  fc.constantFrom("encoder", "prompt_encoder", "mask_decoder"),
  fc.constantFrom(
    "img_size",
    "patch_size",
    "embed_dim",
    "num_heads",
    "depth",
    "window_size",
    "global_attn_indexes",
    "mlp_ratio",
    "out_chans",
    "image_embedding_size",
    "mask_in_chans",
    "transformer_dim",
    "attention_downsample_rate",
    "mlp_dim",
  ),
  value,
).map(([section, key, v]) => {
  const m = structuredClone(smallSam(64, 32, 2, 32, 4)) as unknown as Record<
    string,
    Record<string, unknown>
  >;
  m[section][key] = structuredClone(v);
  return { sam: { model: m } };
});

const enc = new TextEncoder();
const asFile = (o: unknown) => enc.encode(JSON.stringify(o));
const assignments = fc.array(
  fc.tuple(fc.constantFrom(...KEYS), fc.oneof(value.map((v) => JSON.stringify(v)), fc.string())),
  { minLength: 1, maxLength: 4 },
).map((sets) => enc.encode(`--set\n${sets.map(([k, v]) => `${k}=${v}`).join("\n")}`));

const seeds = [
  asFile({ classifier: { epochs: 2, layers: [1, 1, 1, 1] }, sam: { lr: 1e-5 } }),
  asFile({ sam: { model: smallSam(64, 32, 2, 32, 4), points: 5 }, iterations: 1 }),
  enc.encode("--set\nsam.lr=0.001\nclassifier.layers=[1,2,1,1]\ndata.dir=null"),
];

let tmp: string | undefined;

const target: FuzzTarget = {
  name: "config",
  description: "config.json / --set assignments → resolveConfig (tiny profile)",
  input: () =>
    fc.oneof(
      { weight: 3, arbitrary: configObject.map(asFile) },
      { weight: 2, arbitrary: samModel.map(asFile) },
      { weight: 2, arbitrary: assignments },
      { weight: 3, arbitrary: fuzzBytes(seeds) },
    ),
  async parse(input) {
    const text = new TextDecoder().decode(input);
    if (text.startsWith("--set\n")) {
      const set = text.slice(6).split("\n").filter((l) => l.length).slice(0, 16);
      await resolveConfig({ profile: "tiny", set });
      return;
    }
    tmp ??= Deno.makeTempFileSync({ suffix: ".json" });
    await Deno.writeFile(tmp, input);
    await resolveConfig({ profile: "tiny", config: tmp });
  },
  isParserError: (e) => e instanceof InputError,
};
export default target;

globalThis.addEventListener("unload", () => {
  if (tmp) Deno.removeSync(tmp);
});
