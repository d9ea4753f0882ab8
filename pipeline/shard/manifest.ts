/**
 * Shard manifests and their merge. A shard of a per-item pass writes its own output files
 * (atomically) and then, last, `<root>/shards/<pass>/shard_<K>_of_<N>.json`: every item it did,
 * the files it wrote for each with their SHA-256 and size, and the item's small result record
 * (a pseudo-label decision, a patch's counts). A shard that crashed has no manifest, so its items
 * count as missing however many of its files made it to disk.
 *
 * {@link mergeShards} accepts a set only when every shard 0..N-1 is there, every expected item
 * occurs exactly once and every listed file still matches its checksum; otherwise it throws an
 * error naming the missing shards and items (or the damaged files).
 */
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import type { Shard } from "./shard.ts";

/** One output file of an item, relative to the manifest's root folder. */
export interface ShardFile {
  path: string;
  sha256: string;
  bytes: number;
}

/** One item a shard did. */
export interface ShardItem {
  id: string;
  files: ShardFile[];
  /** The item's result, merged by the pass (JSON). */
  record?: unknown;
}

export interface ShardManifest {
  version: 1;
  pass: string;
  shard: Shard;
  /** Free-form facts the merge checks are equal in every shard (config hash, item count). */
  key: string;
  items: ShardItem[];
  finished: string;
}

/** Most bytes a manifest may have before it is read (a claim checked before allocating). */
const MAX_MANIFEST_BYTES = 512 * 2 ** 20;

const shardsDir = (root: string, pass: string) => `${root}/shards/${pass}`;
export const manifestName = (s: Shard) => `shard_${s.index}_of_${s.count}.json`;

/** Lowercase hex SHA-256 of bytes. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const h = new Uint8Array(
    await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>),
  );
  return Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function fileEntry(root: string, rel: string): Promise<ShardFile> {
  const bytes = await Deno.readFile(`${root}/${rel}`);
  return { path: rel, sha256: await sha256Hex(bytes), bytes: bytes.length };
}

/**
 * Collects what one shard did and writes its manifest at the end. Creating it removes the shard's
 * old manifest, so a rerun of a shard that then crashes cannot leave the earlier one in force.
 */
export class ShardRecorder {
  private readonly items: ShardItem[] = [];
  private readonly seen = new Set<string>();

  private constructor(
    readonly root: string,
    readonly pass: string,
    readonly shard: Shard,
    readonly key: string,
  ) {}

  static async start(root: string, pass: string, shard: Shard, key = ""): Promise<ShardRecorder> {
    const dir = shardsDir(root, pass);
    await Deno.mkdir(dir, { recursive: true });
    await Deno.remove(`${dir}/${manifestName(shard)}`).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    return new ShardRecorder(root, pass, shard, key);
  }

  /** Records item `id` with its output files (paths relative to the root) and result record. */
  async add(id: string, files: string[], record?: unknown): Promise<void> {
    if (this.seen.has(id)) throw new Error(`shard ${this.pass}: item ${id} recorded twice`);
    this.seen.add(id);
    const entries: ShardFile[] = [];
    for (const f of files) entries.push(await fileEntry(this.root, f));
    this.items.push(record === undefined ? { id, files: entries } : { id, files: entries, record });
  }

  get size(): number {
    return this.items.length;
  }

  /** Writes the manifest (atomically, last); returns its path. */
  async finish(): Promise<string> {
    const m: ShardManifest = {
      version: 1,
      pass: this.pass,
      shard: this.shard,
      key: this.key,
      items: this.items,
      finished: new Date().toISOString(),
    };
    const path = `${shardsDir(this.root, this.pass)}/${manifestName(this.shard)}`;
    await writeFileAtomic(path, JSON.stringify(m) + "\n");
    return path;
  }
}

function listSample(ids: string[], n = 10): string {
  return ids.length <= n
    ? ids.join(", ")
    : `${ids.slice(0, n).join(", ")} and ${ids.length - n} more`;
}

/** Reads and checks the shape of one manifest. */
export async function readManifest(path: string): Promise<ShardManifest> {
  const st = await Deno.stat(path);
  if (st.size > MAX_MANIFEST_BYTES) {
    throw new Error(`${path}: ${st.size} bytes, more than a shard manifest may have`);
  }
  let m: ShardManifest;
  try {
    m = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new Error(`${path}: not a shard manifest (${(e as Error).message})`);
  }
  const ok = m && m.version === 1 && typeof m.pass === "string" && Array.isArray(m.items) &&
    m.shard && Number.isInteger(m.shard.index) && Number.isInteger(m.shard.count) &&
    m.shard.index >= 0 && m.shard.index < m.shard.count &&
    m.items.every((it) =>
      typeof it?.id === "string" && Array.isArray(it.files) &&
      it.files.every((f) =>
        typeof f?.path === "string" && typeof f.sha256 === "string" &&
        Number.isInteger(f.bytes) && !f.path.startsWith("/") && !f.path.split("/").includes("..")
      )
    );
  if (!ok) {
    throw new Error(
      `${path}: not a shard manifest (expected {version: 1, pass, shard: {index, count}, items: [{id, files: [{path, sha256, bytes}]}]})`,
    );
  }
  return m;
}

