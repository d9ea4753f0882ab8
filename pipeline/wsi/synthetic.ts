/**
 * Synthetic H&E-like whole-slide images with exact tumour ground truth, for tests, benchmarks and
 * end-to-end pipeline runs without real Camelyon slides.
 *
 * A slide is a few tissue blobs with irregular outlines on white glass. Normal tissue is pink
 * eosin stroma with sparse small round nuclei; tumour regions (polygons inside the tissue) have
 * dense, larger, darker, pleomorphic nuclei and little stroma, as metastases do. Every pixel is a
 * pure function of its level-0 coordinates and the seed (hash-based noise, nuclei on a jittered
 * grid), so any region can be rendered on its own, tiles need no shared state, and a pixel is
 * tumour exactly when its centre (x, y) lies inside a tumour polygon written to the XML (even-odd
 * rule, the same test as `pointInPolygon`).
 */
import { writePyramidTiff, type WrittenTiff } from "./tiff_writer.ts";
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { mulberry32 } from "../../engine/mulberry32.ts";

/** A polygon as [x, y] vertices in level-0 pixels. */
export type Polygon = [number, number][];

export interface SyntheticSlideSpec {
  seed: number;
  width: number;
  height: number;
  /** Number of tumour regions (default 2; 0 makes a negative slide). */
  tumours?: number;
  /** Number of tissue blobs (default 3). */
  blobs?: number;
  /** Microns per pixel written to the TIFF (default 0.243, Camelyon's 40x). */
  mpp?: number;
  tileSize?: number;
  /** JPEG quality (default 85). */
  quality?: number;
}

/** The global, seed-determined geometry of a slide. */
export interface SyntheticLayout {
  spec: Required<SyntheticSlideSpec>;
  blobs: Polygon[];
  tumours: Polygon[];
}

