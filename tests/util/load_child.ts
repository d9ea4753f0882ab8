/**
 * Child process for the hostile-input tests: loads one file with one reader and prints one JSON
 * line `{ok, name, message, hwmMiB}` (the error's class name and message, and the process's own
 * peak RSS at the end). Run through `runChild` (tests/util/child.ts), which bounds its time and
 * memory.
 *
 *   deno run -A tests/util/load_child.ts <reader> <path-or-argument> [option=value ...]
 */
import { loadPth } from "../../engine/io/pth.ts";
import { torchPersistentLoad, unpickle } from "../../engine/io/pth.ts";
import { readSafetensors } from "../../engine/io/safetensors.ts";
import { loadSamConfig } from "../../model/sam/configs.ts";
import { readRunConfig, resolveConfig } from "../../pipeline/config.ts";
import { RunDir } from "../../pipeline/run_dir.ts";

const [reader, arg, ...rest] = Deno.args;
const opts = Object.fromEntries(rest.map((kv) => kv.split("=")));

async function run(): Promise<void> {
  switch (reader) {
    case "pth":
      await loadPth(arg, { verifyCrc: opts.verifyCrc !== "false" });
      return;
    case "unpickle":
      unpickle(await Deno.readFile(arg), { file: arg, persistentLoad: torchPersistentLoad(arg) });
      return;
    case "safetensors":
      await readSafetensors(arg);
      return;
    case "sam-config":
      await loadSamConfig(arg);
      return;
    case "config":
      await resolveConfig({ profile: "tiny", config: arg });
      return;
    case "set":
      await resolveConfig({ profile: "tiny", set: [arg] });
      return;
    case "run-config":
      await readRunConfig(arg);
      return;
    case "run-dir":
      RunDir.open(arg, JSON.parse(opts.config ?? "{}")).close();
      return;
    default:
      throw new Error(`load_child: unknown reader ${reader}`);
  }
}

let result: { ok: boolean; name?: string; message?: string };
try {
  await run();
  result = { ok: true };
} catch (e) {
  result = { ok: false, name: (e as Error)?.name, message: (e as Error)?.message ?? String(e) };
}
// The process's own peak at the end: the parent's polling can miss a spike just before exit.
let hwmMiB = 0;
try {
  const kib = /VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))?.[1];
  hwmMiB = Number(kib ?? 0) / 1024;
} catch { /* no /proc */ }
console.log(JSON.stringify({ ...result, hwmMiB }));
