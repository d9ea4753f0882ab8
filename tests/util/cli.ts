/**
 * Runs one of the project's command-line scripts as a child `deno run -A` and returns its exit
 * code and output as text, so CLI tests assert on what a user would see (usage errors, exit
 * codes, messages naming the bad file or flag).
 */

/** What a finished CLI run printed. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout then stderr, for messages that may go to either. */
  text: string;
}

/**
 * `deno run -A <script> ...args` to completion, with lavapipe's runtime folder and no colours
 * (`env` adds to or overrides those and the inherited environment).
 */
export async function runCli(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1", ...env },
  }).output();
  const dec = new TextDecoder();
  const stdout = dec.decode(r.stdout), stderr = dec.decode(r.stderr);
  return { code: r.code, stdout, stderr, text: stdout + stderr };
}
