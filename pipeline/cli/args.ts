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

/** The value one flag spec parses to. */
type FlagValue<S extends FlagSpec> = S["type"] extends "string"
  ? (S["multiple"] extends true ? string[] : string)
  : (S["multiple"] extends true ? boolean[] : boolean);

/** The parsed flags of an options table, typed per flag (absent flags are undefined). */
export type ParsedFlags<O extends Record<string, FlagSpec>> =
  & { [K in keyof O]?: FlagValue<O[K]> }
  & { help?: boolean };

export interface CommandSpec<O extends Record<string, FlagSpec> = Record<string, FlagSpec>> {
  /** The command's name as the user types it after `deno task` (prefixes its messages). */
  name: string;
  /** The whole usage text, printed for --help and after a usage error. */
  usage: string;
  /** Flags; `help` (-h) is added. */
  options: O;
  /** Whether positional arguments are allowed (default: no). */
  positionals?: boolean;
}

/**
 * Parses `argv` by `spec` and runs `body`, mapping errors to messages and exit codes as described
 * above. Returns the exit code (the caller passes it to `Deno.exit`).
 */
export async function runCommand<O extends Record<string, FlagSpec>>(
  spec: CommandSpec<O>,
  argv: string[],
  body: (flags: ParsedFlags<O>, positionals: string[]) => Promise<number | void> | number | void,
): Promise<number> {
  let flags: ParsedFlags<O>, positionals: string[];
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...spec.options, help: { type: "boolean", short: "h" } },
      allowPositionals: spec.positionals ?? false,
      strict: true,
    });
    flags = parsed.values as ParsedFlags<O>;
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

/** One subcommand of a command with subcommands (`deno task wsi info ...`). */
export interface Subcommand<O extends Record<string, FlagSpec> = Record<string, FlagSpec>>
  extends Omit<CommandSpec<O>, "name" | "usage"> {
  run: (flags: ParsedFlags<O>, positionals: string[]) => Promise<number | void> | number | void;
}

/** A subcommand with its flag types checked against its options (for a table of subcommands). */
export const subcommand = <O extends Record<string, FlagSpec>>(s: Subcommand<O>): Subcommand =>
  s as unknown as Subcommand;

/**
 * Runs `<name> <subcommand> [flags]`: the first argument picks the subcommand, which is then run
 * by {@link runCommand} under the name `<name> <subcommand>` with the shared usage. No argument or
 * an unknown subcommand is a usage error (exit 2); `--help`/`-h` alone prints the usage (exit 0).
 */
export async function runSubcommand(
  spec: { name: string; usage: string },
  commands: Record<string, Subcommand>,
  argv: string[],
): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === "--help" || cmd === "-h") {
    console.log(spec.usage);
    return 0;
  }
  const sub = cmd !== undefined && Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
  if (!sub) {
    const why = cmd === undefined ? "no command given" : `unknown command "${cmd}"`;
    console.error(`${spec.name}: ${why}\n${spec.usage}`);
    return 2;
  }
  const { run, ...flagSpec } = sub;
  return await runCommand(
    { ...flagSpec, name: `${spec.name} ${cmd}`, usage: spec.usage },
    rest,
    run,
  );
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

/** A numeric flag that must be given, checked as {@link numberFlag} checks it. */
export function requiredNumberFlag(
  flags: Flags,
  name: string,
  opts: { min?: number; max?: number; integer?: boolean } = {},
): number {
  const v = numberFlag(flags, name, opts);
  if (v === undefined) throw new UsageError(`--${name} is required`);
  return v;
}
