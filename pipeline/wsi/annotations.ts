/**
 * ASAP XML annotations (Camelyon16/17) and their rasterisation.
 *
 * The reference (EP-SAM `tools/wsi_preprocess.py`) converts the XML with ASAP's
 * `AnnotationToMask`: every polygon is tested per pixel with the non-zero winding rule at the
 * integer level-0 pixel position, only pixels strictly inside the polygon's bounding box count,
 * groups are drawn in order (positives, then exclusions that clear), and lower levels are
 * nearest-neighbour samples of level 0. We reproduce that with a scanline fill (active-edge
 * table: memory bounded by the edges crossing the current row), so the output matches pixel for
 * pixel except where float rounding puts a pixel exactly on an edge.
 *
 * A file refused (malformed, nested too deep, too many vertices, too large) gives an `InputError`
 * naming the file, the line and column, and the cause.
 */

import { InputError } from "../../engine/io/errors.ts";

/** Annotation groups that mark tumour (Camelyon17 `metastases`, Camelyon16 `Tumor`/`_0`/`_1`). */
const POSITIVE_GROUPS: readonly string[] = ["metastases", "tumor", "_0", "_1"];
/**
 * Annotation groups that mark non-tumour holes inside tumour regions (Camelyon16 `_2`, and
 * `Exclusion`, which `deno task export` writes for the holes of predicted regions).
 */
const EXCLUSION_GROUPS: readonly string[] = ["_2", "exclusion"];

/** One closed polygon, level-0 pixel coordinates interleaved `x0, y0, x1, y1, ...`. */
export interface Polygon {
  name: string;
  group: string;
  type: string;
  points: Float64Array;
  /** Bounding box in level-0 pixels. */
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
}

/** A {@link Polygon} of the interleaved level-0 `points`, with their bounding box. */
export function polygonOf(
  name: string,
  group: string,
  type: string,
  points: Float64Array,
): Polygon {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (let i = 0; i < points.length; i += 2) {
    minX = Math.min(minX, points[i]);
    maxX = Math.max(maxX, points[i]);
    minY = Math.min(minY, points[i + 1]);
    maxY = Math.max(maxY, points[i + 1]);
  }
  return { name, group, type, points, minX, minY, maxX, maxY };
}

/** An annotation that is not rasterised, with the reason (never dropped silently). */
export interface IgnoredAnnotation {
  name: string;
  group: string;
  type: string;
  reason: string;
}

/** Parsed ASAP file: tumour polygons, exclusion polygons and what was left out. */
export interface AnnotationSet {
  source: string;
  positive: Polygon[];
  exclusion: Polygon[];
  ignored: IgnoredAnnotation[];
}

// ---------------------------------------------------------------------------------------------
// A small XML tokenizer: enough for ASAP files, strict enough to reject garbage with a position.

/** An element as the tokenizer reports it when it opens (no children: nothing is kept). */
interface XmlElement {
  name: string;
  attrs: Map<string, string>;
  line: number;
  col: number;
}

class XmlError extends Error {}

/** Element nesting accepted: ASAP files nest 5 deep; deeper means a broken or hostile file. */
const MAX_XML_DEPTH = 64;

/**
 * Tokenizes `text`, calling `open` for each start tag (with its depth, root = 0) and `close` when
 * it ends (self-closing tags call both). Builds no tree, so memory is the open-element stack
 * (bounded by {@link MAX_XML_DEPTH}) plus what the callbacks keep.
 */
