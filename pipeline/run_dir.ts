/**
 * A training run's folder, built to survive kill -9 and to refuse silent mix-ups:
 *   config.json    the resolved config; resuming with a different one is an error (unless forced)
 *   state.json     per-stage status and progress, rewritten atomically
 *   metrics.jsonl  one JSON object per line, appended; a torn last line is dropped on open
 *   run.lock       pid/host of the process using the folder; a second run is refused
 * Checkpoints are safetensors with a SHA-256 of their tensors in the metadata, so a damaged file
 * is reported by name instead of loading as wrong weights.
 */
import { writeFileAtomicSync } from "../engine/io/atomic.ts";
import {
  type DType,
  type HostData,
  type HostTensor,
  readSafetensorsWithMetadata,
  writeSafetensors,
} from "../engine/io/safetensors.ts";

/** Progress of one pipeline stage. */
export interface StageState {
  status: "pending" | "running" | "done";
  /** Last completed epoch (stages that count epochs). */
  epoch?: number;
  step?: number;
  updated?: string;
  [extra: string]: unknown;
}

export interface RunState {
  version: 1;
  created: string;
  updated: string;
  stages: Record<string, StageState>;
}

/** One line of metrics.jsonl. */
export interface MetricRecord {
  stage: string;
  epoch?: number;
  step?: number;
  time?: string;
  [value: string]: unknown;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Dotted paths where two JSON values differ (keys present on one side only included). */
export function diffConfig(a: unknown, b: unknown, prefix = ""): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diffConfig(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || "(root)"];
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Whether a process with this pid runs on this machine (unknown off Linux: assume it does). */
function pidAlive(pid: number): boolean {
  if (Deno.build.os !== "linux") return true;
  return exists(`/proc/${pid}`);
}

function readJson(path: string): unknown {
  const text = Deno.readTextFileSync(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

/** Parses metrics.jsonl text; a torn (unparseable) last line is dropped, an earlier one is an error. */
export function parseMetrics(text: string, file = "metrics.jsonl"): MetricRecord[] {
  const lines = text.split("\n");
  const out: MetricRecord[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trim()) continue;
    try {
      out.push(JSON.parse(lines[i]));
    } catch {
      if (lines.slice(i + 1).every((l) => !l.trim())) break; // torn by a kill during append
      throw new Error(`${file}:${i + 1}: not a JSON line`);
    }
  }
  return out;
}

export interface OpenOptions {
  /** Resume even if the config differs (the new config replaces config.json). */
  force?: boolean;
}

/** An open run folder (holds its lock until {@link RunDir.close}). */
export class RunDir {
  readonly dir: string;
  readonly config: Record<string, unknown>;
  /** True when the folder already held a run. */
  readonly resumed: boolean;
  state: RunState;
  private readonly lockPath: string;
  private readonly unload: () => void;
  private closed = false;
  /** Opened by {@link RunDir.openShared}: reads only, holds no lock. */
  private readOnly = false;

  private constructor(
    dir: string,
    config: Record<string, unknown>,
    state: RunState,
    resumed: boolean,
  ) {
    this.dir = dir;
    this.config = config;
    this.state = state;
    this.resumed = resumed;
    this.lockPath = `${dir}/run.lock`;
    this.unload = () => this.releaseLock();
    globalThis.addEventListener("unload", this.unload);
  }

  /**
   * Creates `dir` or resumes the run in it. Throws when another live process holds the folder, or
   * when `config` differs from the stored one (listing the differing keys) unless `force`.
   */
  static open(dir: string, config: Record<string, unknown>, opts: OpenOptions = {}): RunDir {
    Deno.mkdirSync(dir, { recursive: true });
    acquireLock(`${dir}/run.lock`);
    try {
      const cfgPath = `${dir}/config.json`, statePath = `${dir}/state.json`;
      const resumed = exists(cfgPath);
      const cfg = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
      if (resumed) {
        const diff = diffConfig(readJson(cfgPath), cfg);
        if (diff.length && !opts.force) {
          throw new Error(
            `${dir} holds a run with a different config (keys: ${diff.join(", ")}); ` +
              `use another run folder, or --force to resume with the new config`,
          );
        }
        if (diff.length) writeFileAtomicSync(cfgPath, JSON.stringify(cfg, null, 2) + "\n");
      } else {
        writeFileAtomicSync(cfgPath, JSON.stringify(cfg, null, 2) + "\n");
      }
      const now = new Date().toISOString();
      const state = exists(statePath)
        ? readJson(statePath) as RunState
        : { version: 1 as const, created: now, updated: now, stages: {} };
      if (typeof state !== "object" || state === null || typeof state.stages !== "object") {
        throw new Error(`${statePath}: not a run state (expected {version, stages})`);
      }
      dropTornLine(`${dir}/metrics.jsonl`);
      const run = new RunDir(dir, cfg, state, resumed);
      if (!exists(statePath)) run.saveState();
      return run;
    } catch (e) {
      try {
        Deno.removeSync(`${dir}/run.lock`);
      } catch { /* already gone */ }
      throw e;
    }
  }

  /**
   * Opens an existing run to read its state without taking the lock, for the shards of a
   * per-item pass that run side by side (each writes only its own files and manifest). The stored
   * config must equal `config`; writing the state or metrics through it throws.
   */
  static openShared(dir: string, config: Record<string, unknown>): RunDir {
    const cfgPath = `${dir}/config.json`, statePath = `${dir}/state.json`;
    if (!exists(cfgPath) || !exists(statePath)) {
      throw new Error(
        `${dir}: no run here (config.json/state.json); run the steps before this one`,
      );
    }
    const cfg = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
    const diff = diffConfig(readJson(cfgPath), cfg);
    if (diff.length) {
      throw new Error(`${dir} holds a run with a different config (keys: ${diff.join(", ")})`);
    }
    const state = readJson(statePath) as RunState;
    if (typeof state !== "object" || state === null || typeof state.stages !== "object") {
      throw new Error(`${statePath}: not a run state (expected {version, stages})`);
    }
    const run = new RunDir(dir, cfg, state, true);
    globalThis.removeEventListener("unload", run.unload);
    run.readOnly = true;
    run.closed = true;
    return run;
  }

  /** A path inside the run folder. */
  path(...parts: string[]): string {
    return [this.dir, ...parts].join("/");
  }

  /** The stage's state (pending if never started). */
  stage(name: string): StageState {
    return this.state.stages[name] ?? { status: "pending" };
  }

  isDone(name: string): boolean {
    return this.stage(name).status === "done";
  }

  /** Merges `patch` into the stage's state and writes state.json atomically. */
  updateStage(name: string, patch: Partial<StageState>): StageState {
    this.assertOpen();
    const now = new Date().toISOString();
    const s = { ...this.stage(name), ...patch, updated: now } as StageState;
    this.state.stages[name] = s;
    this.state.updated = now;
    this.saveState();
    return s;
  }

  private saveState(): void {
    writeFileAtomicSync(this.path("state.json"), JSON.stringify(this.state, null, 2) + "\n");
  }

  /** Appends one record to metrics.jsonl (one write, so a kill leaves at most a torn last line). */
  async appendMetrics(rec: MetricRecord): Promise<void> {
    this.assertOpen();
    const line =
      JSON.stringify({ time: new Date().toISOString(), ...rec } as { [k: string]: Json }) + "\n";
    await Deno.writeTextFile(this.path("metrics.jsonl"), line, { append: true });
  }

  /**
   * Appends `rec` unless a record of the same stage and epoch is already there: on resume, restores
   * the epoch record a kill between the checkpoint write and the metrics append lost.
   */
  async ensureMetrics(rec: MetricRecord): Promise<void> {
    const have = await this.readMetrics(rec.stage);
    if (!have.some((r) => r.epoch === rec.epoch)) await this.appendMetrics(rec);
  }

  /** The metric records so far, optionally of one stage. */
  async readMetrics(stage?: string): Promise<MetricRecord[]> {
    const p = this.path("metrics.jsonl");
    if (!exists(p)) return [];
    const all = parseMetrics(await Deno.readTextFile(p), p);
    return stage === undefined ? all : all.filter((r) => r.stage === stage);
  }

  /** Releases the lock; the object cannot write afterwards. */
  close(): void {
    if (this.closed) return;
    this.releaseLock();
    globalThis.removeEventListener("unload", this.unload);
  }

  private releaseLock(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      const l = JSON.parse(Deno.readTextFileSync(this.lockPath));
      if (l.pid === Deno.pid) Deno.removeSync(this.lockPath);
    } catch { /* gone or replaced */ }
  }

  private assertOpen(): void {
    if (this.readOnly) {
      throw new Error(`run ${this.dir} is open read-only (a shard does not write the run state)`);
    }
    if (this.closed) throw new Error(`run ${this.dir} was closed`);
  }
}

function acquireLock(path: string): void {
  const me = JSON.stringify({
    pid: Deno.pid,
    host: Deno.hostname(),
    started: new Date().toISOString(),
  });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const f = Deno.openSync(path, { createNew: true, write: true });
      f.writeSync(new TextEncoder().encode(me));
      f.close();
      return;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    let holder: { pid?: number; host?: string; started?: string } = {};
    try {
      holder = JSON.parse(Deno.readTextFileSync(path));
    } catch { /* torn lock: treat as stale below if we can't tell */ }
    const sameHost = holder.host === Deno.hostname();
    const stale = typeof holder.pid === "number" && sameHost && holder.pid !== Deno.pid &&
      !pidAlive(holder.pid);
    if (!stale || attempt > 0) {
      const who = typeof holder.pid === "number"
        ? `process ${holder.pid} on ${holder.host} (since ${holder.started})`
        : "another process";
      throw new Error(
        `${path}: this run folder is in use by ${who}; if no such run is active, delete the lock file`,
      );
    }
    Deno.removeSync(path); // its owner died (kill -9): take over
  }
}

