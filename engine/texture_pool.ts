/**
 * Scratch rgba32float storage textures, reused by size. Ops that stage an operand in a texture
 * (the texture matmul on software adapters, kernels/matmul_texture.ts) take one for the length of
 * a launch and give it back at once: every use is ordered on the one queue, so a texture may serve
 * the next launch in the same batch. Textures are kept while the cache holds under
 * `MAX_CACHED_BYTES`; beyond that the least recently used are destroyed (after a submit, since
 * the open batch may still use them). Textures in use count as live bytes in `memoryStats()`.
 */
import { gpu, onNewDevice } from "./device.ts";
import { flush } from "./dispatch.ts";
import { pool } from "./pool.ts";

const MAX_CACHED_BYTES = 256 * 2 ** 20;
// COPY_DST: matmul operands already in the texture layout are copied in (engine/ops/matmul_texture.ts).
const USAGE = GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST;

interface Entry {
  texture: GPUTexture;
  view: GPUTextureView;
  bytes: number;
  lastUse: number;
}

const free = new Map<string, Entry[]>();
let cachedBytes = 0;
let clock = 0;

onNewDevice(() => {
  free.clear();
  cachedBytes = 0;
});

/** A width × height rgba32float texture (16 bytes a texel) usable as a read or write storage texture. */
export function acquireTexture(width: number, height: number): Entry {
  const max = gpu().limits.maxTextureDimension2D;
  if (width > max || height > max) {
    throw new Error(
      `texture ${width}×${height} exceeds this adapter's maxTextureDimension2D (${max})`,
    );
  }
  const key = `${width}x${height}`;
  const e = free.get(key)?.pop();
  if (e) {
    cachedBytes -= e.bytes;
    pool.account(e.bytes);
    return e;
  }
  const texture = gpu().device.createTexture({
    size: [width, height],
    format: "rgba32float",
    usage: USAGE,
    label: `scratch ${key}`,
  });
  const bytes = width * height * 16;
  pool.account(bytes);
  return { texture, view: texture.createView(), bytes, lastUse: 0 };
}

/** Gives a texture back for reuse (its contents may be overwritten by the next launch). */
export function releaseTexture(e: Entry): void {
  const key = `${e.texture.width}x${e.texture.height}`;
  e.lastUse = ++clock;
  pool.account(-e.bytes);
  let list = free.get(key);
  if (!list) free.set(key, list = []);
  list.push(e);
  cachedBytes += e.bytes;
  while (cachedBytes > MAX_CACHED_BYTES) {
    let oldest: { key: string; i: number; e: Entry } | null = null;
    for (const [k, l] of free) {
      l.forEach((x, i) => {
        if (!oldest || x.lastUse < oldest.e.lastUse) oldest = { key: k, i, e: x };
      });
    }
    if (!oldest) break;
    flush();
    const o = oldest as { key: string; i: number; e: Entry };
    free.get(o.key)!.splice(o.i, 1);
    cachedBytes -= o.e.bytes;
    o.e.texture.destroy();
  }
}

/** Bytes of scratch textures parked for reuse (not in `memoryStats()`; bench/memory.ts shows them). */
export function cachedTextureBytes(): number {
  return cachedBytes;
}

/** Whether WGSL read-only storage textures are available (the texture matmul needs them). */
export function hasReadonlyStorageTextures(): boolean {
  const f = (navigator.gpu as unknown as { wgslLanguageFeatures?: Set<string> })
    .wgslLanguageFeatures;
  return !!f?.has("readonly_and_readwrite_storage_textures");
}
