/**
 * Every bench entry point answers --help with its flags (exit 0) instead of taking it as input or
 * starting work. Entry points are found, not listed: every bench/**.ts that reads its arguments
 * (`Deno.args`) or runs as a script (`import.meta.main`), every bench/**.py with a `__main__`, and the
 * shell scripts.
 */

const ROOT = new URL("../../", import.meta.url).pathname;

function* walk(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(p);
    else yield p;
  }
}

/** [command, args] per entry point of bench/. */
function entryPoints(): [string, string[]][] {
  const out: [string, string[]][] = [];
  for (const p of [...walk("bench")].sort()) {
    const text = Deno.readTextFileSync(`${ROOT}${p}`);
    if (p.endsWith(".ts") && /Deno\.args|import\.meta\.main/.test(text)) {
      out.push([Deno.execPath(), ["run", "-A", "--no-check", p, "--help"]]);
    } else if (p.endsWith(".py") && /__name__ == "__main__"/.test(text)) {
      out.push(["/usr/bin/python3", [p, "--help"]]);
    } else if (p.endsWith(".sh")) {
      out.push(["bash", [p, "--help"]]);
    }
  }
  return out;
}

Deno.test("bench entry points answer --help", async () => {
  const entries = entryPoints();
  const names = entries.map(([, a]) => a.at(-2));
  for (
    const must of ["bench/main.ts", "bench/models.ts", "bench/profile.ts", "bench/peers/ort_run.ts"]
  ) {
    if (!names.includes(must)) throw new Error(`${must} not found as an entry point: ${names}`);
  }
  if (entries.length < 10) throw new Error(`only ${entries.length} entry points found: ${names}`);
  const failed: string[] = [];
  for (const [cmd, args] of entries) {
    const out = await new Deno.Command(cmd, {
      args,
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    if (out.code !== 0 || !/usage:/.test(text)) {
      failed.push(
        `${args.at(-2)} --help: exit ${out.code}, stdout ${text.slice(0, 200)}, stderr ${
          new TextDecoder().decode(out.stderr).slice(0, 300)
        }`,
      );
    }
  }
  if (failed.length) throw new Error(failed.join("\n"));
});
