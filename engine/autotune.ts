/**
 * Per-adapter matmul tiles chosen by measurement (TVM-style, small search space): the choice for
 * a shape class (log2 buckets of M, N, K and the batch) is read here, synchronously, when a matmul
 * is launched; `deno task tune` (bench/tune.ts, engine/autotune_search.ts) measures and fills it.
 *
 * The cache is one JSON file per adapter under `$XDG_CACHE_HOME/epsam-webgpu/` (else
 * `~/.cache/epsam-webgpu/`; `ENGINE_AUTOTUNE_DIR` overrides), named by a hash of the adapter's
 * identity: vendor, architecture, device and description as WebGPU reports them (llvmpipe's
 * description carries its vector width, "llvmpipe (LLVM 15.0.6, 256 bits)", so
 * LP_NATIVE_VECTOR_WIDTH=512 gets its own file), the Deno runtime (which brings its WebGPU
 * implementation: WebGPU exposes no driver version), and a hash of the WGSL the kernel generators
 * emit for every candidate (a changed generator invalidates every choice). A file that does not
 * parse, or was written for another adapter or generator, is ignored with one warning on stderr.
 *
 * Why tuning is never lazy: ops record GPU work synchronously and timing needs to await the
 * device, so a search cannot run inside a matmul call; and a run's speed should not depend on
 * whether it was the first. Results do not depend on the tile: every candidate adds each output's
 * products in the same k order, and the search rejects a candidate whose output differs from the
 * default tile's (tests/ops/matmul_test.ts checks every candidate bitwise on this adapter).
 *
 * `ENGINE_AUTOTUNE=off` ignores the cache (default tiles; tests/setup.ts sets it for the suite).
 */
import { gpu } from "./device.ts";
import { writeFileAtomic } from "./io/atomic.ts";
import {
  type AnyMatmulTile,
  matmulKernel,
  matmulTileName,
  type MatmulVariant,
  TILED_TILE,
} from "../kernels/matmul.ts";
import {
  matmulTextureKernel,
  TEXTURE_TILE,
  TEXTURE_TILE_NARROW,
  TEXTURE_TILE_SMALL,
} from "../kernels/matmul_texture.ts";

/**
 * Matmul variants whose tile the tuner chooses: the texture variant (software adapters' default)
 * and the workgroup-tiled one (GPUs'). The register variant runs only products under a million
 * multiply-adds on software adapters, where launch costs swamp the tile.
 */
export type TunedFamily = Extract<MatmulVariant, "texture" | "tiled">;

/** A tile of either family (texture: `ku`, `order`; tiled: `bk`). */
export type TunedTile = AnyMatmulTile;

/**
 * The search space. Texture: TM×TN in {4×4, 8×4, 4×8, 8×8, 8×12, 12×8, 12×12, 16×8, 8×16} on 8×8
 * threads, k-major; 16×8 and 16×16 threads; accumulator-major 8×8 to 16×16 (the default) and one
 * two-texel loop (kernels/matmul_texture.ts). Tiled (GPUs): output tiles of 64×64 to 128×128 with 4×4 to 8×8
 * outputs per thread and slices 8 or 16 deep, all within 16 KiB of shared memory.
 */
export function tileCandidates(family: TunedFamily): TunedTile[] {
  const t = (wx: number, wy: number, tm: number, tn: number, more: Partial<TunedTile> = {}) => ({
    wx,
    wy,
    tm,
    tn,
    ...more,
  });
  if (family === "tiled") {
    return [
      TILED_TILE,
      t(16, 16, 4, 4, { bk: 8 }),
      t(16, 16, 8, 4, { bk: 8 }),
      t(16, 16, 4, 8, { bk: 8 }),
      t(16, 16, 8, 8, { bk: 8 }),
      t(8, 8, 8, 8, { bk: 16 }),
      t(16, 8, 4, 8, { bk: 16 }),
      t(8, 16, 8, 4, { bk: 16 }),
    ];
  }
  const sizes = [[4, 4], [8, 4], [4, 8], [8, 8], [8, 12], [12, 8], [12, 12], [16, 8], [8, 16]];
  return [
    ...sizes.map(([m, n]) => t(8, 8, m, n)),
    t(16, 8, 8, 8),
    t(16, 16, 8, 8, { order: "acc" }),
    ...[[8, 8], [12, 12], [12, 8], [8, 12], [16, 8], [8, 16], [16, 16]].map(([m, n]) =>
      t(8, 8, m, n, { order: "acc" })
    ),
    t(8, 8, 8, 8, { order: "acc", ku: 2 }),
  ];
}

/**
 * The untuned rule: tiled, its one tile; texture, the big tile, the narrow one where N fits its
 * width (64), the small one where M or N is under half the big tile.
 */
