/**
 * What the viewer may serve, fixed at start: the slides (files or folders named by `--slides`, or
 * the run's own slides), their annotations (`--annotations DIR/<stem>.xml`, the manifest's, or an
 * XML beside the slide), their predictions (`--predictions DIR`: `DIR/<stem>/` or DIR itself when
 * its name is the stem; and `<run>/infer/<stem>/`), the run folder and its prepared dataset.
 * Slides are matched to annotations, predictions and manifest entries by file name stem.
 * A slide file reached through a symlink out of its folder is left out (with a warning).
 */
import { listSplit, type PatchItem } from "../data/patches.ts";
import type { PipelineConfig } from "../config.ts";
import { stem } from "../wsi/splits.ts";
import { confinedFile, isInside, realPathOrNull } from "./safe_path.ts";

export const SPLITS = ["train", "val", "test"] as const;
export type Split = typeof SPLITS[number];

/** One patch of the prepared dataset drawn as the grid overlay (level-0 top-left and side). */
export interface GridPatch {
  x: number;
  y: number;
  label: 0 | 1;
  split: Split;
}

/** A slide the viewer serves and what belongs to it. */
export interface SlideEntry {
  /** URL id: the file name stem (made unique with a suffix). */
  id: string;
  /** Real path of the slide file. */
  path: string;
  /** ASAP XML, or null. */
  annotation: string | null;
  /** `probability.tif` from `infer --slide`, or null. */
  probability: string | null;
  /** `tumour.geojson` from `infer --slide` / `export`, or null. */
  geojson: string | null;
  /** Where predictions were looked for (shown when absent). */
  predictionPlaces: string[];
  /** Grid patches of the prepared dataset on this slide, and their side in level-0 pixels. */
  grid: GridPatch[];
  gridPatch: number | null;
}

/** The run folder (`--run`). */
export interface RunEntry {
  /** Real path. */
  dir: string;
  cfg: PipelineConfig;
  /** Real path of the prepared dataset. */
  dataDir: string;
  /** Patches per split (listed at start); empty when the split is missing. */
  splits: Record<Split, PatchItem[]>;
  /** Side of the prepared patches in level-0 pixels (what a click on the slide cuts). */
  patchLevel0: number;
  /** Folders reads may touch (real paths). */
  roots: string[];
}

export interface Catalog {
  slides: Map<string, SlideEntry>;
  run: RunEntry | null;
  warnings: string[];
}

export interface CatalogOptions {
  run?: string;
  slides: string[];
  annotations?: string;
  predictions: string[];
}

const SLIDE_RE = /\.(tiff?|svs)$/i;

interface ManifestLike {
  settings?: { patch?: number };
  slides?: { key?: string; path?: string; annotation?: string | null }[];
  patches?: { slide?: string; cx?: number; cy?: number; label?: number; split?: string }[];
}

async function readJson(p: string): Promise<unknown> {
  return JSON.parse(await Deno.readTextFile(p));
}

/** Slide files in a folder (recursive), excluding symlinks that leave it and mask images. */
async function listSlides(dir: string, warnings: string[]): Promise<string[]> {
  const root = await realPathOrNull(dir);
  if (!root) throw new Error(`--slides ${dir}: not found`);
  const out: string[] = [];
  const walk = async (d: string, depth: number) => {
    if (depth > 8) return;
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      const real = await realPathOrNull(p);
      if (!real) continue;
      if (!isInside(real, root)) {
        warnings.push(`${p}: symlink out of ${dir}, not served`);
        continue;
      }
      const st = await Deno.stat(real);
      if (st.isDirectory) await walk(p, depth + 1);
      else if (st.isFile && SLIDE_RE.test(e.name) && !/mask/i.test(e.name)) out.push(real);
    }
  };
  await walk(root, 0);
  return out.sort();
}

async function openRun(dir: string, warnings: string[]): Promise<RunEntry> {
  const real = await realPathOrNull(dir);
  if (!real) throw new Error(`--run ${dir}: not found`);
  let cfg: PipelineConfig;
  try {
    cfg = await readJson(`${real}/config.json`) as PipelineConfig;
  } catch (e) {
    throw new Error(`--run ${dir}: not a run folder (config.json: ${(e as Error).message})`);
  }
  if (typeof cfg !== "object" || cfg === null || typeof cfg.patchSize !== "number") {
    throw new Error(`--run ${dir}: config.json has no patchSize (not a pipeline config)`);
  }
  const dataDir = (await realPathOrNull(cfg.data?.dir ?? `${real}/data`)) ?? `${real}/data`;
  const splits = { train: [], val: [], test: [] } as Record<Split, PatchItem[]>;
  for (const s of SPLITS) {
    try {
      splits[s] = await listSplit(`${dataDir}/${s}`);
    } catch (e) {
      warnings.push(`run: ${(e as Error).message}`);
    }
  }
  let patchLevel0 = cfg.data?.synthetic?.patch ?? 512;
  try {
    const m = await readJson(`${dataDir}/manifest.json`) as ManifestLike;
    if (typeof m.settings?.patch === "number") patchLevel0 = m.settings.patch;
  } catch { /* no manifest: the synthetic patch side */ }
  return { dir: real, cfg, dataDir, splits, patchLevel0, roots: [real, dataDir] };
}

