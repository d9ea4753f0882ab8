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
import { absentKeys, type AddedKey, recordOf, withOldValues } from "./config_compat.ts";
import { InputError } from "../engine/io/errors.ts";
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
  /**
   * Config keys this run's config.json lacks (made before they existed) and the values it runs
   * with (pipeline/config_compat.ts); written on resume, for whoever reads the folder.
   */
  legacyConfig?: Record<string, boolean | number>;
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

/** Deepest nesting a run folder's JSON may have (the config is 4 levels deep). */
const MAX_JSON_DEPTH = 64;
/** Largest run-folder JSON read (state.json, config.json, summary.json, stats.json: kilobytes). */
const MAX_JSON_BYTES = 16 * 2 ** 20;

/**
 * Reads a run folder's JSON file (state.json, config.json, summary.json, pseudo stats.json),
 * bounding its size before reading and its nesting before use; the caller validates the fields.
 * A missing file throws Deno.errors.NotFound.
 */
export function readRunJson(path: string): unknown {
  const size = Deno.statSync(path).size;
  if (size > MAX_JSON_BYTES) {
    throw new InputError(
      `${path}: ${size} bytes, more than the ${MAX_JSON_BYTES} a run folder's JSON may hold`,
      { file: path },
    );
  }
  return parseRunJson(Deno.readTextFileSync(path), path);
}

/** Parses a run folder's JSON file, refusing nesting deeper than {@link MAX_JSON_DEPTH}. */
export function parseRunJson(text: string, path: string): unknown {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path}: not valid JSON (${(e as Error).message})`, { file: path });
  }
  // Checked without recursion: later code (diffConfig, JSON.stringify) recurses.
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== "object") continue;
    if (d >= MAX_JSON_DEPTH) {
      throw new InputError(`${path}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`, {
        file: path,
      });
    }
    for (const y of Object.values(x)) stack.push([y, d + 1]);
  }
  return v;
}

/** Throws `<file>: field <field>: expected <expected>, got <value>` (the value shortened). */
export function badField(file: string, field: string, expected: string, got: unknown): never {
  const shown = JSON.stringify(got) ?? String(got);
  throw new InputError(
    `${file}: field ${field}: expected ${expected}, got ${
      shown.length > 60 ? shown.slice(0, 60) + "..." : shown
    }`,
    { file, field },
  );
}

/** Whether a parsed JSON value is a plain object (not null, not an array). */
export const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

const STAGE_STATUSES = new Set(["pending", "running", "done"]);

/**
 * Checks a parsed state.json field by field (a hand-edited or damaged file must be an error that
 * names the file and field, not "Cannot read properties of null" in a stage).
 */
export function validateRunState(v: unknown, file = "state.json"): RunState {
  const bad = (field: string, expected: string, got: unknown): never =>
    badField(file, field, expected, got);
  if (!isObj(v)) return bad("(root)", "an object {version, created, updated, stages}", v);
  if (v.version !== 1) bad("version", "1", v.version);
  for (const k of ["created", "updated"]) {
    if (typeof v[k] !== "string") bad(k, "a date string", v[k]);
  }
  if (!isObj(v.stages)) return bad("stages", "an object of stage states", v.stages);
  for (const [name, st] of Object.entries(v.stages)) {
    const at = `stages.${name}`;
    if (!isObj(st)) return bad(at, "an object {status, ...}", st);
    if (typeof st.status !== "string" || !STAGE_STATUSES.has(st.status)) {
      bad(`${at}.status`, `one of ${[...STAGE_STATUSES].join(", ")}`, st.status);
    }
    for (const k of ["epoch", "step"]) {
      if (st[k] !== undefined && !(Number.isSafeInteger(st[k]) && (st[k] as number) >= 0)) {
        bad(`${at}.${k}`, "a non-negative integer", st[k]);
      }
    }
    if (st.updated !== undefined && typeof st.updated !== "string") {
      bad(`${at}.updated`, "a date string", st.updated);
    }
  }
  if (v.legacyConfig !== undefined) {
    if (!isObj(v.legacyConfig)) bad("legacyConfig", "an object of config values", v.legacyConfig);
    for (const [k, x] of Object.entries(v.legacyConfig as Record<string, unknown>)) {
      if (typeof x !== "boolean" && typeof x !== "number") {
        bad(`legacyConfig.${k}`, "a boolean or number", x);
      }
    }
  }
  // A null-prototype copy of the stages: a stage named "__proto__" stays an ordinary key.
  const stages: Record<string, StageState> = Object.create(null);
  for (const [name, st] of Object.entries(v.stages)) stages[name] = st as StageState;
  return { ...(v as unknown as RunState), stages };
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

/**
 * The config.json of the run in `dir` as stored (bounded, checked to be an object), or null when
 * the folder holds no run. Absent added keys are not filled (see pipeline/config_compat.ts).
 */
export function readStoredConfig(dir: string): Record<string, unknown> | null {
  const cfgPath = `${dir}/config.json`;
  if (!exists(cfgPath)) return null;
  const stored = readRunJson(cfgPath);
  if (typeof stored !== "object" || stored === null || Array.isArray(stored)) {
    throw new InputError(`${cfgPath}: field (root): expected the run's config object`, {
      file: cfgPath,
    });
  }
  return stored as Record<string, unknown>;
}

