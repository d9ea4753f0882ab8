/**
 * Scratch rgba32float storage textures, reused by size. Ops that stage an operand in a texture
 * (the texture matmul on software adapters, kernels/matmul_texture.ts) take one for the length of
 * a launch and give it back at once: every use is ordered on the one queue, so a texture may serve
 * the next launch in the same batch. Parked textures are kept up to a cap ({@link cacheCap}: 256
 * MiB); beyond it the least recently used are destroyed
 * after the next submit, since the open batch may still use them (submitted early once those
 * hold more than the cap), and `trimPool()` destroys every parked one. `memoryStats()` counts them like buffers: in use as live bytes, parked as pooled
 * bytes, both in the held peak and in `textureBytes`. `textureStats()` counts requests, reuses and
 * textures made (by shape); `recordTextureRequests()` logs a run's requests for bench/texture_sim.ts.
 */
import { gpu, onNewDevice } from "./device.ts";
import { flush } from "./dispatch.ts";
import { pool } from "./pool.ts";

/** The parked bytes' cap (see {@link cacheCap}). */
export const MAX_CACHED_BYTES = 256 * 2 ** 20;
/** The cap {@link setTextureCacheBytes} set; null: {@link cacheCap}'s own. */
let capOverride: number | null = null;

/**
 * How many bytes of textures may stay parked: 256 MiB. Parked textures count in the held peak (on
 * the checkpointed ResNet-50-ADL step at b16 @512², bench/memory.ts --dry, seventh session after
 * every merge: held peak 5.60–5.66 GiB with this cap or with two of the largest texture made,
 * depending on the policy's place in the run — that step makes 180 textures either way, a cycle
 * through the model's shapes that no cap that matters can keep). The lower cap cost the SAM ViT-B
 * encoder @1024 dearly: 42–46 s a pass against 28–31 s with this one (quiet, one run each): its
 * launches repeat a few large shapes (64 MiB attention probabilities among them) that a lower cap
 * evicts between blocks.
 */
function cacheCap(): number {
  return capOverride ?? MAX_CACHED_BYTES;
}
// COPY_DST: matmul operands already in the texture layout are copied in (engine/ops/matmul_texture.ts).
const USAGE = GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST;

interface Entry {
  /** The device that made it: one given back after a device loss is dropped. */
  device: GPUDevice;
  texture: GPUTexture;
  view: GPUTextureView;
  bytes: number;
  lastUse: number;
  /** Serial number (the request log's name for it). */
  id: number;
}

/**
 * One request to the pool, for replaying the pool's traffic through other policies
 * (bench/texture_sim.ts): ["a", id, width, height] a texture asked for and the id of the one
 * handed out, ["r", id] given back.
 */
export type TextureRequest = [kind: "a", id: number, width: number, height: number] | [
  kind: "r",
  id: number,
];
/** The requests since {@link recordTextureRequests} began a log; null: not recording. */
let requestLog: TextureRequest[] | null = null;
let nextId = 0;

const free = new Map<string, Entry[]>();
let cachedBytes = 0;
let clock = 0;
/** Textures made so far, and their bytes (bench/memory.ts: what a smaller cache costs). */
let created = 0, createdBytes = 0;
/** Requests served, how many of them by a parked texture, and the CPU ms spent in createTexture. */
let acquired = 0, reused = 0, createMs = 0;
/** Textures made by shape ("W×H"): the requested-size distribution a size-class policy would need. */
const createdShapes = new Map<string, number>();
/**
 * Evicted textures the open batch may still use: destroyed right after the next submit (destroying
 * one now would fail that submit; submitting early to destroy it would cut the batch short). They
 * stay counted as parked until then.
 */
let doomed: Entry[] = [];
let doomedBytes = 0;

onNewDevice(() => {
  // The pool forgot its pooled bytes; the parked textures went with the old device.
  pool.textureBytes -= cachedBytes;
  for (const e of doomed) pool.textureBytes -= e.bytes;
  free.clear();
  doomed = [];
  doomedBytes = 0;
  cachedBytes = 0;
});
pool.onTrim(trimTextures);
pool.onSubmit(destroyDoomed);

function destroyDoomed(): void {
  if (!doomed.length) return;
  for (const e of doomed) {
    e.texture.destroy();
    pool.accountTextures(0, -e.bytes);
  }
  doomed = [];
  doomedBytes = 0;
}