/** Hash of three integers to [0, 1): position-keyed randomness with no state. */
function hash3(a: number, b: number, c: number): number {
  let h = Math.imul(a | 0, 0x27d4eb2d) ^ Math.imul(b | 0, 0x165667b1) ^
    Math.imul(c | 0, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/** Smooth value noise in [0, 1) at the given scale (pixels per lattice cell). */
function noise(x: number, y: number, sx: number, sy: number, salt: number): number {
  const gx = x / sx, gy = y / sy;
  const ix = Math.floor(gx), iy = Math.floor(gy);
  let fx = gx - ix, fy = gy - iy;
  fx = fx * fx * (3 - 2 * fx);
  fy = fy * fy * (3 - 2 * fy);
  const a = hash3(ix, iy, salt), b = hash3(ix + 1, iy, salt);
  const c = hash3(ix, iy + 1, salt), d = hash3(ix + 1, iy + 1, salt);
  return a + (b - a) * fx + (c - a) * fy + (a - b - c + d) * fx * fy;
}

const r2 = (v: number) => Math.round(v * 100) / 100;

/** Star-shaped irregular polygon: radius modulated by a few random harmonics. */
function blobPolygon(
  rnd: () => number,
  cx: number,
  cy: number,
  R: number,
  n: number,
  rough: number,
): Polygon {
  const harm = [2, 3, 4, 5, 7].map((k) => ({ k, a: (rnd() * rough) / Math.sqrt(k), p: rnd() * 7 }));
  const pts: Polygon = [];
  for (let i = 0; i < n; i++) {
    const th = (2 * Math.PI * i) / n;
    let r = 1 + (rnd() - 0.5) * rough * 0.2;
    for (const h of harm) r += h.a * Math.sin(h.k * th + h.p);
    r = Math.max(0.35, r) * R;
    pts.push([r2(cx + r * Math.cos(th)), r2(cy + r * Math.sin(th))]);
  }
  return pts;
}

/** The slide geometry (tissue blobs, tumour polygons) for a spec. */
export function syntheticLayout(spec: SyntheticSlideSpec): SyntheticLayout {
  const s: Required<SyntheticSlideSpec> = {
    tumours: 2,
    blobs: 3,
    mpp: 0.243,
    tileSize: 256,
    quality: 85,
    ...spec,
  };
  const rnd = mulberry32(s.seed * 2654435761 + 1);
  const { width: W, height: H } = s;
  const m = Math.min(W, H);
  const blobs: Polygon[] = [];
  const centres: [number, number, number][] = [];
  for (let i = 0; i < s.blobs; i++) {
    const R = m * (0.14 + 0.12 * rnd());
    const cx = R + rnd() * Math.max(1, W - 2 * R), cy = R + rnd() * Math.max(1, H - 2 * R);
    centres.push([cx, cy, R]);
    blobs.push(blobPolygon(rnd, cx, cy, R, 96, 0.35));
  }
  const tumours: Polygon[] = [];
  const placed: [number, number, number][] = [];
  for (let i = 0; i < s.tumours && blobs.length; i++) {
    for (let attempt = 0; attempt < 30; attempt++) {
      const [bx, by, R] = centres[Math.floor(rnd() * centres.length)];
      const Rt = R * (0.18 + 0.17 * rnd());
      const a = rnd() * 2 * Math.PI, d = rnd() * (R * 0.55 - Rt * 0.5);
      const cx = bx + Math.cos(a) * Math.max(0, d), cy = by + Math.sin(a) * Math.max(0, d);
      if (placed.some(([x, y, r]) => Math.hypot(cx - x, cy - y) < (r + Rt) * 1.5)) continue;
      placed.push([cx, cy, Rt]);
      tumours.push(blobPolygon(rnd, cx, cy, Rt, 40, 0.45));
      break;
    }
  }
  return { spec: s, blobs, tumours };
}

/** Even-odd point-in-polygon test (the ground-truth definition of "tumour pixel"). */
export function pointInPolygon(poly: Polygon, x: number, y: number): boolean {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Sets `value` in `map` (w x h at x0, y0) for pixels whose centre is inside `poly`. */
function fillPolygon(
  map: Uint8Array,
  x0: number,
  y0: number,
  w: number,
  h: number,
  poly: Polygon,
  value: number,
): void {
  let minY = Infinity, maxY = -Infinity, minX = Infinity, maxX = -Infinity;
  for (const [x, y] of poly) {
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
  }
  if (maxX < x0 || minX > x0 + w || maxY < y0 || minY > y0 + h) return;
  const xs: number[] = [];
  for (let Y = Math.max(y0, Math.floor(minY)); Y < Math.min(y0 + h, Math.ceil(maxY) + 1); Y++) {
    xs.length = 0;
    for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      const [xi, yi] = poly[i], [xj, yj] = poly[j];
      if ((yi > Y) !== (yj > Y)) xs.push(((xj - xi) * (Y - yi)) / (yj - yi) + xi);
    }
    xs.sort((a, b) => a - b);
    const row = (Y - y0) * w;
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // Pixel X is inside iff xs[k] <= X < xs[k+1] (matches pointInPolygon's strict test).
      const a = Math.max(x0, Math.ceil(xs[k])), b = Math.min(x0 + w, Math.ceil(xs[k + 1]));
      for (let X = a; X < b; X++) map[row + X - x0] = value;
    }
  }
}

/** Region classes per pixel: 0 glass, 1 normal tissue, 2 tumour. */
export function regionClasses(
  layout: SyntheticLayout,
  x0: number,
  y0: number,
  w: number,
  h: number,
): Uint8Array {
  const map = new Uint8Array(w * h);
  for (const b of layout.blobs) fillPolygon(map, x0, y0, w, h, b, 1);
  for (const t of layout.tumours) fillPolygon(map, x0, y0, w, h, t, 2);
  return map;
}

/** Haematoxylin / eosin optical-density vectors (Ruifrok & Johnston) for R, G, B. */
const HEM = [0.65, 0.7, 0.29];
const EOS = [0.07, 0.99, 0.11];
/** 255 * 10^-od for od in [0, 4) at 1/256 steps. */
const OD_LUT = (() => {
  const t = new Uint8Array(1024);
  for (let i = 0; i < 1024; i++) t[i] = Math.round(255 * Math.pow(10, -i / 256));
  return t;
})();

/** Nucleus grid parameters per tissue class (index 1 normal, 2 tumour). */
const NUCLEI = [
  null,
  { cell: 22, p: 0.45, rMin: 2.8, rMax: 4.2, aspect: 0.25, pleo: 0, hMin: 0.75, hMax: 0.95 },
  { cell: 13, p: 0.85, rMin: 4, rMax: 6.5, aspect: 0.8, pleo: 0.22, hMin: 1.05, hMax: 1.45 },
] as const;

/** Level-0 RGB (w*h*3) of any region, a pure function of the layout and coordinates. */
export function renderRegion(
  layout: SyntheticLayout,
  x0: number,
  y0: number,
  w: number,
  h: number,
): Uint8Array {
  const seed = layout.spec.seed | 0;
  const cls = regionClasses(layout, x0, y0, w, h);
  const hc = new Float32Array(w * h), ec = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const Y = y0 + y;
    for (let x = 0; x < w; x++) {
      const X = x0 + x, i = y * w + x, c = cls[i];
      if (c === 0) {
        hc[i] = 0.006;
        ec[i] = 0.006 + 0.01 * noise(X, Y, 64, 64, seed + 1);
        continue;
      }
      const fib = noise(X, Y, 28, 7, seed + 2) * 0.6 + noise(X, Y, 9, 3, seed + 3) * 0.4;
      if (c === 1) {
        const fat = noise(X, Y, 90, 90, seed + 4);
        ec[i] = (0.12 + 0.2 * fib) * (fat > 0.8 ? 0.15 : 1);
        hc[i] = 0.05 + 0.03 * fib;
      } else {
        ec[i] = 0.08 + 0.1 * fib;
        hc[i] = 0.22 + 0.1 * noise(X, Y, 16, 16, seed + 5);
      }
    }
  }
  // Nuclei: one candidate per grid cell per class, splatted only onto pixels of that class.
  for (const c of [1, 2] as const) {
    const nuclei = NUCLEI[c];
    const margin = Math.ceil(nuclei.rMax * (1 + nuclei.aspect + nuclei.pleo)) + 1;
    const cx0 = Math.floor((x0 - margin) / nuclei.cell),
      cx1 = Math.floor((x0 + w + margin) / nuclei.cell);
    const cy0 = Math.floor((y0 - margin) / nuclei.cell),
      cy1 = Math.floor((y0 + h + margin) / nuclei.cell);
    const salt = seed * 31 + c * 7919;
    for (let gy = cy0; gy <= cy1; gy++) {
      for (let gx = cx0; gx <= cx1; gx++) {
        if (hash3(gx, gy, salt) >= nuclei.p) continue;
        const px = (gx + 0.15 + 0.7 * hash3(gx, gy, salt + 1)) * nuclei.cell;
        const py = (gy + 0.15 + 0.7 * hash3(gx, gy, salt + 2)) * nuclei.cell;
        const r = nuclei.rMin + (nuclei.rMax - nuclei.rMin) * hash3(gx, gy, salt + 3);
        const ax = r * (1 + nuclei.aspect * hash3(gx, gy, salt + 4)), ay = r;
        const rot = Math.PI * hash3(gx, gy, salt + 5), cs = Math.cos(rot), sn = Math.sin(rot);
        const ph = 6.283 * hash3(gx, gy, salt + 6);
        const dark = nuclei.hMin + (nuclei.hMax - nuclei.hMin) * hash3(gx, gy, salt + 7);
        const ext = Math.ceil(Math.max(ax, ay) * (1 + nuclei.pleo)) + 1;
        const bx0 = Math.max(x0, Math.floor(px - ext)), bx1 = Math.min(x0 + w, Math.ceil(px + ext));
        const by0 = Math.max(y0, Math.floor(py - ext)), by1 = Math.min(y0 + h, Math.ceil(py + ext));
        for (let Y = by0; Y < by1; Y++) {
          for (let X = bx0; X < bx1; X++) {
            const i = (Y - y0) * w + (X - x0);
            if (cls[i] !== c) continue;
            const dx = X - px, dy = Y - py;
            const u = (dx * cs + dy * sn) / ax, v = (-dx * sn + dy * cs) / ay;
            let d2 = u * u + v * v;
            if (nuclei.pleo) {
              const k = 1 + nuclei.pleo * Math.sin(3 * Math.atan2(v, u) + ph);
              d2 /= k * k;
            }
            if (d2 > 1) continue;
            const chrom = 0.85 + 0.3 * hash3(X, Y, salt + 8);
            const rim = d2 > 0.7 ? 1.1 : 1;
            hc[i] = Math.max(hc[i], dark * chrom * rim);
            ec[i] *= 0.3;
          }
        }
      }
    }
  }
  const out = new Uint8Array(w * h * 3);
  for (let i = 0, n = w * h; i < n; i++) {
    const X = x0 + (i % w), Y = y0 + ((i / w) | 0);
    const grain = (hash3(X, Y, seed + 9) - 0.5) * 0.03;
    for (let k = 0; k < 3; k++) {
      const od = HEM[k] * hc[i] + EOS[k] * ec[i] + grain;
      const q = Math.round(od * 256);
      out[i * 3 + k] = OD_LUT[q < 0 ? 0 : q > 1023 ? 1023 : q];
    }
  }
  return out;
}