function parseXml(
  text: string,
  source: string,
  open: (el: XmlElement, depth: number) => void,
  close: (depth: number) => void,
): void {
  let pos = 0;
  const n = text.length;
  // Line/column by a forward-moving cursor: elements are visited in order, so this stays linear.
  let curOff = 0, curLine = 1, curLineStart = 0;
  const lineCol = (off: number): [number, number] => {
    if (off < curOff) {
      curOff = 0;
      curLine = 1;
      curLineStart = 0;
    }
    for (; curOff < off && curOff < n; curOff++) {
      if (text.charCodeAt(curOff) === 10) {
        curLine++;
        curLineStart = curOff + 1;
      }
    }
    return [curLine, off - curLineStart + 1];
  };
  const where = (off: number): string => {
    const [l, c] = lineCol(off);
    return `${source}:${l}:${c}`;
  };
  const fail = (off: number, msg: string): never => {
    throw new XmlError(`${where(off)}: ${msg}`);
  };
  const isNameStart = (c: number) =>
    (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 58 || c > 127;
  const isNameChar = (c: number) => isNameStart(c) || (c >= 48 && c <= 57) || c === 45 || c === 46;
  const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13;
  const skipSpace = () => {
    while (pos < n && isSpace(text.charCodeAt(pos))) pos++;
  };
  const readName = (what: string): string => {
    const start = pos;
    if (pos >= n || !isNameStart(text.charCodeAt(pos))) {
      fail(
        pos,
        `expected ${what} name, found ${pos < n ? JSON.stringify(text[pos]) : "end of file"}`,
      );
    }
    while (pos < n && isNameChar(text.charCodeAt(pos))) pos++;
    return text.slice(start, pos);
  };
  const decodeEntities = (s: string, off: number): string =>
    s.indexOf("&") < 0 ? s : s.replace(/&([^;&\s]{0,10});?/g, (m, ent: string) => {
      if (!m.endsWith(";")) fail(off, `unterminated entity ${JSON.stringify(m)}`);
      switch (ent) {
        case "amp":
          return "&";
        case "lt":
          return "<";
        case "gt":
          return ">";
        case "quot":
          return '"';
        case "apos":
          return "'";
      }
      const code = /^#x[0-9a-fA-F]{1,6}$/.test(ent)
        ? parseInt(ent.slice(2), 16)
        : /^#[0-9]{1,7}$/.test(ent)
        ? parseInt(ent.slice(1), 10)
        : NaN;
      if (!(code >= 0 && code <= 0x10ffff)) fail(off, `unknown entity ${JSON.stringify(m)}`);
      return String.fromCodePoint(code);
    });
  const skipPast = (end: string, what: string) => {
    const i = text.indexOf(end, pos);
    if (i < 0) fail(pos, `unterminated ${what}`);
    pos = i + end.length;
  };

  const stack: XmlElement[] = [];
  let root = false;
  if (text.charCodeAt(0) === 0xfeff) pos = 1;
  while (pos < n) {
    const lt = text.indexOf("<", pos);
    const textEnd = lt < 0 ? n : lt;
    // Character data: only whitespace is allowed outside the root; inside, ASAP has none we need.
    if (stack.length === 0) {
      for (let i = pos; i < textEnd; i++) {
        if (!isSpace(text.charCodeAt(i))) fail(i, "text outside the root element");
      }
    }
    pos = textEnd;
    if (pos >= n) break;
    const start = pos;
    if (text.startsWith("<!--", pos)) {
      pos += 4;
      skipPast("-->", "comment");
    } else if (text.startsWith("<![CDATA[", pos)) {
      if (stack.length === 0) fail(pos, "CDATA outside the root element");
      pos += 9;
      skipPast("]]>", "CDATA section");
    } else if (text.startsWith("<?", pos)) {
      pos += 2;
      skipPast("?>", "processing instruction");
    } else if (text.startsWith("<!", pos)) {
      if (root || stack.length) fail(pos, "declaration after the root element started");
      // DOCTYPE, possibly with an internal subset in brackets.
      let depth = 0;
      pos += 2;
      for (; pos < n; pos++) {
        const c = text[pos];
        if (c === "[") depth++;
        else if (c === "]") depth--;
        else if (c === ">" && depth <= 0) break;
      }
      if (pos >= n) fail(start, "unterminated declaration");
      pos++;
    } else if (text.startsWith("</", pos)) {
      pos += 2;
      const name = readName("closing tag");
      skipSpace();
      if (text[pos] !== ">") fail(pos, `expected '>' to close </${name}`);
      pos++;
      const top = stack.pop();
      if (!top) fail(start, `closing tag </${name}> without an open element`);
      if (top!.name !== name) {
        fail(
          start,
          `closing tag </${name}> does not match <${top!.name}> opened at line ${
            top!.line
          }, column ${top!.col}`,
        );
      }
      close(stack.length);
    } else {
      pos++;
      const name = readName("element");
      const [line, col] = lineCol(start);
      const el: XmlElement = { name, attrs: new Map(), line, col };
      let selfClosing = false;
      for (;;) {
        const before = pos;
        skipSpace();
        if (pos >= n) fail(start, `unterminated tag <${name}`);
        const c = text[pos];
        if (c === ">") {
          pos++;
          break;
        }
        if (c === "/") {
          if (text[pos + 1] !== ">") fail(pos, `expected '/>' in <${name}>`);
          pos += 2;
          selfClosing = true;
          break;
        }
        if (pos === before) fail(pos, `expected whitespace before attribute in <${name}>`);
        const attrStart = pos;
        const an = readName(`attribute (in <${name}>)`);
        skipSpace();
        if (text[pos] !== "=") fail(pos, `expected '=' after attribute ${an} in <${name}>`);
        pos++;
        skipSpace();
        const q = text[pos];
        if (q !== '"' && q !== "'") fail(pos, `attribute ${an} in <${name}> is not quoted`);
        const close = text.indexOf(q, pos + 1);
        if (close < 0) fail(pos, `unterminated value of attribute ${an} in <${name}>`);
        const raw = text.slice(pos + 1, close);
        if (raw.indexOf("<") >= 0) fail(pos, `'<' in value of attribute ${an} in <${name}>`);
        if (el.attrs.has(an)) fail(attrStart, `duplicate attribute ${an} in <${name}>`);
        el.attrs.set(an, decodeEntities(raw, pos));
        pos = close + 1;
      }
      if (stack.length === 0) {
        if (root) fail(start, `second root element <${name}>`);
        root = true;
      } else if (stack.length >= MAX_XML_DEPTH) {
        fail(
          start,
          `<${name}> is nested ${stack.length + 1} elements deep; the limit is ${MAX_XML_DEPTH} ` +
            `(ASAP files nest 5 deep)`,
        );
      }
      open(el, stack.length);
      if (selfClosing) close(stack.length);
      else stack.push(el);
    }
  }
  if (stack.length) {
    const open = stack[stack.length - 1];
    throw new XmlError(
      `${source}:${open.line}:${open.col}: element <${open.name}> is never closed (end of file)`,
    );
  }
  if (!root) fail(0, "no root element");
}

// ---------------------------------------------------------------------------------------------

/** Parses a number the way ASAP files write them; a decimal comma (`1234,5`) is accepted. */
function parseCoord(s: string | undefined): number {
  if (s === undefined) return NaN;
  const t = s.trim();
  if (/^[+-]?\d+,\d+$/.test(t)) return Number(t.replace(",", "."));
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) return NaN;
  return Number(t);
}