/** Builds the catalogue; throws on a named folder or run that cannot be read. */
export async function buildCatalog(o: CatalogOptions): Promise<Catalog> {
  const warnings: string[] = [];
  const run = o.run ? await openRun(o.run, warnings) : null;
  let manifest: ManifestLike | null = null;
  if (run) {
    try {
      manifest = await readJson(`${run.dataDir}/manifest.json`) as ManifestLike;
    } catch { /* a dataset prepared elsewhere may lack it: no grid */ }
  }
  // Slide files.
  const files: string[] = [];
  for (const s of o.slides) {
    const st = await Deno.stat(s).catch(() => null);
    if (!st) throw new Error(`--slides ${s}: not found`);
    if (st.isDirectory) files.push(...await listSlides(s, warnings));
    else files.push(await Deno.realPath(s));
  }
  if (!o.slides.length && manifest?.slides) {
    for (const ms of manifest.slides) {
      const real = ms.path ? await realPathOrNull(ms.path) : null;
      if (real) files.push(real);
      else if (ms.path) warnings.push(`manifest slide ${ms.path}: not found`);
    }
  }
  const annRoot = o.annotations ? await realPathOrNull(o.annotations) : null;
  if (o.annotations && !annRoot) throw new Error(`--annotations ${o.annotations}: not found`);
  const predRoots: string[] = [];
  for (const p of o.predictions) {
    const r = await realPathOrNull(p);
    if (!r) throw new Error(`--predictions ${p}: not found`);
    predRoots.push(r);
  }
  const slides = new Map<string, SlideEntry>();
  for (const path of [...new Set(files)]) {
    const s = stem(path);
    let id = s.replace(/[^A-Za-z0-9._-]/g, "_");
    for (let k = 2; slides.has(id); k++) id = `${s}_${k}`;
    // Annotation: --annotations, then the manifest's, then <slide dir>/<stem>.xml.
    const slideDir = path.slice(0, path.lastIndexOf("/"));
    let annotation: string | null = null;
    if (annRoot) annotation = await confinedFile(`${annRoot}/${s}.xml`, [annRoot]);
    const ms = manifest?.slides?.find((m) => m.path && stem(m.path) === s);
    if (!annotation && ms?.annotation) annotation = await realPathOrNull(ms.annotation);
    if (!annotation && !annRoot) {
      annotation = await confinedFile(`${slideDir}/${s}.xml`, [slideDir]);
    }
    // Predictions.
    const places: string[] = [];
    for (const r of predRoots) places.push(r.split("/").pop() === s ? r : `${r}/${s}`);
    if (run) places.push(`${run.dir}/infer/${s}`);
    let probability: string | null = null, geojson: string | null = null;
    for (const p of places) {
      const pr = await realPathOrNull(p);
      if (!pr) continue;
      probability ??= await confinedFile(`${pr}/probability.tif`, [pr]);
      geojson ??= await confinedFile(`${pr}/tumour.geojson`, [pr]);
    }
    // Grid patches of this slide from the manifest.
    const grid: GridPatch[] = [];
    const key = ms?.key;
    const T = manifest?.settings?.patch ?? null;
    if (key !== undefined && T) {
      for (const p of manifest!.patches ?? []) {
        if (p.slide !== key || typeof p.cx !== "number" || typeof p.cy !== "number") continue;
        const split = SPLITS.includes(p.split as Split) ? p.split as Split : "train";
        grid.push({
          x: Math.trunc(p.cx - T / 2),
          y: Math.trunc(p.cy - T / 2),
          label: p.label ? 1 : 0,
          split,
        });
      }
    }
    slides.set(id, {
      id,
      path,
      annotation,
      probability,
      geojson,
      predictionPlaces: places,
      grid,
      gridPatch: grid.length ? T : null,
    });
  }
  return { slides, run, warnings };
}