/** The tumour polygons of a layout (level-0 pixel coordinates; pixel centres at integers). */
export function tumourPolygons(layout: SyntheticLayout): Polygon[] {
  return layout.tumours.map((p) => p.map(([x, y]) => [x, y] as [number, number]));
}

/** ASAP annotation XML for polygons in one group. */
export function asapXml(polygons: Polygon[], group = "metastases", color = "#F4FA58"): string {
  const ann = polygons.map((p, i) =>
    `\t\t<Annotation Name="Annotation ${i}" Type="Polygon" PartOfGroup="${group}" Color="${color}">\n` +
    `\t\t\t<Coordinates>\n` +
    p.map(([x, y], k) => `\t\t\t\t<Coordinate Order="${k}" X="${x}" Y="${y}" />\n`).join("") +
    `\t\t\t</Coordinates>\n\t\t</Annotation>\n`
  ).join("");
  return `<?xml version="1.0"?>\n<ASAP_Annotations>\n\t<Annotations>\n${ann}\t</Annotations>\n` +
    `\t<AnnotationGroups>\n\t\t<Group Name="${group}" PartOfGroup="None" Color="${color}">\n` +
    `\t\t\t<Attributes />\n\t\t</Group>\n\t</AnnotationGroups>\n</ASAP_Annotations>\n`;
}

/**
 * Writes a synthetic slide as a tiled pyramidal JPEG TIFF (`outTif`) and its tumour annotations
 * as ASAP XML (`outXml`, skipped when null).
 */
export async function generateSyntheticSlide(
  spec: SyntheticSlideSpec,
  outTif: string,
  outXml: string | null,
): Promise<{ layout: SyntheticLayout; tiff: WrittenTiff }> {
  const layout = syntheticLayout(spec);
  const tileSize = layout.spec.tileSize;
  const tiff = await writePyramidTiff(outTif, {
    width: spec.width,
    height: spec.height,
    channels: 3,
    compression: "jpeg",
    quality: layout.spec.quality,
    tileSize,
    mpp: layout.spec.mpp,
    description: `synthetic H&E slide seed=${spec.seed}`,
  }, (tx, ty) => renderRegion(layout, tx * tileSize, ty * tileSize, tileSize, tileSize));
  if (outXml) await writeFileAtomic(outXml, asapXml(layout.tumours));
  return { layout, tiff };
}