export function defaultTile(family: TunedFamily, M: number, N: number): TunedTile {
  if (family === "tiled") return TILED_TILE;
  const [big, narrow, small] = [TEXTURE_TILE, TEXTURE_TILE_NARROW, TEXTURE_TILE_SMALL];
  if (M * 2 < big.wy * big.tm || N * 2 < big.wx * big.tn) return small;
  return N <= narrow.wx * narrow.tn ? narrow : big;
}

/** Log2 bucket (rounded) of a positive size. */
function bucket(x: number): number {
  return Math.round(Math.log2(Math.max(1, x)));
}

/** The class a problem's tile is chosen for: `texture m10 n10 k10 b0` (rounded log2 buckets). */
export function shapeClass(
  family: TunedFamily,
  M: number,
  N: number,
  K: number,
  batch = 1,
): string {
  return `${family} m${bucket(M)} n${bucket(N)} k${bucket(K)} b${bucket(batch)}`;
}

/** What identifies an adapter (and the software under it) for the cache. */
export interface AdapterIdentity {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** The Deno runtime, which brings the WebGPU implementation (no driver version is exposed). */
  runtime: string;
}

/** This process's adapter identity. */
export function adapterIdentity(): AdapterIdentity {
  return { ...gpu().adapterInfo, runtime: `deno ${Deno.version.deno}` };
}

/** FNV-1a, 64 bits, as 16 hex digits: a stable name, not a security property. */
export function fnv1a64(text: string): string {
  let h = 0xcbf29ce484222325n;
  const bytes = new TextEncoder().encode(text);
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, "0");
}

let generatorHashMemo: string | null = null;

/**
 * Hash of the WGSL every candidate compiles to (the plain and the accumulating
 * epilogue): a change to a kernel generator or to the search space gives a new hash.
 */
export function generatorHash(): string {
  if (generatorHashMemo) return generatorHashMemo;
  const parts: string[] = [];
  for (const rt of tileCandidates("texture")) {
    for (const beta of [false, true]) {
      parts.push(matmulTextureKernel({ bias: false, beta }, rt).wgsl());
    }
  }
  for (const rt of tileCandidates("tiled")) {
    for (const beta of [false, true]) {
      const spec = {
        variant: "tiled" as const,
        transA: false,
        transB: false,
        vecA: true,
        vecB: true,
        bias: false,
        beta,
      };
      parts.push(matmulKernel(spec, rt).wgsl());
    }
  }
  return (generatorHashMemo = fnv1a64(parts.join("\n//--\n")));
}

/** One class's measured choice. */
export interface TuneEntry {
  /** The chosen tile. */
  tile: TunedTile;
  /** Its name ({@link matmulTileName}). */
  name: string;
  /** The problem it was measured on: [batch, M, N, K]. */
  shape: number[];
  /** Best-of-rounds ms of the chosen and of the default tile on that problem. */
  ms: number;
  defaultMs: number;
  /** How the times were taken (timestamp or wall clock, runs). */
  method: string;
  /** Every candidate: best ms, or why it was left out (an output not bitwise the default's). */
  candidates: { name: string; ms?: number; rejected?: string }[];
  /** ISO time of the measurement. */
  at: string;
  /** Load average when measured (Linux), so a choice made on a busy machine shows it. */
  load?: string;
}

/** The cache file of one adapter. */
export interface TuneCache {
  format: typeof CACHE_FORMAT;
  adapter: AdapterIdentity;
  generator: string;
  entries: Record<string, TuneEntry>;
}

const CACHE_FORMAT = "epsam-webgpu/autotune@1";
/** Largest cache file read (a few hundred classes take ~100 KiB). */
const MAX_CACHE_BYTES = 4 << 20;

/** The cache directory: `ENGINE_AUTOTUNE_DIR`, else `$XDG_CACHE_HOME/epsam-webgpu`, else ~/.cache. */
export function cacheDir(): string {
  const env = (k: string) => Deno.env.get(k) || undefined;
  const dir = env("ENGINE_AUTOTUNE_DIR");
  if (dir) return dir;
  const base = env("XDG_CACHE_HOME") ?? `${env("HOME") ?? "."}/.cache`;
  return `${base}/epsam-webgpu`;
}

/** The cache file of an adapter: `autotune-<hash of its identity>.json` in {@link cacheDir}. */
export function cachePath(id: AdapterIdentity, dir = cacheDir()): string {
  return `${dir}/autotune-${fnv1a64(JSON.stringify(id))}.json`;
}

/** An empty cache for an adapter and generator. */
export function emptyCache(id: AdapterIdentity, generator: string): TuneCache {
  return { format: CACHE_FORMAT, adapter: id, generator, entries: {} };
}

function isTile(t: unknown): t is TunedTile {
  const o = t as Record<string, unknown> | null;
  const pos = (x: unknown) => Number.isInteger(x) && (x as number) > 0 && (x as number) <= 64;
  return !!o && typeof o === "object" && pos(o.wx) && pos(o.wy) && pos(o.tm) && pos(o.tn) &&
    (o.ku === undefined || o.ku === 1 || o.ku === 2) && (o.bk === undefined || pos(o.bk)) &&
    (o.order === undefined || o.order === "k" || o.order === "acc");
}