/** Limits on what one annotation file may hold (see the README's "Resource limits"). */
export interface AsapLimits {
  /** Most coordinates in the file (default {@link MAX_XML_VERTICES}). */
  maxVertices?: number;
  /** Largest file read, bytes (default {@link MAX_XML_BYTES}). */
  maxBytes?: number;
}

/**
 * Most coordinates accepted in one file: 5 million vertices hold 80 MB as coordinates and about
 * 300 MB more while rasterised (edge table and scanline scratch), far above what hand-drawn
 * annotations hold; `wsi mask --max-vertices` raises it.
 */
const MAX_XML_VERTICES = 5_000_000;
/**
 * Largest annotation file read (its text is held whole while parsed): 512 MiB, or 128 bytes per
 * allowed vertex when `maxVertices` is raised above the default (a Camelyon `<Coordinate>` line
 * is about 60 bytes).
 */
const MAX_XML_BYTES = 512 * 2 ** 20;

/**
 * Parses an ASAP annotation XML document; `source` names the file in error messages. Streaming:
 * coordinates go straight into arrays, so memory is the coordinates, not a document tree.
 */
export function parseAsapXml(
  text: string,
  source = "<xml>",
  limits: AsapLimits = {},
): AnnotationSet {
  const maxVertices = limits.maxVertices ?? MAX_XML_VERTICES;
  const set: AnnotationSet = { source, positive: [], exclusion: [], ignored: [] };
  const positive = new Set(POSITIVE_GROUPS);
  const exclusion = new Set(EXCLUSION_GROUPS);
  const at = (el: XmlElement) => `${source}:${el.line}:${el.col}`;
  // The outermost open <Annotation> (coordinates at any depth inside it are its own, as before),
  // and the depth of an open <Coordinate> (one nested in it is not a vertex).
  let ann: XmlElement | null = null, annDepth = -1, coordDepth = -1;
  let pts: number[] = [];
  let total = 0;
  const finish = (a: XmlElement): void => {
    const name = a.attrs.get("Name") ?? "";
    const group = a.attrs.get("PartOfGroup") ?? "None";
    const type = a.attrs.get("Type") ?? "Polygon";
    const n = pts.length / 2;
    const ignore = (reason: string): void => {
      set.ignored.push({ name, group, type, reason });
    };
    const g = group.toLowerCase();
    const isPos = positive.has(g), isExc = exclusion.has(g);
    if (!isPos && !isExc) {
      return ignore(`group ${JSON.stringify(group)} is neither tumour nor exclusion`);
    }
    if (type === "Dot" || type === "PointSet" || type === "Measurement") {
      return ignore(`type ${type} has no area`);
    }
    if (n < 3) return ignore(`only ${n} coordinate(s)`);
    // ASAP keeps document order (the Order attribute is informational).
    const poly = polygonOf(name, group, type, Float64Array.from(pts));
    (isPos ? set.positive : set.exclusion).push(poly);
  };
  try {
    parseXml(text, source, (el, depth) => {
      if (depth === 0) {
        if (el.name !== "ASAP_Annotations") {
          throw new InputError(
            `${at(el)}: root element is <${el.name}>, expected <ASAP_Annotations>`,
            { file: source, field: el.name },
          );
        }
      } else if (el.name === "Annotation" && !ann) {
        ann = el;
        annDepth = depth;
        pts = [];
      } else if (el.name === "Coordinate" && ann && coordDepth < 0) {
        coordDepth = depth;
        const x = parseCoord(el.attrs.get("X"));
        const y = parseCoord(el.attrs.get("Y"));
        if (!Number.isFinite(x) || !Number.isFinite(y)) {
          throw new InputError(
            `${at(el)}: <Coordinate> of annotation ${
              JSON.stringify((ann as XmlElement).attrs.get("Name") ?? "")
            } has no valid X/Y ` +
              `(X=${JSON.stringify(el.attrs.get("X"))}, Y=${JSON.stringify(el.attrs.get("Y"))})`,
            { file: source, field: "Coordinate" },
          );
        }
        if (++total > maxVertices) {
          throw new InputError(
            `${at(el)}: more than ${maxVertices} coordinates in the file (the limit; raise it ` +
              `with --max-vertices)`,
            { file: source, field: "Coordinate" },
          );
        }
        pts.push(x, y);
      }
    }, (depth) => {
      if (depth === coordDepth) coordDepth = -1;
      else if (depth === annDepth && ann) {
        finish(ann);
        ann = null;
        annDepth = -1;
      }
    });
  } catch (e) {
    if (e instanceof XmlError) {
      throw new InputError(`malformed XML: ${e.message}`, { file: source });
    }
    throw e;
  }
  return set;
}

