/**
 * Which share of a per-item pass one process does: `--shard K/N` (K counted from 0), or, without
 * the flag, the Slurm array task it runs as. Assignments depend only on the item list every shard
 * sees alike, never on timing, so N processes started independently agree on who does what and
 * together cover every item exactly once.
 */
import { UsageError } from "../cli/args.ts";

/** Shard `index` of `count` (0 ≤ index < count). */
export interface Shard {
  index: number;
  count: number;
}

/** The whole pass in one process. */
export const WHOLE: Shard = { index: 0, count: 1 };

/** Most shards a pass may be cut into (Slurm's default MaxArraySize is 1001). */
const MAX_SHARDS = 100_000;

/** `"K/N"` → shard; anything else is a UsageError naming what was expected. */
export function parseShard(text: string, what = "--shard"): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) throw new UsageError(`${what} must be K/N (K counted from 0, K < N), got "${text}"`);
  const index = Number(m[1]), count = Number(m[2]);
  if (count < 1 || count > MAX_SHARDS) {
    throw new UsageError(`${what}: N must be in [1, ${MAX_SHARDS}], got "${text}"`);
  }
  if (index >= count) {
    throw new UsageError(`${what}: K counts from 0 and must be < N, got "${text}"`);
  }
  return { index, count };
}

/**
 * The shard of a Slurm array task: `SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN` in
 * steps of `SLURM_ARRAY_TASK_STEP` (arrays such as `--array=1-3` or `0-10:2` need not start at
 * 0), out of `SLURM_ARRAY_TASK_COUNT`. Null outside an array job.
 */
export function shardFromEnv(env: (name: string) => string | undefined): Shard | null {
  const id = env("SLURM_ARRAY_TASK_ID"), n = env("SLURM_ARRAY_TASK_COUNT");
  if (id === undefined || n === undefined) return null;
  const num = (name: string, v: string | undefined, def: number) => {
    if (v === undefined || v === "") return def;
    const x = Number(v);
    if (!Number.isInteger(x) || x < 0) {
      throw new UsageError(`${name}="${v}" is not a non-negative integer`);
    }
    return x;
  };
  const taskId = num("SLURM_ARRAY_TASK_ID", id, 0);
  const count = num("SLURM_ARRAY_TASK_COUNT", n, 0);
  const min = num("SLURM_ARRAY_TASK_MIN", env("SLURM_ARRAY_TASK_MIN"), 0);
  const step = Math.max(1, num("SLURM_ARRAY_TASK_STEP", env("SLURM_ARRAY_TASK_STEP"), 1));
  if ((taskId - min) % step !== 0 || taskId < min) {
    throw new UsageError(
      `SLURM_ARRAY_TASK_ID=${taskId} is not MIN + k·STEP (MIN ${min}, STEP ${step})`,
    );
  }
  const index = (taskId - min) / step;
  if (count < 1 || index >= count) {
    throw new UsageError(
      `Slurm array task ${taskId} (index ${index} from MIN ${min}) is outside SLURM_ARRAY_TASK_COUNT=${count}; ` +
        `array jobs of a sharded pass must use a contiguous --array=MIN-MAX[:STEP]`,
    );
  }
  return { index, count };
}

/**
 * The shard a command runs: `--shard` when given, else the Slurm array task, else null (the whole
 * pass). `env` defaults to the process environment.
 */
export function resolveShard(
  flag: string | undefined,
  env: (name: string) => string | undefined = (k) => Deno.env.get(k),
): Shard | null {
  if (flag !== undefined) return parseShard(flag);
  return shardFromEnv(env);
}

export const shardLabel = (s: Shard) => `${s.index}/${s.count}`;

/** 32-bit FNV-1a of the UTF-8 bytes of `id`: stable across machines, runs and JS engines. */
export function stableHash(id: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(id)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * Assigns weighted items (slides, weight = file size) to `count` shards so that the heaviest
 * shard is light: largest first (ties by the stable hash of the id, then the id), each to the
 * currently lightest shard (ties to the lowest index). Returns each item's shard index, in input
 * order. Depends only on the (id, weight) set, not on its order.
 */
export function assignBalanced(items: { id: string; weight: number }[], count: number): number[] {
  const order = items.map((it, i) => ({ ...it, i, h: stableHash(it.id) }));
  order.sort((a, b) =>
    b.weight - a.weight || a.h - b.h || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
  const load = new Array<number>(count).fill(0);
  const out = new Array<number>(items.length);
  for (const it of order) {
    let best = 0;
    for (let s = 1; s < count; s++) if (load[s] < load[best]) best = s;
    load[best] += Math.max(0, it.weight);
    out[it.i] = best;
  }
  return out;
}

/**
 * Whether batch `batch` (0-based, counted over the whole pass in its fixed order) belongs to
 * `shard`: round robin. Per-patch passes shard whole batches of the unsharded pass, so every
 * patch is computed in the same batch, with the same neighbours, as without sharding.
 */
export function ownsBatch(shard: Shard | null | undefined, batch: number): boolean {
  return !shard || batch % shard.count === shard.index;
}
