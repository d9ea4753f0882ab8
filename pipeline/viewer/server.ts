/**
 * The viewer's HTTP server (`Deno.serve`): one page, its libraries (from npm through the module
 * graph, never a CDN), and a JSON/tile API over what the catalogue named at start. No request
 * parameter is ever turned into a file path: slides, patches and overlays are looked up by name in
 * the catalogue, so anything else — encoded `..`, absolute paths, names of files never listed —
 * is a 404. Parameters are validated (400 with the reason); bodies are bounded; the server binds
 * 127.0.0.1 unless told otherwise and then only answers Host headers it was started for when
 * loopback.
 */
import osdJs from "openseadragon/build/openseadragon/openseadragon.min.js" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
import indexHtml from "./page/index.html" with { type: "text" };
import appJs from "./page/app.js" with { type: "text" };
import styleCss from "./page/style.css" with { type: "text" };
import { encodePng } from "../../engine/io/png.ts";
import { readAsapXml } from "../wsi/annotations.ts";
import { buildCatalog, type Catalog, type CatalogOptions, type Split, SPLITS } from "./catalog.ts";
import { MAX_GEOJSON_BYTES, parseTumourGeoJson } from "./geojson.ts";
import { dashboard, gallery, patchImage } from "./run_browser.ts";
import { confinedFile } from "./safe_path.ts";
import {
  type Point,
  type SegmentResult,
  SegmentService,
  type SegmentServiceOptions,
  slidePatchRgb,
} from "./segment.ts";
import { TileService, type TileServiceOptions } from "./tiles.ts";
import { loadPatches } from "../data/host_patches.ts";

export interface ViewerOptions extends CatalogOptions, SegmentServiceOptions, TileServiceOptions {
  port?: number;
  host?: string;
  /** Called with warnings (symlinks left out, missing files). */
  log?: (msg: string) => void;
}

export interface Viewer {
  url: string;
  catalog: Catalog;
  tiles: TileService;
  segment: SegmentService;
  /** Stops serving and closes the slides. */
  close(): Promise<void>;
}

const STATIC: Record<string, { body: string; type: string }> = {
  "/": { body: indexHtml, type: "text/html; charset=utf-8" },
  "/app.js": { body: appJs, type: "text/javascript; charset=utf-8" },
  "/style.css": { body: styleCss, type: "text/css; charset=utf-8" },
  "/lib/openseadragon.min.js": { body: osdJs, type: "text/javascript; charset=utf-8" },
  "/lib/uPlot.iife.min.js": { body: uplotJs, type: "text/javascript; charset=utf-8" },
  "/lib/uPlot.min.css": { body: uplotCss, type: "text/css; charset=utf-8" },
};

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "content-security-policy":
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; " +
    "connect-src 'self'; frame-ancestors 'none'",
};

/** Largest request body read (segmentation prompts). */
const MAX_BODY = 64 * 1024;
/** Most prompt points of one request. */
const MAX_POINTS = 64;

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function json(v: unknown, status = 200): Response {
  return new Response(JSON.stringify(v), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}

function withHeaders(r: Response): Response {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) r.headers.set(k, v);
  return r;
}

function base64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return btoa(s);
}

/** An integer path parameter, or a 400 naming it. */
function intParam(s: string, name: string): number {
  if (!/^\d{1,9}$/.test(s)) throw new HttpError(400, `${name} must be a non-negative integer`);
  return Number(s);
}

/** The JSON body, bounded in size. */
async function readBody(req: Request): Promise<unknown> {
  const len = Number(req.headers.get("content-length") ?? "0");
  if (len > MAX_BODY) throw new HttpError(413, `body larger than ${MAX_BODY} bytes`);
  const reader = req.body?.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  if (reader) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.byteLength;
      if (n > MAX_BODY) {
        await reader.cancel();
        throw new HttpError(413, `body larger than ${MAX_BODY} bytes`);
      }
      chunks.push(value);
    }
  }
  const buf = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) (buf.set(c, o), o += c.byteLength);
  try {
    return JSON.parse(new TextDecoder().decode(buf));
  } catch {
    throw new HttpError(400, "body must be JSON");
  }
}