/** A width × height rgba32float texture (16 bytes a texel) usable as a read or write storage texture. */
export function acquireTexture(width: number, height: number): Entry {
  const max = gpu().limits.maxTextureDimension2D;
  if (width > max || height > max) {
    throw new Error(
      `texture ${width}×${height} exceeds this adapter's maxTextureDimension2D (${max})`,
    );
  }
  const key = `${width}x${height}`;
  acquired++;
  const e = free.get(key)?.pop();
  if (e) {
    requestLog?.push(["a", e.id, width, height]);
    reused++;
    cachedBytes -= e.bytes;
    pool.accountTextures(e.bytes, 0);
    return e;
  }
  const t0 = performance.now();
  const texture = gpu().device.createTexture({
    size: [width, height],
    format: "rgba32float",
    usage: USAGE,
    label: `scratch ${key}`,
  });
  createMs += performance.now() - t0;
  const bytes = width * height * 16;
  created++;
  createdShapes.set(key, (createdShapes.get(key) ?? 0) + 1);
  createdBytes += bytes;
  pool.accountTextures(bytes, bytes);
  const id = nextId++;
  requestLog?.push(["a", id, width, height]);
  return { device: gpu().device, texture, view: texture.createView(), bytes, lastUse: 0, id };
}

/** Gives a texture back for reuse (its contents may be overwritten by the next launch). */
export function releaseTexture(e: Entry): void {
  const key = `${e.texture.width}x${e.texture.height}`;
  e.lastUse = ++clock;
  requestLog?.push(["r", e.id]);
  if (e.device !== gpu().device) {
    // Made on a device since lost: nothing to keep.
    pool.accountTextures(-e.bytes, -e.bytes);
    return;
  }
  pool.accountTextures(-e.bytes, 0);
  let list = free.get(key);
  if (!list) free.set(key, list = []);
  list.push(e);
  cachedBytes += e.bytes;
  evictOver(cacheCap());
}

/** Destroys the least recently used parked textures until at most `limit` bytes stay parked. */
function evictOver(limit: number): void {
  while (cachedBytes > limit) {
    let oldest: { key: string; i: number; e: Entry } | null = null;
    for (const [k, l] of free) {
      l.forEach((x, i) => {
        if (!oldest || x.lastUse < oldest.e.lastUse) oldest = { key: k, i, e: x };
      });
    }
    if (!oldest) break;
    const o = oldest as { key: string; i: number; e: Entry };
    free.get(o.key)!.splice(o.i, 1);
    cachedBytes -= o.e.bytes;
    doomed.push(o.e);
    doomedBytes += o.e.bytes;
  }
  // After the open batch; submitted early once they hold more than the cap (launches making
  // textures in turn would pile them up in one batch). With no batch open, at once.
  if (doomedBytes > limit) flush();
  if (doomed.length && !pool.batchOpen()) destroyDoomed();
}

/**
 * Sets how many bytes of scratch textures may stay parked (bench/memory.ts compares caps; null:
 * the pool's own, {@link cacheCap}); parked ones over it are destroyed, least recently used first.
 * Returns the previous setting.
 */
export function setTextureCacheBytes(bytes: number | null): number | null {
  const prev = capOverride;
  capOverride = bytes;
  evictOver(cacheCap());
  return prev;
}

/** Destroys every parked texture (after submitting the open batch, which may still use them). */
function trimTextures(): void {
  if (cachedBytes === 0 && !doomed.length) return;
  flush();
  destroyDoomed();
  for (const list of free.values()) {
    for (const e of list) {
      e.texture.destroy();
      pool.accountTextures(0, -e.bytes);
    }
  }
  free.clear();
  cachedBytes = 0;
}

/** The pool's counters since the process started (bench/memory.ts prints a step's differences). */
export interface TextureStats {
  /** Textures asked for. */
  acquired: number;
  /** Of those, served by a parked texture of the same shape. */
  reused: number;
  /** Made anew (acquired − reused), and their bytes. */
  created: number;
  createdBytes: number;
  /**
   * CPU ms spent in createTexture. The adapter's zero-fill of a new texture is not in it: that
   * runs on the queue at first use (`bench/texture_churn.ts --create` measures it).
   */
  createMs: number;
  /** Textures made by shape "W×H" (texels), with their counts. */
  shapes: Map<string, number>;
}

/** A copy of the pool's counters (see {@link TextureStats}). */
export function textureStats(): TextureStats {
  return {
    acquired,
    reused,
    created,
    createdBytes,
    createMs,
    shapes: new Map(createdShapes),
  };
}

/**
 * Starts a fresh log of the pool's requests (`on`), or stops logging; returns the log so far
 * (empty when none was being kept). bench/memory.ts replays a step's log through other policies.
 */
export function recordTextureRequests(on: boolean): TextureRequest[] {
  const log = requestLog ?? [];
  requestLog = on ? [] : null;
  return log;
}

/** Bytes of scratch textures parked for reuse (counted in `memoryStats().pooledBytes`). */
export function cachedTextureBytes(): number {
  return cachedBytes;
}

/** Whether WGSL read-only storage textures are available (the texture matmul needs them). */
export function hasReadonlyStorageTextures(): boolean {
  const f = (navigator.gpu as unknown as { wgslLanguageFeatures?: Set<string> })
    .wgslLanguageFeatures;
  return !!f?.has("readonly_and_readwrite_storage_textures");
}