/** Drops a torn last line so later appends start on a line of their own. */
/** Cuts a JSON-lines file back to its last whole line (a kill can tear the line being appended). */
export function dropTornLine(path: string): void {
  if (!exists(path)) return;
  const bytes = Deno.readFileSync(path);
  if (!bytes.length || bytes[bytes.length - 1] === 10) return;
  const cut = bytes.lastIndexOf(10) + 1;
  const f = Deno.openSync(path, { write: true });
  try {
    f.truncateSync(cut);
  } finally {
    f.close();
  }
}

// ------------------------------------------------------------------------------ checkpoints

/** A host tensor to checkpoint: shape plus a typed array (the array type picks the dtype). */
export interface CheckpointTensor {
  shape: readonly number[];
  data: Float32Array | Int32Array | Uint8Array | Float64Array;
}

function dtypeOf(name: string, data: CheckpointTensor["data"]): DType {
  if (data instanceof Float32Array) return "F32";
  if (data instanceof Int32Array) return "I32";
  if (data instanceof Uint8Array) return "U8";
  if (data instanceof Float64Array) return "F64";
  throw new Error(`writeCheckpoint: tensor ${name}: unsupported array type`);
}

const CHECKSUM_KEY = "epsam.sha256";

/** SHA-256 over every tensor's name, dtype, shape and bytes, in name order. */
async function checksum(tensors: Map<string, HostTensor>): Promise<string> {
  const parts: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const name of [...tensors.keys()].sort()) {
    const t = tensors.get(name)!;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const d = new Uint8Array(
      await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
    );
    parts.push(enc.encode(`${name}\0${t.dtype}\0${t.shape.join(",")}\0`), d);
  }
  const all = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) all.set(p, (o += p.length) - p.length);
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Writes tensors atomically as safetensors with a checksum in the metadata. */
export async function writeCheckpoint(
  path: string,
  tensors: Map<string, CheckpointTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const host = new Map<string, HostTensor>();
  for (const [k, t] of tensors) {
    host.set(k, { dtype: dtypeOf(k, t.data), shape: [...t.shape], data: t.data as HostData });
  }
  await writeSafetensors(path, host, { ...metadata, [CHECKSUM_KEY]: await checksum(host) });
}

/**
 * Reads a checkpoint written by {@link writeCheckpoint} and verifies its checksum. Files without
 * one (foreign safetensors) load unverified.
 */
export async function readCheckpoint(
  path: string,
): Promise<{ tensors: Map<string, HostTensor>; metadata: Record<string, string> }> {
  let r;
  try {
    r = await readSafetensorsWithMetadata(path);
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.includes(path) ? `checkpoint ${msg}` : `checkpoint ${path}: ${msg}`, {
      cause: e,
    });
  }
  const metadata = { ...(r.metadata ?? {}) };
  const want = metadata[CHECKSUM_KEY];
  if (want !== undefined) {
    const got = await checksum(r.tensors);
    if (got !== want) {
      throw new Error(
        `checkpoint ${path} is corrupt: its tensors do not match the checksum written with them`,
      );
    }
    delete metadata[CHECKSUM_KEY];
  }
  return { tensors: r.tensors, metadata };
}