/** Reads and parses an ASAP XML file, refusing one over the size limit before reading it. */
export async function readAsapXml(path: string, limits: AsapLimits = {}): Promise<AnnotationSet> {
  const maxBytes = limits.maxBytes ?? Math.max(MAX_XML_BYTES, 128 * (limits.maxVertices ?? 0));
  const { size } = await Deno.stat(path);
  if (size > maxBytes) {
    throw new InputError(
      `${path}: ${size} bytes is over the ${maxBytes}-byte limit for annotation files`,
      { file: path },
    );
  }
  return parseAsapXml(await Deno.readTextFile(path), path, limits);
}

// ---------------------------------------------------------------------------------------------
// Scanline rasterisation with ASAP's semantics (see the module comment).

interface Prepared {
  /** Non-horizontal edges as xa, ya, xb, yb (the polygon's own direction). */
  edges: Float64Array;
  /** Edge indices by increasing lower y. */
  byLow: Int32Array;
}

const prepared = new WeakMap<Polygon, Prepared>();

/** The polygon's edge table (O(vertices) memory, built once per polygon and cached). */
function prepare(p: Polygon): Prepared {
  let pr = prepared.get(p);
  if (pr) return pr;
  const pts = p.points, m = pts.length / 2;
  const all = new Float64Array(m * 4);
  let n = 0;
  for (let i = 0; i < m; i++) {
    const j = i + 1 === m ? 0 : i + 1;
    const ya = pts[2 * i + 1], yb = pts[2 * j + 1];
    if (ya === yb) continue; // horizontal edges never cross a scanline
    all[n * 4] = pts[2 * i];
    all[n * 4 + 1] = ya;
    all[n * 4 + 2] = pts[2 * j];
    all[n * 4 + 3] = yb;
    n++;
  }
  const edges = all.slice(0, n * 4);
  const low = new Float64Array(n);
  for (let e = 0; e < n; e++) low[e] = Math.min(edges[e * 4 + 1], edges[e * 4 + 3]);
  const byLow = new Int32Array(n);
  for (let e = 0; e < n; e++) byLow[e] = e;
  byLow.sort((a, b) => low[a] - low[b]);
  pr = { edges, byLow };
  prepared.set(p, pr);
  return pr;
}

