/**
 * The viewer's tiles: slide tiles (JPEG, cut by the project's WSI reader) and overlay tiles (PNG
 * with alpha: the tumour probability heat map from `probability.tif`, the tissue mask), all on the
 * slide's deep-zoom grid so every layer lines up at every zoom. Encoded tiles are kept in one LRU
 * cache bounded in bytes; slides are opened once, each with a bounded decoded-tile cache. A slide
 * that fails to open or to decode gives an error tile (and the message in `/api/info`), never a
 * failed server.
 */
import { encode as encodeJpeg } from "jpeg-js";
import { JpegEncoderPool } from "./encoder.ts";
import { encodePng } from "../../engine/io/png.ts";
import { jet } from "../plots.ts";
import { openSlide, type Slide } from "../wsi/slide.ts";
import { slideTissueMask } from "../wsi/tissue.ts";
import { TileCache } from "../wsi/tile_cache.ts";
import type { SlideEntry } from "./catalog.ts";
import {
  cutTile,
  type DeepZoomInfo,
  deepZoomInfo,
  overWhite,
  type PyramidSource,
  type TileGeometry,
  tileGeometry,
} from "./deep_zoom.ts";

export type OverlayKind = "heatmap" | "tissue";

/** An encoded tile and its content type. */
export interface TileBytes {
  bytes: Uint8Array;
  type: "image/jpeg" | "image/png";
  /** Set on error tiles: the reader's message. */
  error?: string;
  byteLength: number;
}

export interface TileServiceOptions {
  /** Encoded-tile cache budget (default 64 MiB). */
  cacheBytes?: number;
  /** Decoded-tile cache budget of each open slide (default 32 MiB). */
  slideCacheBytes?: number;
  /** JPEG-encoding workers (default: the number of CPUs, at most 4; 0 encodes on this thread). */
  encoderWorkers?: number;
  /** Slides open at a time (default 4). */
  maxOpenSlides?: number;
  /** JPEG quality (default 85). */
  quality?: number;
}

/** What stays known of a slide after it is closed: its size and pyramid, or why it cannot be read. */
export interface SlideMeta {
  error: string | null;
  dz: DeepZoomInfo | null;
  levels: { width: number; height: number; downsample: number }[];
  mpp: [number, number] | null;
}

/** An open slide with its lazily built overlay sources, held while `users` > 0. */
interface OpenSlide {
  slide: Slide;
  heat?: Promise<PyramidSource | string>;
  tissue?: Promise<PyramidSource | string>;
  /** The probability TIFF behind `heat`, closed with the slide. */
  prob?: Slide;
  users: number;
  evicted: boolean;
}

/** A pyramid seen at another scale: level-0 coordinates are divided by `scale` before reading. */
function scaledSource(src: PyramidSource, scale: number, w0: number, h0: number): PyramidSource {
  return {
    levels: src.levels.map((l) => ({
      width: Math.round(l.width * scale),
      height: Math.round(l.height * scale),
      downsample: l.downsample * scale,
    })).map((l, i) => (i === 0 ? { ...l, width: w0, height: h0 } : l)),
    readRegion: (lv, x0, y0, w, h) =>
      src.readRegion(lv, Math.floor(x0 / scale), Math.floor(y0 / scale), w, h),
  };
}

/** One 8-bit gray plane as a single-level pyramid (the tissue mask). */
function planeSource(
  plane: Uint8Array,
  pw: number,
  ph: number,
  downsample: number,
): PyramidSource {
  return {
    levels: [{ width: pw * downsample, height: ph * downsample, downsample }],
    readRegion(_lv, x0, y0, w, h) {
      const out = new Uint8Array(w * h * 4);
      const lx = Math.floor(x0 / downsample), ly = Math.floor(y0 / downsample);
      for (let y = 0; y < h; y++) {
        const sy = ly + y;
        if (sy < 0 || sy >= ph) continue;
        for (let x = 0; x < w; x++) {
          const sx = lx + x;
          if (sx < 0 || sx >= pw) continue;
          const o = (y * w + x) * 4;
          out[o] = out[o + 1] = out[o + 2] = plane[sy * pw + sx];
          out[o + 3] = 255;
        }
      }
      return Promise.resolve(out);
    },
  };
}

