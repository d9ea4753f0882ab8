/**
 * The fuzz runner: finds the targets (every file in tests/fuzz/targets/ default-exports a
 * FuzzTarget) and runs one target's inputs in a child process (child.ts) under a per-input time
 * bound and a memory bound. A hang in synchronous JavaScript cannot be interrupted in-process, so
 * the parent watches: when an input runs past the time bound or the child's resident memory
 * passes the memory bound, the child is killed, the input is recorded (and saved to a file), and
 * a new child resumes after it. A child that dies by itself (V8 heap limit, abort) is a crash of
 * the input it was parsing.
 */
import fc from "fast-check";
import type { FuzzTarget } from "./target.ts";
import { inputSeed, MARK } from "./kinds.ts";

const TARGETS_DIR = new URL("./targets/", import.meta.url);
const CHILD = new URL("./child.ts", import.meta.url).pathname;

/** The target files by target name, sorted. */
export async function discoverTargets(): Promise<Map<string, string>> {
  const files: string[] = [];
  for await (const e of Deno.readDir(TARGETS_DIR)) {
    if (e.isFile && e.name.endsWith(".ts")) files.push(new URL(e.name, TARGETS_DIR).pathname);
  }
  files.sort();
  const out = new Map<string, string>();
  for (const f of files) {
    const t = (await import(`file://${f}`)).default as FuzzTarget | undefined;
    if (!t || typeof t.name !== "string" || typeof t.parse !== "function") {
      throw new Error(`${f}: does not default-export a FuzzTarget`);
    }
    if (out.has(t.name)) throw new Error(`${f}: target name ${t.name} is used twice`);
    out.set(t.name, f);
  }
  return out;
}

export interface FuzzOptions {
  runs: number;
  seed: number;
  /** Per-input wall-clock bound (ms): past it the input is a hang. */
  timeMs: number;
  /** Child's resident-memory bound (MiB): past it the input is a blow-up. */
  memMiB: number;
  /** Where hang/crash/blow-up inputs are saved (null: not saved). */
  outDir: string | null;
  /** Called every so often with the inputs done so far. */
  onProgress?: (done: number) => void;
}

/** One input that was not a clean accept or refusal. */
export interface Finding {
  i: number;
  kind: "crash" | "hang" | "memory";
  message: string;
  /** Where the input was saved, if it was. */
  file?: string;
}

export interface FuzzReport {
  parser: string;
  seed: number;
  inputs: number;
  accepted: number;
  refused: number;
  /** Refusals by message kind (see kinds.ts), most frequent first. */
  refusedByKind: [string, number][];
  findings: Finding[];
  worstMs: { ms: number; i: number };
  /** Largest per-input peak RSS (VmHWM, MiB), and the child's RSS before any input. */
  worstRssMiB: { mib: number; i: number };
  baselineRssMiB: number;
  /** Child processes started (1 + one per hang, blow-up or death). */
  children: number;
  wallS: number;
}

interface Line {
  ready?: boolean;
  rssKiB?: number;
  i?: number;
  outcome?: "accepted" | "refused" | "crash";
  kind?: string;
  message?: string;
  ms?: number;
  hwmKiB?: number;
}

/** Input `i` of `target` under `seed`, exactly as the child generates it. */
export function inputAt(target: FuzzTarget, seed: number, i: number): Uint8Array {
  return fc.sample(target.input(), { seed: inputSeed(seed, i), numRuns: 1 })[0];
}