/** The manifests present for a pass (none: empty list; no folder: null). */
export async function listManifests(root: string, pass: string): Promise<string[] | null> {
  const dir = shardsDir(root, pass);
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && /^shard_\d+_of_\d+\.json$/.test(e.name)) out.push(`${dir}/${e.name}`);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return out.sort();
}

/** Whether a pass was run sharded (its shards folder exists). */
export async function isSharded(root: string, pass: string): Promise<boolean> {
  return (await listManifests(root, pass)) !== null;
}

/**
 * Verifies a pass's shards against the items it should cover (`expected`, in pass order) and
 * returns each item's entry by id. Throws, naming what is wrong, unless: shards 0..N-1 all have a
 * manifest of this pass with the same N and key, every expected item is in exactly one of them,
 * no other item is, and every file listed exists with its recorded size and SHA-256.
 */
export async function mergeShards(
  root: string,
  pass: string,
  expected: string[],
  key = "",
): Promise<Map<string, ShardItem>> {
  const dir = shardsDir(root, pass);
  const paths = await listManifests(root, pass);
  const hint =
    `rerun the missing shards (deno task slurm submit resubmits them; or --shard K/N by hand)`;
  if (!paths || !paths.length) {
    throw new Error(
      `${dir}: no shard has finished (no manifest); all ${expected.length} items missing; ${hint}`,
    );
  }
  const manifests = await Promise.all(paths.map(readManifest));
  const counts = new Set(manifests.map((m) => m.shard.count));
  if (counts.size !== 1) {
    throw new Error(
      `${dir}: manifests of different shard counts (${[...counts].join(", ")}); ` +
        `delete the folder's manifests of the old count and rerun`,
    );
  }
  const n = manifests[0].shard.count;
  const byIndex = new Map<number, ShardManifest>();
  for (const [i, m] of manifests.entries()) {
    if (m.pass !== pass) throw new Error(`${paths[i]}: a manifest of pass ${m.pass}, not ${pass}`);
    if (m.key !== key) {
      throw new Error(
        `${paths[i]}: written for another run setup (key ${m.key || "none"}, expected ${
          key || "none"
        }); delete it and rerun that shard`,
      );
    }
    byIndex.set(m.shard.index, m);
  }
  const want = new Set(expected);
  const found = new Map<string, ShardItem>();
  const problems: string[] = [];
  for (const m of manifests) {
    for (const it of m.items) {
      if (!want.has(it.id)) {
        problems.push(`item ${it.id} of shard ${m.shard.index}/${n} is not one of this pass's`);
      } else if (found.has(it.id)) {
        problems.push(`item ${it.id} is in more than one shard`);
      } else found.set(it.id, it);
    }
  }
  const missingShards = Array.from({ length: n }, (_, k) => k).filter((k) => !byIndex.has(k));
  const missing = expected.filter((id) => !found.has(id));
  if (missingShards.length || missing.length) {
    const s = missingShards.map((k) => `${k}/${n}`);
    problems.unshift(
      `${missing.length} of ${expected.length} items missing` +
        (missing.length ? ` (${listSample(missing)})` : "") +
        (s.length
          ? `; shards without a manifest (crashed, cancelled or not run): ${s.join(", ")}`
          : ""),
    );
  }
  if (problems.length) throw new Error(`${dir}: incomplete set: ${problems.join("; ")}; ${hint}`);
  // Checksums last: the cheap checks above name missing work before any file is read.
  const damaged: string[] = [];
  for (const id of expected) {
    for (const f of found.get(id)!.files) {
      let bytes: Uint8Array;
      try {
        bytes = await Deno.readFile(`${root}/${f.path}`);
      } catch {
        damaged.push(`${f.path} (missing)`);
        continue;
      }
      if (bytes.length !== f.bytes || await sha256Hex(bytes) !== f.sha256) {
        damaged.push(`${f.path} (does not match its checksum)`);
      }
    }
  }
  if (damaged.length) {
    throw new Error(
      `${dir}: files changed or lost since their shard finished: ${listSample(damaged)}; ` +
        `delete those shards' manifests and rerun them`,
    );
  }
  return found;
}

/** A shard at work: which share it does and where it records what it did. */
export interface ShardRun {
  shard: Shard;
  recorder: ShardRecorder;
}

/** `path` relative to `root` (paths outside it are an error: manifests hold relative paths). */
export function relativeTo(root: string, path: string): string {
  const r = root.replace(/\/+$/, "") + "/";
  if (!path.startsWith(r)) throw new Error(`${path} is outside ${root}`);
  return path.slice(r.length);
}
