/**
 * One argument and usage pattern for every `deno task` command, so each CLI answers the same way:
 * `--help` prints the usage and exits 0; an unknown flag, a missing or malformed value is a
 * `UsageError`, printed as `<command>: <message>` followed by the usage, exit 2; any other error is
 * printed as `<command>: <message>`, exit 1. Flags are parsed strictly by node:util's parseArgs.
 */
import { parseArgs } from "node:util";

/** A mistake in the command line: reported with the usage, exit status 2. */
export class UsageError extends Error {}

/** One flag, as node:util's parseArgs takes it. */
export interface FlagSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean | string[] | boolean[];
}

/** The parsed flags: strings, booleans, or lists of them where `multiple` is set. */
export type Flags = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface CommandSpec {
  /** The command's name as the user types it after `deno task` (prefixes its messages). */
  name: string;
  /** The whole usage text, printed for --help and after a usage error. */
  usage: string;
  /** Flags; `help` (-h) is added. */
  options: Record<string, FlagSpec>;
  /** Whether positional arguments are allowed (default: no). */
  positionals?: boolean;
}

/**
 * Parses `argv` by `spec` and runs `body`, mapping errors to messages and exit codes as described
 * above. Returns the exit code (the caller passes it to `Deno.exit`).
 */
export async function runCommand(
  spec: CommandSpec,
  argv: string[],
  body: (flags: Flags, positionals: string[]) => Promise<number | void> | number | void,
): Promise<number> {
  let flags: Flags, positionals: string[];
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...spec.options, help: { type: "boolean", short: "h" } },
      allowPositionals: spec.positionals ?? false,
      strict: true,
    });
    flags = parsed.values as Flags;
    positionals = parsed.positionals;
  } catch (e) {
    console.error(`${spec.name}: ${(e as Error).message}\n${spec.usage}`);
    return 2;
  }
  if (flags.help) {
    console.log(spec.usage);
    return 0;
  }
  try {
    return (await body(flags, positionals)) ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${spec.name}: ${e.message}\n${spec.usage}`);
      return 2;
    }
    console.error(`${spec.name}: ${(e as Error).message ?? e}`);
    return 1;
  }
}

/** The string value of a flag that must be given. */
export function requiredFlag(flags: Flags, name: string): string {
  const v = flags[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`--${name} is required`);
  return v;
}

/** An optional string flag (undefined when absent). */
export function stringFlag(flags: Flags, name: string): string | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw new UsageError(`--${name} takes a value`);
  return v;
}

/**
 * A numeric flag checked against its range: absent gives `def`; anything that is not a finite
 * number within [min, max] (and an integer where `integer` is set) is a UsageError naming the flag.
 */
export function numberFlag(
  flags: Flags,
  name: string,
  opts: { def?: number; min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  const raw = stringFlag(flags, name);
  if (raw === undefined) return opts.def;
  const v = Number(raw);
  const { min = -Infinity, max = Infinity, integer = false } = opts;
  if (raw.trim() === "" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"}, got "${raw}"`);
  }
  if (v < min || v > max) {
    const range = max === Infinity
      ? `>= ${min}`
      : min === -Infinity
      ? `<= ${max}`
      : `in [${min}, ${max}]`;
    throw new UsageError(`--${name} must be ${range}, got ${raw}`);
  }
  return v;
}
