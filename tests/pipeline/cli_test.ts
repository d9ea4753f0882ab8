/**
 * Every `deno task` command answers the same way (pipeline/cli/args.ts): --help prints the usage
 * and exits 0; an unknown flag or a missing required flag prints `<command>: <why>` and the usage
 * and exits 2, before any file is read or the GPU is touched.
 */
import assert from "node:assert/strict";
import { main as classify } from "../../pipeline/cli/classify.ts";
import { main as infer } from "../../pipeline/cli/infer.ts";
import { main as prepare } from "../../pipeline/cli/prepare.ts";
import { main as sam } from "../../pipeline/cli/sam.ts";
import { main as train } from "../../pipeline/cli/train.ts";
import { main as wsi } from "../../pipeline/cli/wsi.ts";

/** Runs a CLI's main with console output captured. */
async function capture(
  main: (argv: string[]) => Promise<number>,
  argv: string[],
): Promise<{ code: number; out: string; err: string }> {
  const log = console.log, error = console.error;
  let out = "", err = "";
  console.log = (...a: unknown[]) => void (out += a.join(" ") + "\n");
  console.error = (...a: unknown[]) => void (err += a.join(" ") + "\n");
  try {
    return { code: await main(argv), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

const COMMANDS: [string, (argv: string[]) => Promise<number>, string[]][] = [
  ["train", train, []],
  ["infer", infer, ["--run", "r"]],
  ["prepare", prepare, ["--dataset", "synthetic"]],
  ["classify", classify, ["--image", "x.png", "--out", "o"]],
  ["sam", sam, ["--image", "x.png", "--out", "o"]],
  ["wsi synth", (a) => wsi(["synth", ...a]), ["--seed", "1"]],
];

Deno.test("CLIs: --help exits 0 with the usage; unknown or missing flags exit 2 with it", async () => {
  for (const [name, main, missing] of COMMANDS) {
    const help = await capture(main, ["--help"]);
    assert.equal(help.code, 0, name);
    assert.match(help.out, /usage: deno task/, name);
    const bad = await capture(main, ["--frobnicate"]);
    assert.equal(bad.code, 2, name);
    assert.match(bad.err, new RegExp(`^${name}: .*frobnicate[^]*usage: deno task`), name);
    if (name === "train") continue; // every train flag is optional
    const short = await capture(main, missing);
    assert.equal(short.code, 2, `${name} ${missing.join(" ")}: ${short.err}`);
    assert.match(short.err, new RegExp(`^${name}: --\\w+.* is required\\n[^]*usage:`), name);
  }
});

Deno.test("wsi: no or an unknown subcommand exits 2 with the usage; a bad integer names its flag", async () => {
  for (const argv of [[], ["frob"]]) {
    const r = await capture(wsi, argv);
    assert.equal(r.code, 2);
    assert.match(r.err, /^wsi: (no command given|unknown command "frob")\nusage:/);
  }
  const r = await capture(wsi, ["synth", "--out", "o", "--seed", "1.5"]);
  assert.equal(r.code, 2);
  assert.match(r.err, /^wsi synth: --seed must be an integer, got "1.5"/);
});