/** A small gray tile with a red cross: what the page shows where a slide cannot be read. */
function errorTile(w: number, h: number, message: string): TileBytes {
  const px = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 4;
      const onCross = Math.abs(x * h - y * w) < 3 * Math.max(w, h) ||
        Math.abs((w - 1 - x) * h - y * w) < 3 * Math.max(w, h);
      px[o] = onCross ? 200 : 90;
      px[o + 1] = px[o + 2] = onCross ? 30 : 90;
      px[o + 3] = 255;
    }
  }
  const bytes = encodePng({ data: px, width: w, height: h, channels: 4 });
  return { bytes, type: "image/png", error: message, byteLength: bytes.byteLength };
}

/**
 * Serves slide and overlay tiles of the catalogue's slides. At most `maxOpenSlides` slides are
 * open at a time (least recently used closed once no request uses it), so the decoded-tile caches
 * and tissue masks stay bounded however many slides a folder holds.
 */
export class TileService {
  readonly cache: TileCache<TileBytes>;
  #meta = new Map<string, Promise<SlideMeta>>();
  #open = new Map<string, Promise<OpenSlide | string>>();
  #slideCacheBytes: number;
  #maxOpen: number;
  #quality: number;
  #pool: JpegEncoderPool | null;

  constructor(readonly entries: Map<string, SlideEntry>, o: TileServiceOptions = {}) {
    const workers = o.encoderWorkers ?? Math.min(4, navigator.hardwareConcurrency || 1);
    this.#pool = workers > 0 ? new JpegEncoderPool(workers) : null;
    this.cache = new TileCache(o.cacheBytes ?? 64 * 2 ** 20);
    this.#slideCacheBytes = o.slideCacheBytes ?? 32 * 2 ** 20;
    this.#maxOpen = Math.max(1, o.maxOpenSlides ?? 4);
    this.#quality = o.quality ?? 85;
  }

  /** Bytes the caches may hold at most: encoded tiles plus each open slide's decoded tiles. */
  get boundBytes(): number {
    return this.cache.maxBytes + this.#maxOpen * this.#slideCacheBytes;
  }

  /** Slides open now. */
  get openCount(): number {
    return this.#open.size;
  }

  /** A slide's size and pyramid (opening it once), or null for an unknown id. */
  meta(id: string): Promise<SlideMeta> | null {
    if (!this.entries.has(id)) return null;
    let m = this.#meta.get(id);
    if (!m) {
      m = this.use(id, (o) => {
        const s = o.slide;
        const L = s.levels;
        return Promise.resolve({
          error: null,
          dz: deepZoomInfo(L[0].width, L[0].height, L[L.length - 1].downsample),
          levels: L.map(({ width, height, downsample }) => ({ width, height, downsample })),
          mpp: s.mpp,
        });
      }).then((r) => r ?? { error: "unknown slide", dz: null, levels: [], mpp: null })
        .catch((e) => ({ error: (e as Error).message, dz: null, levels: [], mpp: null }));
      this.#meta.set(id, m);
    }
    return m;
  }

  /**
   * Runs `fn` with the slide open (opening it, and closing the least recently used one beyond the
   * limit once idle). Null for an unknown id; throws the reader's error for a bad slide.
   */
  async use<T>(id: string, fn: (o: OpenSlide) => Promise<T>): Promise<T | null> {
    const e = this.entries.get(id);
    if (!e) return null;
    let p = this.#open.get(id);
    if (p) {
      this.#open.delete(id); // most recently used last
      this.#open.set(id, p);
    } else {
      p = openSlide(e.path, { cacheBytes: this.#slideCacheBytes }).then(
        (slide): OpenSlide => ({ slide, users: 0, evicted: false }),
        (err) => (err as Error).message,
      );
      this.#open.set(id, p);
      this.#evict();
    }
    const o = await p;
    if (typeof o === "string") {
      this.#open.delete(id); // a bad slide keeps only its meta (error)
      throw new Error(o);
    }
    o.users++;
    try {
      return await fn(o);
    } finally {
      o.users--;
      if (o.evicted && o.users === 0) await this.#close(o);
    }
  }

  #evict(): void {
    while (this.#open.size > this.#maxOpen) {
      const [id, p] = this.#open.entries().next().value!;
      this.#open.delete(id);
      p.then(async (o) => {
        if (typeof o === "string") return;
        o.evicted = true;
        if (o.users === 0) await this.#close(o);
      });
    }
  }