/** Scratch buffers shared by all fills (grown to the largest active edge count seen). */
let active = new Int32Array(64);
let ups = new Float64Array(64);
let downs = new Float64Array(64);

/**
 * Fills polygon `p` into `out` (w×h, row-major) with `value`, sampling level-0 positions
 * `(x0 + i*ds, y0 + j*ds)`. Non-zero winding; strict bounding-box test as ASAP.
 *
 * Scanline fill with an active-edge table: rows are visited top to bottom, an edge enters the
 * table at the first row at or below its lower y and leaves it at its upper y, so the working
 * memory is the edges crossing the current row, whatever the polygon's shape.
 */
function fillPolygon(
  p: Polygon,
  ds: number,
  x0: number,
  y0: number,
  w: number,
  h: number,
  out: Uint8Array,
  value: number,
): void {
  // Region rows/cols whose sample lies strictly inside the bbox.
  const jLo = Math.max(0, Math.floor((p.minY - y0) / ds) + 1);
  const jHi = Math.min(h - 1, Math.ceil((p.maxY - y0) / ds) - 1);
  const iLo = Math.max(0, Math.floor((p.minX - x0) / ds) + 1);
  const iHi = Math.min(w - 1, Math.ceil((p.maxX - x0) / ds) - 1);
  if (jLo > jHi || iLo > iHi) return;
  const { edges, byLow } = prepare(p);
  const ne = byLow.length;
  if (active.length < ne) {
    const cap = Math.max(ne, active.length * 2);
    active = new Int32Array(cap);
    ups = new Float64Array(cap);
    downs = new Float64Array(cap);
  }
  let nActive = 0, next = 0;
  for (let j = jLo; j <= jHi; j++) {
    const py = y0 + j * ds;
    if (!(py > p.minY && py < p.maxY)) continue;
    // Enter edges whose lower end is at or above this row; drop those that end at or above it.
    while (next < ne) {
      const e = byLow[next] * 4;
      if (Math.min(edges[e + 1], edges[e + 3]) > py) break;
      active[nActive++] = byLow[next++];
    }
    let nu = 0, nd = 0, keep = 0;
    for (let k = 0; k < nActive; k++) {
      const id = active[k], e = id * 4;
      const xa = edges[e], ya = edges[e + 1], xb = edges[e + 2], yb = edges[e + 3];
      if (Math.max(ya, yb) <= py) continue; // ended: leaves the table
      active[keep++] = id;
      const x = xa + (py - ya) * (xb - xa) / (yb - ya);
      if (ya <= py) ups[nu++] = x; // upward in y: winding +1
      else downs[nd++] = x; // winding -1
    }
    nActive = keep;
    const nc = nu + nd;
    if (nc < 2) continue;
    const U = ups.subarray(0, nu).sort(), D = downs.subarray(0, nd).sort();
    // A sample at px sees winding = sum of dirs of crossings with x > px (ASAP's wn_PnPoly).
    let wind = nu - nd;
    let iu = 0, id = 0;
    const row = j * w;
    let a = 0;
    for (let k = 0; k < nc; k++) {
      // Next crossing in x order (ties: either order gives the same spans, empty between them).
      if (id >= nd || (iu < nu && U[iu] <= D[id])) {
        a = U[iu++];
        wind -= 1;
      } else {
        a = D[id++];
        wind += 1;
      }
      if (wind === 0 || k === nc - 1) continue;
      const b = iu >= nu ? D[id] : id >= nd ? U[iu] : Math.min(U[iu], D[id]);
      // Samples with a <= px < b.
      const i0 = Math.max(iLo, Math.ceil((a - x0) / ds));
      const i1 = Math.min(iHi, Math.ceil((b - x0) / ds) - 1);
      if (i0 <= i1) out.fill(value, row + i0, row + i1 + 1);
    }
  }
}