/** The value at a dotted path, shown short. */
function shown(cfg: unknown, path: string): string {
  let at = cfg;
  for (const p of path.split(".")) {
    at = typeof at === "object" && at !== null && Object.hasOwn(at, p)
      ? (at as Record<string, unknown>)[p]
      : undefined;
  }
  const s = at === undefined ? "(none)" : JSON.stringify(at);
  return s.length > 40 ? s.slice(0, 37) + "..." : s;
}

/**
 * The error for a resume whose config differs: every differing field with the run's value and
 * this command's, the keys the run's config.json predates marked, and how to resume as started.
 */
function configMismatch(
  dir: string,
  run: Record<string, unknown>,
  now: Record<string, unknown>,
  diff: string[],
  absent: AddedKey[],
  forceHint: boolean,
): Error {
  const old = new Set(absent.map((k) => k.path));
  const fields = diff.map((k) =>
    `${k}: the run has ${shown(run, k)}${
      old.has(k) ? " (its config.json predates the key)" : ""
    }, this command ${shown(now, k)}`
  );
  const profile = typeof run.profile === "string" ? `--profile ${run.profile} ` : "";
  return new Error(
    `${dir} holds a run with a different config (keys: ${diff.join(", ")}): ${
      fields.join("; ")
    }. To resume it as it was started, give its settings again (${profile}--config ` +
      `${dir}/config.json); or use another run folder` +
      (forceHint ? `, or --force to resume with the new config` : ""),
  );
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
  /** Added config keys the run's config.json lacks, running with their old values. */
  readonly madeBefore: AddedKey[];
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
    madeBefore: AddedKey[],
  ) {
    this.dir = dir;
    this.config = config;
    this.state = state;
    this.resumed = resumed;
    this.madeBefore = madeBefore;
    this.lockPath = `${dir}/run.lock`;
    this.unload = () => this.releaseLock();
    globalThis.addEventListener("unload", this.unload);
  }

  /**
   * Creates `dir` or resumes the run in it. Throws when another live process holds the folder, or
   * when `config` differs from the stored one (naming each differing field) unless `force`. A
   * stored config without keys added since (pipeline/config_compat.ts) is compared with their old
   * values filled in; the file is left as it was written, and state.json records those values.
   */
  static open(dir: string, config: Record<string, unknown>, opts: OpenOptions = {}): RunDir {
    Deno.mkdirSync(dir, { recursive: true });
    acquireLock(`${dir}/run.lock`);
    try {
      const cfgPath = `${dir}/config.json`, statePath = `${dir}/state.json`;
      const stored = readStoredConfig(dir);
      const cfg = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
      let madeBefore: AddedKey[] = [];
      if (stored) {
        madeBefore = absentKeys(stored);
        const started = withOldValues(stored);
        const diff = diffConfig(started, cfg);
        if (diff.length && !opts.force) {
          throw configMismatch(dir, started, cfg, diff, madeBefore, true);
        }
        if (diff.length) {
          writeFileAtomicSync(cfgPath, JSON.stringify(cfg, null, 2) + "\n");
          madeBefore = [];
        }
      } else {
        writeFileAtomicSync(cfgPath, JSON.stringify(cfg, null, 2) + "\n");
      }
      const now = new Date().toISOString();
      const state: RunState = exists(statePath)
        ? validateRunState(readRunJson(statePath), statePath)
        : { version: 1 as const, created: now, updated: now, stages: Object.create(null) };
      dropTornLine(`${dir}/metrics.jsonl`);
      const run = new RunDir(dir, cfg, state, stored !== null, madeBefore);
      const legacy = madeBefore.length ? recordOf(madeBefore) : undefined;
      if (JSON.stringify(legacy) !== JSON.stringify(state.legacyConfig)) {
        if (legacy) state.legacyConfig = legacy;
        else delete state.legacyConfig;
        run.saveState();
      } else if (!exists(statePath)) run.saveState();
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
   * config (absent added keys filled as {@link RunDir.open} does) must equal `config`; writing the
   * state or metrics through it throws.
   */
  static openShared(dir: string, config: Record<string, unknown>): RunDir {
    const statePath = `${dir}/state.json`;
    const stored = readStoredConfig(dir);
    if (!stored || !exists(statePath)) {
      throw new Error(
        `${dir}: no run here (config.json/state.json); run the steps before this one`,
      );
    }
    const cfg = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
    const madeBefore = absentKeys(stored);
    const filled = withOldValues(stored);
    const diff = diffConfig(filled, cfg);
    if (diff.length) throw configMismatch(dir, filled, cfg, diff, madeBefore, false);
    const state = validateRunState(readRunJson(statePath), statePath);
    const run = new RunDir(dir, cfg, state, true, madeBefore);
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
    return Object.hasOwn(this.state.stages, name) ? this.state.stages[name] : { status: "pending" };
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

/**
 * Test hook: `EPSAM_TEST_LOCK_PAUSE_MS` widens the window between seeing a stale lock and taking it
 * over, so the concurrency test makes takers collide there every time instead of by luck.
 */
function testPause(): void {
  let ms = 0;
  try {
    ms = Number(Deno.env.get("EPSAM_TEST_LOCK_PAUSE_MS") ?? 0);
  } catch { /* no env permission */ }
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

interface LockHolder {
  pid?: number;
  host?: string;
  started?: string;
}

/**
 * Creates `path` holding `content` only if it does not exist, atomically and whole: the content
 * goes to a private temporary file that is then hard-linked to `path` (link fails when `path`
 * exists), so no reader ever sees an empty or half-written lock.
 */
function createExclusive(path: string, content: string): boolean {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  Deno.writeTextFileSync(tmp, content);
  try {
    Deno.linkSync(tmp, path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return false;
    throw e;
  } finally {
    try {
      Deno.removeSync(tmp);
    } catch { /* already gone */ }
  }
}

/** The lock file's text, or null when there is none. */
function readLockText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

function parseHolder(text: string | null): LockHolder {
  try {
    const h = JSON.parse(text ?? "");
    return typeof h === "object" && h !== null ? h : {};
  } catch {
    return {}; // unreadable: never taken for stale, since whose it is cannot be told
  }
}

function inUse(path: string, holder: LockHolder): Error {
  const who = typeof holder.pid === "number"
    ? `process ${holder.pid} on ${holder.host} (since ${holder.started})`
    : "another process";
  return new Error(
    `${path}: this run folder is in use by ${who}; if no such run is active, delete the lock file`,
  );
}

/**
 * Takes the run folder's lock. A lock whose process died on this host (kill -9) is taken over,
 * and the takeover is atomic: takers first create `run.lock.takeover` exclusively (one wins, the
 * others are refused as "in use"); the winner checks the lock is still the stale one it saw, then
 * renames a fresh lock over it, so the lock file never disappears and no plain creator can slip
 * in between. A taker killed inside that window leaves the takeover file, which the message names.
 */
function acquireLock(path: string): void {
  const me = JSON.stringify({
    pid: Deno.pid,
    host: Deno.hostname(),
    started: new Date().toISOString(),
  });
  let seen: string | null = null;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createExclusive(path, me)) return;
    seen = readLockText(path);
    if (seen !== null) break; // released between the two calls: try again
  }
  if (seen === null) throw inUse(path, {});
  const holder = parseHolder(seen);
  const stale = typeof holder.pid === "number" && holder.host === Deno.hostname() &&
    holder.pid !== Deno.pid && !pidAlive(holder.pid);
  if (!stale) throw inUse(path, holder);
  testPause();
  const takeover = `${path}.takeover`;
  if (!createExclusive(takeover, me)) {
    const t = parseHolder(readLockText(takeover));
    throw new Error(
      `${path}: this run folder's stale lock is being taken over by ` +
        `${typeof t.pid === "number" ? `process ${t.pid}` : "another process"}; if no run is ` +
        `active, delete ${takeover} and ${path}`,
    );
  }
  try {
    const now = readLockText(path);
    if (now === null) {
      // Released by a taker that won and finished meanwhile: an ordinary create.
      if (!createExclusive(path, me)) throw inUse(path, parseHolder(readLockText(path)));
    } else if (now !== seen) {
      throw inUse(path, parseHolder(now)); // another taker won first
    } else {
      writeFileAtomicSync(path, me); // rename over the stale lock
    }
  } finally {
    try {
      Deno.removeSync(takeover);
    } catch { /* already gone */ }
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