/** Prompt points from a request, checked (finite, bounded count, label 0/1). */
function parsePoints(v: unknown): Point[] {
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_POINTS) {
    throw new HttpError(400, `points must be an array of 1..${MAX_POINTS} {x, y, label}`);
  }
  return v.map((p, i) => {
    const q = p as { x?: unknown; y?: unknown; label?: unknown };
    if (typeof q !== "object" || q === null) {
      throw new HttpError(400, `points[${i}]: not an object`);
    }
    if (typeof q.x !== "number" || typeof q.y !== "number" || !isFinite(q.x) || !isFinite(q.y)) {
      throw new HttpError(400, `points[${i}]: x and y must be finite numbers`);
    }
    if (q.label !== 0 && q.label !== 1) {
      throw new HttpError(400, `points[${i}]: label must be 0 or 1`);
    }
    return { x: q.x, y: q.y, label: q.label };
  });
}

/** Starts the viewer; resolves once it listens. */
export async function startViewer(o: ViewerOptions): Promise<Viewer> {
  const log = o.log ?? ((m: string) => console.error(m));
  const catalog = await buildCatalog(o);
  for (const w of catalog.warnings) log(`view: ${w}`);
  const tiles = new TileService(catalog.slides, o);
  const segment = new SegmentService(catalog, o);
  const host = o.host ?? "127.0.0.1";
  const loopback = host === "127.0.0.1" || host === "localhost" || host === "::1";
  let allowedHosts: Set<string> | null = null;

  const handle = async (req: Request, signal: AbortSignal): Promise<Response> => {
    const url = new URL(req.url);
    if (allowedHosts && !allowedHosts.has(req.headers.get("host") ?? "")) {
      throw new HttpError(403, "unexpected Host header");
    }
    const path = url.pathname;
    const stat = STATIC[path];
    if (stat && req.method === "GET") {
      return new Response(stat.body, {
        headers: { "content-type": stat.type, "cache-control": "no-cache" },
      });
    }
    if (!path.startsWith("/api/")) throw new HttpError(404, "not found");
    let parts: string[];
    try {
      parts = path.slice(5).split("/").map(decodeURIComponent);
    } catch {
      throw new HttpError(400, "bad URL encoding");
    }
    const [head, ...rest] = parts;
    if (req.method === "GET" && head === "info" && rest.length === 0) return json(await info());
    if (head === "slides" && rest.length >= 2) return await slideRoute(req, rest, signal);
    if (head === "run" && catalog.run) return await runRoute(req, rest, url);
    if (head === "segment" && rest.length === 0 && req.method === "POST") {
      return await segmentRoute(await readBody(req));
    }
    if (head === "jobs" && rest.length === 1) {
      if (req.method === "DELETE") {
        if (!segment.cancel(rest[0])) throw new HttpError(404, "no such job");
        return json({ ok: true });
      }
      const j = segment.poll(rest[0]);
      if (!j) throw new HttpError(404, "no such job");
      const elapsed = j.started ? (Date.now() - j.started) / 1000 : 0;
      const body: Record<string, unknown> = {
        id: j.id,
        kind: j.kind,
        state: j.state,
        message: j.message,
        elapsedSeconds: elapsed,
        estimateSeconds: j.estimateSeconds,
        queuedSeconds: ((j.started ?? Date.now()) - j.created) / 1000,
      };
      if (j.state === "error") body.error = j.error;
      if (j.state === "done" && j.kind === "segment") {
        const r = j.result as SegmentResult;
        body.result = {
          size: r.size,
          iou: r.iou,
          embeddingCached: r.embeddingCached,
          origin: r.origin ?? null,
          // 0/255 gray PNG as a data URL (the page draws it; tests compare it).
          mask: "data:image/png;base64," + base64(encodePng({
            data: r.mask.map((v) => (v ? 255 : 0)),
            width: r.size,
            height: r.size,
            channels: 1,
          })),
        };
      } else if (j.state === "done") body.result = j.result;
      return json(body);
    }
    throw new HttpError(404, "not found");
  };

  const info = async () => {
    const slides = [];
    for (const e of catalog.slides.values()) {
      const o = await tiles.meta(e.id)!;
      slides.push({
        id: e.id,
        name: e.path.split("/").pop(),
        error: o.error,
        dz: o.dz,
        levels: o.levels.length,
        mpp: o.mpp,
        annotations: !!e.annotation,
        heatmap: !!e.probability,
        polygons: !!e.geojson,
        grid: e.grid.length > 0,
        predictionNote: e.probability && e.geojson
          ? null
          : `looked in ${e.predictionPlaces.join(", ") || "(no --predictions, no --run)"} for ${
            [e.probability ? null : "probability.tif", e.geojson ? null : "tumour.geojson"]
              .filter(Boolean).join(" and ")
          }`,
      });
    }
    const run = catalog.run;
    return {
      slides,
      run: run
        ? {
          dir: run.dir,
          profile: run.cfg.profile,
          patchSize: run.cfg.patchSize,
          patchLevel0: run.patchLevel0,
          counts: Object.fromEntries(SPLITS.map((s) => [s, run.splits[s].length])),
        }
        : null,
      sam: segment.samSource(),
      patchSize: segment.patchSize(),
      slidePatchSide: segment.slidePatchSide(),
    };
  };

  const slideRoute = async (req: Request, rest: string[], signal: AbortSignal) => {
    const [id, what, ...args] = rest;
    const e = catalog.slides.get(id);
    if (!e || req.method !== "GET") throw new HttpError(404, "no such slide");
    if ((what === "tiles" || what === "heatmap" || what === "tissue") && args.length === 3) {
      const [l, x, y] = [
        intParam(args[0], "level"),
        intParam(args[1], "x"),
        intParam(args[2], "y"),
      ];
      const layer = what === "tiles" ? "slide" : what;
      if (layer === "heatmap" && !e.probability) {
        throw new HttpError(404, "no heat map for this slide");
      }
      const t = await tiles.tile(id, layer, l, x, y, signal);
      if (t === null) throw new HttpError(404, "no such slide");
      if (typeof t === "string") throw new HttpError(400, t);
      const headers: Record<string, string> = {
        "content-type": t.type,
        "cache-control": "private, max-age=3600",
      };
      if (t.error) headers["x-tile-error"] = encodeURIComponent(t.error.slice(0, 500));
      return new Response(t.bytes as Uint8Array<ArrayBuffer>, { headers });
    }
    if (args.length) throw new HttpError(404, "not found");
    if (what === "annotations") {
      if (!e.annotation) throw new HttpError(404, "no annotation file for this slide");
      const a = await readAsapXml(e.annotation);
      const poly = (p: { name: string; group: string; points: Float64Array }) => ({
        name: p.name,
        group: p.group,
        points: Array.from(p.points),
      });
      return json({
        positive: a.positive.map(poly),
        exclusion: a.exclusion.map(poly),
        ignored: a.ignored,
      });
    }
    if (what === "polygons") {
      if (!e.geojson) throw new HttpError(404, "no tumour.geojson for this slide");
      const f = await confinedFile(e.geojson, [e.geojson.slice(0, e.geojson.lastIndexOf("/"))]);
      if (!f) throw new HttpError(404, "no tumour.geojson for this slide");
      const size = (await Deno.stat(f)).size;
      if (size > MAX_GEOJSON_BYTES) {
        throw new HttpError(500, `${f}: ${size} bytes (limit ${MAX_GEOJSON_BYTES})`);
      }
      try {
        return json({ regions: parseTumourGeoJson(await Deno.readTextFile(f), f) });
      } catch (err) {
        throw new HttpError(500, (err as Error).message);
      }
    }
    if (what === "grid") return json({ patch: e.gridPatch, patches: e.grid });
    throw new HttpError(404, "not found");
  };

  const runRoute = async (req: Request, rest: string[], url: URL) => {
    const run = catalog.run!;
    if (req.method === "GET" && rest.length === 1 && rest[0] === "dashboard") {
      return json(await dashboard(run));
    }
    if (req.method === "GET" && rest.length === 1 && rest[0] === "gallery") {
      const split = url.searchParams.get("split") ?? "test";
      if (!SPLITS.includes(split as Split)) {
        throw new HttpError(400, "split must be train|val|test");
      }
      const job = segment.finalMasks(split as Split);
      return json({
        split,
        items: await gallery(run, split as Split, segment),
        final: { job: job.id, state: job.state, message: job.message },
      });
    }
    if (req.method === "GET" && rest.length === 4 && rest[0] === "patches") {
      const [, split, id, kind] = rest;
      if (!SPLITS.includes(split as Split)) throw new HttpError(404, "no such split");
      const png = await patchImage(run, split as Split, id, kind.replace(/\.png$/, ""), segment);
      if (!png) throw new HttpError(404, "no such patch image");
      return new Response(png as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": "image/png", "cache-control": "no-cache" },
      });
    }
    throw new HttpError(404, "not found");
  };

  const segmentRoute = async (body: unknown) => {
    const b = body as {
      patch?: { split?: unknown; id?: unknown };
      slide?: unknown;
      origin?: { x?: unknown; y?: unknown };
      points?: unknown;
    };
    if (typeof b !== "object" || b === null) throw new HttpError(400, "body must be an object");
    const points = parsePoints(b.points);
    const S = segment.patchSize();
    if (b.patch) {
      const run = catalog.run;
      if (!run) throw new HttpError(400, "no run: patches need --run");
      const split = b.patch.split, id = b.patch.id;
      if (!SPLITS.includes(split as Split) || typeof id !== "string") {
        throw new HttpError(400, "patch must be {split: train|val|test, id}");
      }
      const item = run.splits[split as Split].find((p) => p.id === id);
      if (!item) throw new HttpError(404, "no such patch");
      for (const p of points) {
        if (p.x < 0 || p.y < 0 || p.x >= S || p.y >= S) {
          throw new HttpError(400, `point (${p.x}, ${p.y}) is outside the ${S}x${S} patch`);
        }
      }
      const job = segment.segment(
        `patch:${split}/${id}`,
        async () => (await loadPatches([item], S))[0].rgb,
        points,
      );
      return json({ job: job.id, size: S });
    }
    if (typeof b.slide === "string") {
      const e = catalog.slides.get(b.slide);
      if (!e) throw new HttpError(404, "no such slide");
      const o = await tiles.meta(e.id)!;
      if (!o.dz) throw new HttpError(400, `slide cannot be read: ${o.error}`);
      const W0 = o.levels[0].width, H0 = o.levels[0].height;
      for (const p of points) {
        if (p.x < 0 || p.y < 0 || p.x >= W0 || p.y >= H0) {
          throw new HttpError(400, `point (${p.x}, ${p.y}) is outside the ${W0}x${H0} slide`);
        }
      }
      const T = Math.min(segment.slidePatchSide(), W0, H0);
      let ox: number, oy: number;
      if (b.origin !== undefined) {
        ox = b.origin.x as number;
        oy = b.origin.y as number;
        if (
          !Number.isSafeInteger(ox) || !Number.isSafeInteger(oy) || ox < 0 || oy < 0 ||
          ox + T > W0 || oy + T > H0
        ) throw new HttpError(400, "origin must be integers with the patch inside the slide");
      } else {
        // The patch centred on the first point, as the pipeline cuts patches, kept on the slide.
        ox = Math.min(W0 - T, Math.max(0, Math.trunc(points[0].x - T / 2)));
        oy = Math.min(H0 - T, Math.max(0, Math.trunc(points[0].y - T / 2)));
      }
      for (const p of points) {
        if (p.x < ox || p.y < oy || p.x >= ox + T || p.y >= oy + T) {
          throw new HttpError(400, `point (${p.x}, ${p.y}) is outside the patch at (${ox}, ${oy})`);
        }
      }
      const k = S / T;
      const job = segment.segment(
        `slide:${e.id}:${ox}:${oy}:${T}`,
        async () => {
          const rgb = await tiles.use(e.id, (h) => h.slide.readRegionRGB(0, ox, oy, T, T));
          if (!rgb) throw new Error(`${e.id}: slide gone`);
          return slidePatchRgb(rgb, T, S);
        },
        points.map((p) => ({ x: (p.x - ox) * k, y: (p.y - oy) * k, label: p.label })),
        // The origin goes back with the result so the page draws the mask where it was cut.
        { origin: { x: ox, y: oy, side: T } },
      );
      const origin = { x: ox, y: oy, side: T };
      return json({ job: job.id, size: S, origin });
    }
    throw new HttpError(400, "body must name a patch {split, id} or a slide");
  };

  const server = Deno.serve({
    hostname: host,
    port: o.port ?? 8765,
    onListen: () => {},
    handler: async (req) => {
      const ac = new AbortController();
      const onAbort = () => ac.abort();
      req.signal.addEventListener("abort", onAbort);
      try {
        return withHeaders(await handle(req, ac.signal));
      } catch (e) {
        if (e instanceof HttpError) return withHeaders(json({ error: e.message }, e.status));
        if (req.signal.aborted) return new Response(null, { status: 499 });
        log(`view: ${req.method} ${new URL(req.url).pathname}: ${(e as Error).message}`);
        return withHeaders(json({ error: (e as Error).message }, 500));
      } finally {
        req.signal.removeEventListener("abort", onAbort);
      }
    },
  });
  const addr = server.addr as Deno.NetAddr;
  const shown = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `http://${shown}:${addr.port}/`;
  if (loopback) {
    allowedHosts = new Set([
      `${shown}:${addr.port}`,
      `localhost:${addr.port}`,
      `127.0.0.1:${addr.port}`,
    ]);
  }
  return {
    url,
    catalog,
    tiles,
    segment,
    close: async () => {
      await server.shutdown();
      await tiles.close();
    },
  };
}