/**
 * Rasterises a region: `w`×`h` samples at downsample `ds`, top-left at level-0 pixel
 * `(x0, y0)` (the same convention as `Slide.readRegion`). Output 0/255; tumour polygons are
 * filled first, exclusions cleared after. Memory is only the output, so level 0 of any slide
 * can be done tile by tile.
 */
export function rasterizeRegion(
  ann: AnnotationSet,
  ds: number,
  x0: number,
  y0: number,
  w: number,
  h: number,
  out?: Uint8Array,
): Uint8Array {
  if (!(ds > 0) || !Number.isInteger(w) || !Number.isInteger(h) || w < 0 || h < 0) {
    throw new Error(`rasterizeRegion: bad region ds=${ds} ${w}x${h}`);
  }
  const buf = out ?? new Uint8Array(w * h);
  if (out) buf.fill(0, 0, w * h);
  for (const p of ann.positive) fillPolygon(p, ds, x0, y0, w, h, buf, 255);
  for (const p of ann.exclusion) fillPolygon(p, ds, x0, y0, w, h, buf, 0);
  return buf;
}

/** Largest mask {@link rasterize} builds in one buffer; beyond it use {@link rasterizeRegion}. */
const MAX_RASTER_PIXELS = 1 << 30;

/** Rasterises the whole level (`width`×`height` at `downsample`) into one 0/255 buffer. */
export function rasterize(
  ann: AnnotationSet,
  width: number,
  height: number,
  downsample: number,
): Uint8Array {
  if (width * height > MAX_RASTER_PIXELS) {
    throw new Error(
      `rasterize: ${width}x${height} is too large for one buffer; use rasterizeRegion tile by tile`,
    );
  }
  return rasterizeRegion(ann, downsample, 0, 0, width, height);
}

/** Whether any tumour polygon's bounding box touches the level-0 box (cheap pre-test). */
function touchesTumour(
  ann: AnnotationSet,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
): boolean {
  for (const p of ann.positive) {
    if (p.maxX > x0 && p.minX < x1 && p.maxY > y0 && p.minY < y1) return true;
  }
  return false;
}

/** Number of tumour pixels in a level-0 window (0 without rasterising when far from tumour). */
export function tumourPixelCount(
  ann: AnnotationSet,
  x0: number,
  y0: number,
  w: number,
  h: number,
  scratch?: Uint8Array,
): number {
  if (!touchesTumour(ann, x0, y0, x0 + w, y0 + h)) return 0;
  const buf = rasterizeRegion(ann, 1, x0, y0, w, h, scratch);
  let c = 0;
  for (let i = 0; i < w * h; i++) if (buf[i]) c++;
  return c;
}