  async #close(o: OpenSlide): Promise<void> {
    await o.slide.close();
    await o.prob?.close();
  }

  /** The heat-map source of a slide: its probability TIFF scaled onto level 0, or why not. */
  #heat(id: string, o: OpenSlide): Promise<PyramidSource | string> {
    const e = this.entries.get(id)!;
    o.heat ??= (async () => {
      if (!e.probability) return "no probability.tif for this slide";
      try {
        const p = await openSlide(e.probability, { cacheBytes: this.#slideCacheBytes / 4 });
        o.prob = p;
        const W0 = o.slide.levels[0].width, H0 = o.slide.levels[0].height;
        // infer writes ceil(W0 / ds) pixels for an integer ds = tile / patch size.
        const pw = p.levels[0].width, k = Math.round(W0 / pw);
        const scale = k >= 1 && Math.ceil(W0 / k) === pw ? k : W0 / pw;
        return scaledSource(p, scale, W0, H0);
      } catch (err) {
        return `${e.probability}: ${(err as Error).message}`;
      }
    })();
    return o.heat;
  }

  #tissue(o: OpenSlide): Promise<PyramidSource | string> {
    o.tissue ??= (async () => {
      try {
        const t = await slideTissueMask(o.slide);
        return planeSource(t.mask, t.width, t.height, t.downsample);
      } catch (err) {
        return `tissue mask: ${(err as Error).message}`;
      }
    })();
    return o.tissue;
  }

  /**
   * A tile: `layer` "slide" (JPEG) or an overlay (PNG). Returns a string for a bad request (400)
   * and null for an unknown slide (404).
   */
  async tile(
    id: string,
    layer: "slide" | OverlayKind,
    level: number,
    tx: number,
    ty: number,
    signal?: AbortSignal,
  ): Promise<TileBytes | string | null> {
    const mp = this.meta(id);
    if (!mp) return null;
    const m = await mp;
    if (!m.dz) return errorTile(256, 256, m.error ?? "slide not open");
    const g = tileGeometry(m.dz, level, tx, ty);
    if (typeof g === "string") return g;
    const key = `${id}/${layer}/${level}/${tx}/${ty}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    let t: TileBytes | null;
    try {
      t = await this.use(id, async (o) => {
        if (layer === "slide") return await this.#slideTile(o.slide, g, signal);
        const src = await (layer === "heatmap" ? this.#heat(id, o) : this.#tissue(o));
        if (typeof src === "string") return errorTile(g.width, g.height, src);
        return await this.#overlayTile(src, g, layer, signal);
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      // Decode errors are reported on the tile and not cached (a retry re-reads).
      return errorTile(g.width, g.height, (err as Error).message);
    }
    if (!t) return null;
    if (!t.error) this.cache.set(key, t);
    return t;
  }

  async #slideTile(s: Slide, g: TileGeometry, signal?: AbortSignal): Promise<TileBytes> {
    const rgba = overWhite(await cutTile(s, g, signal));
    signal?.throwIfAborted();
    let bytes: Uint8Array;
    if (this.#pool) bytes = await this.#pool.encode(rgba, g.width, g.height, this.#quality);
    else {
      const j = encodeJpeg({ data: rgba, width: g.width, height: g.height }, this.#quality).data;
      bytes = new Uint8Array(j.buffer, j.byteOffset, j.byteLength);
    }
    return { bytes, type: "image/jpeg", byteLength: bytes.byteLength };
  }

  async #overlayTile(
    src: PyramidSource,
    g: TileGeometry,
    kind: OverlayKind,
    signal?: AbortSignal,
  ): Promise<TileBytes> {
    const px = await cutTile(src, g, signal);
    signal?.throwIfAborted();
    const out = new Uint8Array(px.length);
    for (let i = 0; i < px.length; i += 4) {
      const v = px[i];
      if (px[i + 3] === 0 || v === 0) continue; // transparent: no tissue / probability 0
      if (kind === "heatmap") {
        const [r, gg, b] = jet(v / 255);
        out[i] = r;
        out[i + 1] = gg;
        out[i + 2] = b;
        // Low probabilities fade out: transparent at 0, opaque from 0.5 (the tumour threshold).
        out[i + 3] = Math.min(255, 2 * v);
      } else {
        out[i] = 0;
        out[i + 1] = 200;
        out[i + 2] = 90;
        out[i + 3] = 255;
      }
    }
    const bytes = encodePng({ data: out, width: g.width, height: g.height, channels: 4 });
    return { bytes, type: "image/png", byteLength: bytes.byteLength };
  }

  /** Closes every open slide. */
  async close(): Promise<void> {
    const open = [...this.#open.values()];
    this.#open.clear();
    for (const p of open) {
      const o = await p;
      if (typeof o !== "string") await this.#close(o);
    }
    this.cache.clear();
    this.#pool?.close();
    this.#pool = null;
  }
}