function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Runs `opts.runs` inputs of the target in `file` and reports what happened. */
export async function fuzzTarget(file: string, opts: FuzzOptions): Promise<FuzzReport> {
  const target = (await import(`file://${file}`)).default as FuzzTarget;
  const t0 = performance.now();
  const kinds = new Map<string, number>();
  const report: FuzzReport = {
    parser: target.name,
    seed: opts.seed,
    inputs: 0,
    accepted: 0,
    refused: 0,
    refusedByKind: [],
    findings: [],
    worstMs: { ms: 0, i: -1 },
    worstRssMiB: { mib: 0, i: -1 },
    baselineRssMiB: 0,
    children: 0,
    wallS: 0,
  };
  const record = async (i: number, kind: Finding["kind"], message: string) => {
    const f: Finding = { i, kind, message };
    if (opts.outDir) {
      const dir = `${opts.outDir}/${target.name}`;
      await Deno.mkdir(dir, { recursive: true });
      f.file = `${dir}/${kind}-seed${opts.seed}-${i}.bin`;
      let input: Uint8Array;
      try {
        input = inputAt(target, opts.seed, i);
      } catch (e) {
        input = new TextEncoder().encode(`(the generator threw: ${e})`);
      }
      await Deno.writeFile(f.file, input);
      await Deno.writeTextFile(f.file.replace(/\.bin$/, ".txt"), message + "\n");
    }
    report.findings.push(f);
    report.inputs++;
  };
  let next = 0;
  while (next < opts.runs) {
    report.children++;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        // The heap limit sits below the RSS bound, so a heap blow-up ends as a V8 OOM death.
        `--v8-flags=--expose-gc,--max-old-space-size=${Math.max(64, opts.memMiB - 128)}`,
        CHILD,
        file,
        String(opts.seed),
        String(opts.runs),
        String(next),
      ],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).spawn();
    let ready = false;
    let lastT = performance.now();
    let killed: "hang" | "memory" | undefined;
    const watchdog = setInterval(() => {
      if (!ready || killed) return;
      const limitMs = opts.timeMs;
      // Memory first: an input that allocates slowly past both bounds is a blow-up.
      if (rssKiB(child.pid) > opts.memMiB * 1024) killed = "memory";
      else if (performance.now() - lastT > limitMs) killed = "hang";
      if (killed) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }
    }, 20);
    const stderr = new Response(child.stderr).text();
    let buf = "";
    const dec = new TextDecoder();
    for await (const chunk of child.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!text.startsWith(MARK)) continue; // the parser's own output
        const l = JSON.parse(text.slice(MARK.length)) as Line;
        lastT = performance.now();
        if (l.ready) {
          ready = true;
          report.baselineRssMiB = Math.max(report.baselineRssMiB, (l.rssKiB ?? 0) / 1024);
          continue;
        }
        const i = l.i!;
        next = i + 1;
        if (l.ms! > report.worstMs.ms) report.worstMs = { ms: l.ms!, i };
        const mib = (l.hwmKiB ?? 0) / 1024;
        if (mib > report.worstRssMiB.mib) report.worstRssMiB = { mib, i };
        if (l.outcome === "crash") {
          await record(i, "crash", l.message ?? "(no message)");
          continue;
        }
        report.inputs++;
        if (l.outcome === "accepted") report.accepted++;
        else {
          report.refused++;
          kinds.set(l.kind!, (kinds.get(l.kind!) ?? 0) + 1);
        }
        if (report.inputs % 500 === 0) opts.onProgress?.(report.inputs);
      }
    }
    const status = await child.status;
    clearInterval(watchdog);
    const err = await stderr;
    if (next >= opts.runs) break;
    if (!ready) {
      throw new Error(`fuzz ${target.name}: the child failed before its first input:\n${err}`);
    }
    // The child stopped before the last input: the one in flight (index `next`) is the cause.
    if (killed === "hang") {
      await record(next, "hang", `no result within ${opts.timeMs} ms`);
    } else if (killed === "memory") {
      await record(next, "memory", `resident memory passed ${opts.memMiB} MiB`);
    } else {
      await record(
        next,
        "crash",
        `child died (exit ${status.code}${status.signal ? `, ${status.signal}` : ""}): ${
          err.trim().split("\n").slice(-5).join(" | ")
        }`,
      );
    }
    next++;
  }
  report.refusedByKind = [...kinds].sort((a, b) => b[1] - a[1]);
  report.wallS = (performance.now() - t0) / 1000;
  return report;
}

/** A report as text: counts, the most frequent refusals, findings, worst time and memory. */
export function formatReport(r: FuzzReport, topKinds = 12): string {
  const lines = [
    `${r.parser}: ${r.inputs} inputs (seed ${r.seed}): ${r.accepted} accepted, ${r.refused} ` +
    `refused, ${r.findings.filter((f) => f.kind === "crash").length} crashes, ` +
    `${r.findings.filter((f) => f.kind === "hang").length} hangs, ` +
    `${r.findings.filter((f) => f.kind === "memory").length} memory blow-ups; worst time ` +
    `${r.worstMs.ms.toFixed(1)} ms (input ${r.worstMs.i}), worst peak RSS ` +
    `${r.worstRssMiB.mib.toFixed(0)} MiB (input ${r.worstRssMiB.i}; child baseline ` +
    `${r.baselineRssMiB.toFixed(0)} MiB); ${r.children} child process(es), ${r.wallS.toFixed(1)} s`,
  ];
  for (const [k, n] of r.refusedByKind.slice(0, topKinds)) {
    lines.push(`  ${String(n).padStart(6)}  ${k}`);
  }
  if (r.refusedByKind.length > topKinds) {
    lines.push(`  ... ${r.refusedByKind.length - topKinds} more kinds`);
  }
  for (const f of r.findings) {
    lines.push(
      `  ${f.kind.toUpperCase()} input ${f.i}: ${f.message.slice(0, 300)}${
        f.file ? ` (saved: ${f.file})` : ""
      }`,
    );
  }
  return lines.join("\n");
}

/**
 * The reports as the Markdown table RELIABILITY.md records: one row per parser (inputs,
 * accepted, refused, crashes, hangs, blow-ups, worst time, worst memory), then each parser's
 * most frequent refusals by kind.
 */
export function formatMarkdown(reports: FuzzReport[], topKinds = 8): string {
  const count = (r: FuzzReport, k: Finding["kind"]) =>
    r.findings.filter((f) => f.kind === k).length;
  const out = [
    "| parser | inputs | accepted | refused (own error) | crashes | hangs | memory blow-ups | worst time | worst peak RSS (child baseline) | wall |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...reports.map((r) =>
      `| ${r.parser} | ${r.inputs} | ${r.accepted} | ${r.refused} | ${count(r, "crash")} | ${
        count(r, "hang")
      } | ${count(r, "memory")} | ${r.worstMs.ms.toFixed(0)} ms | ${
        r.worstRssMiB.mib.toFixed(0)
      } MiB (${r.baselineRssMiB.toFixed(0)} MiB) | ${r.wallS.toFixed(0)} s |`
    ),
  ];
  for (const r of reports) {
    out.push("", `**${r.parser}**: refusals by kind (${r.refusedByKind.length} kinds)`, "");
    out.push("| inputs | error (file name, numbers and quoted names blanked) |", "| ---: | --- |");
    for (const [k, n] of r.refusedByKind.slice(0, topKinds)) {
      out.push(`| ${n} | ${k.replaceAll("|", "\\|")} |`);
    }
    const rest = r.refusedByKind.slice(topKinds);
    if (rest.length) {
      out.push(`| ${rest.reduce((a, [, n]) => a + n, 0)} | ${rest.length} other kinds |`);
    }
  }
  return out.join("\n") + "\n";
}