/**
 * Reads the cache file at `path` for adapter `id` and generator `generator`. Missing: an empty
 * cache, silently. Unreadable, not JSON, another format, another adapter or generator, or an
 * entry whose tile is not a candidate: an empty cache (or the entry dropped) and one line through
 * `warn` naming the file and what was wrong.
 */
export function readCache(
  path: string,
  id: AdapterIdentity,
  generator: string,
  warn: (msg: string) => void = (m) => console.warn(m),
): TuneCache {
  const empty = emptyCache(id, generator), out = emptyCache(id, generator);
  let text: string;
  try {
    const st = Deno.statSync(path);
    if (st.size > MAX_CACHE_BYTES) {
      warn(`autotune: ignoring ${path}: ${st.size} bytes, more than ${MAX_CACHE_BYTES}`);
      return empty;
    }
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      warn(`autotune: ignoring ${path}: cannot read it (${(e as Error).message})`);
    }
    return empty;
  }
  let raw: Partial<TuneCache>;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    warn(`autotune: ignoring ${path}: not JSON (${(e as Error).message}); default tiles`);
    return empty;
  }
  if (!raw || typeof raw !== "object" || raw.format !== CACHE_FORMAT) {
    warn(`autotune: ignoring ${path}: field "format" is not "${CACHE_FORMAT}"`);
    return empty;
  }
  if (JSON.stringify(raw.adapter) !== JSON.stringify(id)) {
    warn(
      `autotune: ignoring ${path}: written for adapter ${JSON.stringify(raw.adapter)}, ` +
        `this is ${JSON.stringify(id)}`,
    );
    return empty;
  }
  if (raw.generator !== generator) {
    warn(
      `autotune: ignoring ${path}: written for kernel generator ${raw.generator}, this is ` +
        `${generator} (run \`deno task tune\` again)`,
    );
    return empty;
  }
  if (!raw.entries || typeof raw.entries !== "object") {
    warn(`autotune: ignoring ${path}: field "entries" is not an object`);
    return empty;
  }
  const names = new Set(
    [...tileCandidates("texture"), ...tileCandidates("tiled")].map(matmulTileName),
  );
  for (const [cls, e] of Object.entries(raw.entries)) {
    if (!e || !isTile(e.tile) || !names.has(matmulTileName(e.tile))) {
      warn(`autotune: ${path}: entry "${cls}" has no candidate tile; dropped`);
      continue;
    }
    out.entries[cls] = e;
  }
  return out;
}

/** Writes a cache file atomically (creating its directory). */
export async function writeCache(path: string, cache: TuneCache): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || ".", { recursive: true });
  await writeFileAtomic(path, JSON.stringify(cache, null, 1) + "\n");
}

/** Whether tuned tiles are used: not with `ENGINE_AUTOTUNE=off` (read at each lookup). */
export function autotuneEnabled(): boolean {
  return Deno.env.get("ENGINE_AUTOTUNE") !== "off";
}

let loaded: { device: GPUDevice; cache: TuneCache } | null = null;

/**
 * This adapter's cache, read once per device. Its `generator` is "" when there was no file: set it
 * with {@link generatorHash} before writing.
 */
export function adapterCache(): TuneCache {
  const g = gpu();
  if (loaded?.device !== g.device) {
    const id = adapterIdentity();
    const path = cachePath(id);
    let absent = false;
    try {
      Deno.statSync(path);
    } catch (e) {
      absent = e instanceof Deno.errors.NotFound;
    }
    // No file (the common case): no need to hash the generators' WGSL (the tuner sets it).
    loaded = {
      device: g.device,
      cache: absent ? emptyCache(id, "") : readCache(path, id, generatorHash()),
    };
  }
  return loaded.cache;
}

/** Drops the in-memory copy (after the file changed under the process: the tuner, tests). */
export function forgetAdapterCache(): void {
  loaded = null;
}

/**
 * The tuned tile for a product, or null (then the caller's default rule): only when autotuning is
 * on and this adapter's cache has the class.
 */
export function tunedTile(
  family: TunedFamily,
  M: number,
  N: number,
  K: number,
  batch = 1,
): TunedTile | null {
  if (!autotuneEnabled()) return null;
  return adapterCache().entries[shapeClass(family, M, N, K, batch)]?.tile ?? null;
}

/** The tile a product runs with: the tuned one, else {@link defaultTile}. */
export function matmulTile(
  family: TunedFamily,
  M: number,
  N: number,
  K: number,
  batch = 1,
): TunedTile {
  return tunedTile(family, M, N, K, batch) ?? defaultTile(family, M, N);
}
