/**
 * Dataset preparation from whole-slide images, after EP-SAM `0_data_preprocess.py`:
 * tissue mask → grid candidates with tumour statistics (one JSON-lines file per slide) →
 * stratified selection per split → 512×512 level-0 patches as PNG.
 *
 * Output layout (the reference's folder names, so its loaders would read it too):
 *   <out>/<split>/image/<id>_<label>.png   RGB patch (label 1 tumour, 0 normal)
 *   <out>/<split>/mask/<id>_1.png          gray 0/255 tumour mask, positives only
 *   <out>/candidates/<slide>.jsonl         every candidate of a slide (resumable cache)
 *   <out>/candidates/<slide>_tissue.png    the slide's tissue mask (for inspection)
 *   <out>/manifest.json                    settings, split lists, counts, every selected patch
 *
 * Every file is written atomically (temp + rename), so an interrupted run leaves only whole
 * files, and a rerun skips files that exist.
 */
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { encodePng } from "../../engine/io/png.ts";
import { type AnnotationSet, rasterizeRegion, readAsapXml } from "./annotations.ts";
import { Progress } from "../progress.ts";
import { exists } from "../fs.ts";
import {
  type DatasetRules,
  defaultRules,
  type PatchRecord,
  patchRecords,
  recordsFromJsonl,
  recordsToJsonl,
  sampleCenters,
  type Selected,
  type SelectionReport,
  selectSplit,
  type SplitName,
  SPLITS,
} from "./sampling.ts";
import { defaultSplit, slideKey, type SplitLists, splitOf, stem } from "./splits.ts";
import { slideTissueMask } from "./tissue.ts";
import { assignBalanced, type Shard, shardLabel } from "../shard/shard.ts";
import { isSharded, mergeShards, ShardRecorder } from "../shard/manifest.ts";

/** The part of `pipeline/wsi/slide.ts`'s `Slide` used here (tests pass in-memory fakes). */
export interface ExtractSlide {
  levels: { width: number; height: number; downsample: number }[];
  readRegion(level: number, x0: number, y0: number, w: number, h: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Options of {@link prepareDataset}. */
export interface PrepareOptions {
  dataset: string;
  /** Folder of slides (`*.tif`, `*.tiff`, `*.svs`; names containing "mask" are skipped). */
  slides: string;
  /** Folder of ASAP XML files named like the slides. */
  annotations: string;
  out: string;
  /** Patch side in level-0 pixels (512). */
  patch?: number;
  /** Seed of every random draw (42, the reference's `random_state`). */
  seed?: number;
  /** Slide level for the tissue mask (default: the level nearest downsample 16). */
  level?: number;
  /** Grid step in level-0 pixels (reference: 256 for Camelyon16, 512 for Camelyon17). */
  gridSide?: number;
  /**
   * Window for isTumor / tumour percentage (default: the patch side, so labels describe the saved
   * patch; the reference's Camelyon16 code used 256 with 512 patches: pass 256 to reproduce).
   */
  statsSize?: number;
  split?: SplitLists;
  rules?: DatasetRules;
  /** Slide opener (default `openSlide` of `slide.ts`). */
  open?: (path: string) => Promise<ExtractSlide>;
  /** Progress lines on stderr (default true). */
  progress?: boolean;
  log?: (msg: string) => void;
  /**
   * Do one shard's share only: `candidates` (tissue mask and candidate patches of this shard's
   * slides) or `patches` (the selection, which needs every slide's candidates, then the patch
   * files of this shard's slides). Slides go to shards balanced by `slideWeight` (default: file
   * size), ties by a stable hash of the slide key. Without `shard`, a folder holding shard
   * manifests is merged: they must be complete and match their checksums.
   */
  shard?: { shard: Shard; phase: "candidates" | "patches" };
  /** Weight of a slide for the shard assignment (default: its file size). */
  slideWeight?: (path: string) => Promise<number>;
  /**
   * Slide keys a sharded run covers, when not every slide exists yet (synthetic slides made by
   * the shards themselves); default: the slides found.
   */
  slideKeys?: string[];
}

/** Shard pass names of the two phases (their manifests are under `<out>/shards/`). */
export const PREPARE_PASSES = { candidates: "prepare_candidates", patches: "prepare_patches" };

/** Per-slide summary in the manifest. */
export interface SlideSummary {
  key: string;
  path: string;
  annotation: string | null;
  split: SplitName;
  candidates: number;
  tumourCandidates: number;
  ignoredAnnotations: { name: string; group: string; type: string; reason: string }[];
}

/** One selected patch in the manifest. */
export interface ManifestPatch extends Selected {
  image: string;
  mask: string | null;
}

/** `manifest.json`. */
export interface Manifest {
  version: 1;
  dataset: string;
  settings: {
    patch: number;
    seed: number;
    level: number | null;
    gridSide: number;
    statsSize: number;
  };
  split: SplitLists;
  rules: DatasetRules;
  slides: SlideSummary[];
  reports: SelectionReport[];
  patches: ManifestPatch[];
}

/** What a run did. */
export interface PrepareResult {
  manifestPath: string;
  manifest: Manifest;
  written: number;
  skipped: number;
}

const SLIDE_RE = /\.(tiff?|svs)$/i;

async function listFiles(dir: string, keep: (name: string) => boolean): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      // Symlinked slides are common (shared data folders): follow them.
      const st = e.isSymlink ? await Deno.stat(p).catch(() => null) : e;
      if (!st) continue;
      if (st.isDirectory) await walk(p);
      else if (st.isFile && keep(e.name)) out.push(p);
    }
  };
  try {
    await walk(dir);
  } catch (e) {
    throw new Error(`cannot list ${dir}: ${(e as Error).message}`);
  }
  return out.sort();
}

/** The slide files under `dir` (recursively, symlinks followed; names with "mask" left out). */
export function listSlideFiles(dir: string): Promise<string[]> {
  return listFiles(dir, (n) => SLIDE_RE.test(n) && !/mask/i.test(n));
}

async function defaultOpen(path: string): Promise<ExtractSlide> {
  const { openSlide } = await import("./slide.ts");
  return await openSlide(path);
}

/** RGBA → RGB over white (OpenSlide gives alpha 0 outside the slide). */
function rgbaOverWhite(rgba: Uint8Array): Uint8Array {
  const n = rgba.length >> 2;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = rgba[4 * i + 3];
    for (let c = 0; c < 3; c++) {
      const v = rgba[4 * i + c];
      out[3 * i + c] = a === 255 ? v : Math.round((v * a + 255 * (255 - a)) / 255);
    }
  }
  return out;
}

/** Image and mask file names of a selected patch, relative to the output folder. */
function patchFiles(p: Selected): { image: string; mask: string | null } {
  const name = `${p.id}_${p.label}.png`;
  return { image: `${p.split}/image/${name}`, mask: p.label ? `${p.split}/mask/${name}` : null };
}

/** Runs the whole preparation; see the module comment for the layout. */
export async function prepareDataset(o: PrepareOptions): Promise<PrepareResult> {
  const log = o.log ?? ((m: string) => console.error(m));
  const patch = o.patch ?? 512;
  const seed = o.seed ?? 42;
  const gridSide = o.gridSide ?? (o.dataset === "camelyon16" ? 256 : patch);
  const statsSize = o.statsSize ?? patch;
  const rules = o.rules ?? defaultRules(o.dataset);
  const open = o.open ?? defaultOpen;
  const showProgress = o.progress ?? true;
  const out = o.out.replace(/\/+$/, "");

  const slidePaths = await listSlideFiles(o.slides);
  const xmlPaths = await listFiles(o.annotations, (n) => /\.xml$/i.test(n));
  const xmlByStem = new Map(xmlPaths.map((p) => [stem(p), p]));
  const keyed: { key: string; path: string }[] = [];
  const byKey = new Map<string, string>();
  for (const p of slidePaths) {
    const key = slideKey(o.dataset, p);
    if (key === null) {
      log(`skip ${p}: not used for ${o.dataset}`);
      continue;
    }
    if (byKey.has(key)) {
      throw new Error(`slides ${byKey.get(key)} and ${p} both have key ${key}; pass --split`);
    }
    byKey.set(key, p);
    keyed.push({ key, path: p });
  }
  const split = o.split ?? defaultSplit(o.dataset, keyed.map((k) => k.key));
  const settings = { patch, seed, level: o.level ?? null, gridSide, statsSize };
  const inSplit = keyed.filter((k) => splitOf(split, k.key) !== null);
  const owner = o.shard
    ? await shardOwners(inSplit, o.shard.shard, o.slideWeight, o.slideKeys)
    : null;
  const mine = (key: string) => !owner || owner.get(key) === o.shard!.shard.index;

  const manifestPath = `${out}/manifest.json`;
  if (await exists(manifestPath)) {
    // Files of another selection in the same folders would silently join the dataset.
    const old = JSON.parse(await Deno.readTextFile(manifestPath)) as Manifest;
    const same = old.dataset === o.dataset &&
      JSON.stringify(old.settings) === JSON.stringify(settings) &&
      JSON.stringify(old.split) === JSON.stringify(split) &&
      JSON.stringify(old.rules) === JSON.stringify(rules);
    if (!same) {
      throw new Error(
        `${manifestPath} was written with other settings (dataset, seed, patch, level, split or ` +
          `rules); use a new --out folder or delete the old one`,
      );
    }
  }
  await Deno.mkdir(`${out}/candidates`, { recursive: true });

  // 1. Candidates per slide (cached).
  const slides: SlideSummary[] = [];
  const bySplit: Record<SplitName, PatchRecord[]> = { train: [], val: [], test: [] };
  const annCache = new Map<string, AnnotationSet | null>();
  const loadAnn = async (key: string, path: string | null) => {
    if (!annCache.has(key)) annCache.set(key, path ? await readAsapXml(path) : null);
    return annCache.get(key)!;
  };
  // The slides a sharded preparation covers: all planned ones, even those no shard made.
  const expected = o.slideKeys?.map((key) => ({ key })) ?? inSplit;
  if (!o.shard || o.shard.phase === "patches") {
    await mergePrepareShards(out, PREPARE_PASSES.candidates, expected, shardKey(settings));
  }
  const recorder = o.shard
    ? await ShardRecorder.start(
      out,
      PREPARE_PASSES[o.shard.phase],
      o.shard.shard,
      shardKey(settings),
    )
    : null;
  for (const { key, path } of keyed) {
    const sp = splitOf(split, key);
    if (!sp) {
      log(`skip ${path}: slide ${key} is in no split`);
      continue;
    }
    if (o.shard?.phase === "candidates" && !mine(key)) continue;
    if (o.shard?.phase === "patches" && !(await exists(`${out}/candidates/${key}.jsonl`))) {
      throw new Error(`${out}/candidates/${key}.jsonl: missing; run the candidates phase first`);
    }
    const xml = xmlByStem.get(stem(path)) ?? null;
    const ann = await loadAnn(key, xml);
    if (!xml) log(`note ${path}: no annotation XML, every patch is normal`);
    for (const ig of ann?.ignored ?? []) {
      log(`note ${xml}: annotation ${JSON.stringify(ig.name)} ignored (${ig.reason})`);
    }
    const candPath = `${out}/candidates/${key}.jsonl`;
    let records: PatchRecord[];
    if (await exists(candPath)) {
      records = recordsFromJsonl(await Deno.readTextFile(candPath), candPath);
    } else {
      const slide = await open(path);
      try {
        const t = await slideTissueMask(slide, o.level);
        await writeFileAtomic(
          `${out}/candidates/${key}_tissue.png`,
          encodePng({ data: t.mask, width: t.width, height: t.height, channels: 1 }),
        );
        const centers = sampleCenters(t.mask, t.width, t.height, {
          maskDownsample: t.downsample,
          side: gridSide,
        });
        const pr = new Progress(`candidates ${key}`, centers.length / 2, {
          enabled: showProgress,
          unit: "patch",
        });
        records = patchRecords(key, centers, ann, statsSize, (d) => pr.set(d));
        pr.finish();
      } finally {
        await slide.close();
      }
      await writeFileAtomic(candPath, recordsToJsonl(records));
    }
    if (o.shard?.phase === "candidates") {
      const files = [`candidates/${key}.jsonl`];
      if (await exists(`${out}/candidates/${key}_tissue.png`)) {
        files.unshift(`candidates/${key}_tissue.png`);
      }
      await recorder!.add(key, files, { candidates: records.length });
      continue;
    }
    bySplit[sp].push(...records);
    slides.push({
      key,
      path,
      annotation: xml,
      split: sp,
      candidates: records.length,
      tumourCandidates: records.filter((r) => r.isTumor).length,
      ignoredAnnotations: ann?.ignored ?? [],
    });
  }

  if (o.shard?.phase === "candidates") {
    const path = await recorder!.finish();
    log(
      `prepare: shard ${shardLabel(o.shard.shard)}: candidates of ${
        recorder!.size
      } slides; ${path}`,
    );
    return { manifestPath: path, manifest: null as unknown as Manifest, written: 0, skipped: 0 };
  }

  // 2. Selection.
  const reports: SelectionReport[] = [];
  const patches: ManifestPatch[] = [];
  for (const s of SPLITS) {
    const { selected, report } = selectSplit(s, bySplit[s], rules[s], seed);
    reports.push(report);
    for (const sh of report.shortfalls) log(`${s}: ${sh}`);
    for (const p of selected) patches.push({ ...p, ...patchFiles(p) });
  }
  const manifest: Manifest = {
    version: 1,
    dataset: o.dataset,
    settings,
    split,
    rules,
    slides,
    reports,
    patches,
  };
  if (o.shard) {
    // 3'. This shard's slides only; the merge (an unsharded run) writes manifest.json.
    const own = slides.filter((s) => mine(s.key));
    const ownPatches = patches.filter((p) => mine(p.slide));
    const r = await extractPatches(out, ownPatches, own, patch, open, loadAnn, showProgress);
    const bySlide = Map.groupBy(ownPatches, (p) => p.slide);
    for (const s of own) {
      const list = bySlide.get(s.key) ?? [];
      const files = list.flatMap((p) => (p.mask ? [p.image, p.mask] : [p.image]));
      await recorder!.add(s.key, files, { patches: list.length });
    }
    const path = await recorder!.finish();
    log(`prepare: shard ${shardLabel(o.shard.shard)}: patches of ${own.length} slides; ${path}`);
    return { manifestPath: path, manifest, written: r.written, skipped: r.skipped };
  }
  await mergePrepareShards(out, PREPARE_PASSES.patches, slides, shardKey(settings));
  await writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 1) + "\n");

  // 3. Extraction, one slide open at a time.
  const { written, skipped } = await extractPatches(
    out,
    patches,
    slides,
    patch,
    open,
    loadAnn,
    showProgress,
  );
  return { manifestPath, manifest, written, skipped };
}

/** What every shard of one preparation shares (their manifests must agree on it). */
const shardKey = (settings: Manifest["settings"]) => JSON.stringify(settings);

/**
 * Shard of each slide: balanced by weight (file size by default) over the slides the run covers
 * (`keys`, else those found), so every shard computes the same assignment.
 */
async function shardOwners(
  found: { key: string; path: string }[],
  shard: Shard,
  weightOf?: (path: string) => Promise<number>,
  keys?: string[],
): Promise<Map<string, number>> {
  const pathOf = new Map(found.map((f) => [f.key, f.path]));
  const list = keys ?? found.map((f) => f.key);
  const weights: { id: string; weight: number }[] = [];
  for (const id of list) {
    const p = pathOf.get(id);
    const w = weightOf && p ? await weightOf(p) : weightOf ? 1 : p ? (await Deno.stat(p)).size : 0;
    weights.push({ id, weight: w });
  }
  const a = assignBalanced(weights, shard.count);
  return new Map(list.map((id, i) => [id, a[i]]));
}

/** Verifies a phase's shards when the folder holds any (every slide once, checksums intact). */
async function mergePrepareShards(
  out: string,
  pass: string,
  slides: { key: string }[],
  key: string,
): Promise<void> {
  if (!(await isSharded(out, pass))) return;
  await mergeShards(out, pass, slides.map((s) => s.key), key);
}

/** Writes the missing image/mask files of `patches`; returns how many were written/skipped. */
async function extractPatches(
  out: string,
  patches: ManifestPatch[],
  slides: SlideSummary[],
  size: number,
  open: (path: string) => Promise<ExtractSlide>,
  loadAnn: (key: string, path: string | null) => Promise<AnnotationSet | null>,
  showProgress: boolean,
): Promise<{ written: number; skipped: number }> {
  for (const s of SPLITS) {
    await Deno.mkdir(`${out}/${s}/image`, { recursive: true });
    await Deno.mkdir(`${out}/${s}/mask`, { recursive: true });
  }
  let written = 0, skipped = 0;
  const pr = new Progress("extract", patches.length, { enabled: showProgress, unit: "patch" });
  const bySlide = Map.groupBy(patches, (p) => p.slide);
  const scratch = new Uint8Array(size * size);
  for (const info of slides) {
    const list = bySlide.get(info.key) ?? [];
    const todo: { p: ManifestPatch; image: boolean; mask: boolean }[] = [];
    for (const p of list) {
      const image = !(await exists(`${out}/${p.image}`));
      const mask = p.mask !== null && !(await exists(`${out}/${p.mask}`));
      if (image || mask) todo.push({ p, image, mask });
      else {
        skipped++;
        pr.tick();
      }
    }
    if (!todo.length) continue;
    const ann = await loadAnn(info.key, info.annotation);
    const slide = todo.some((t) => t.image) ? await open(info.path) : null;
    try {
      for (const { p, image, mask } of todo) {
        const x0 = Math.trunc(p.cx - size / 2), y0 = Math.trunc(p.cy - size / 2);
        if (mask) {
          const m = ann ? rasterizeRegion(ann, 1, x0, y0, size, size, scratch) : scratch.fill(0);
          await writeFileAtomic(
            `${out}/${p.mask}`,
            encodePng({ data: m, width: size, height: size, channels: 1 }),
          );
          written++;
        }
        if (image) {
          const rgb = rgbaOverWhite(await slide!.readRegion(0, x0, y0, size, size));
          await writeFileAtomic(
            `${out}/${p.image}`,
            encodePng({ data: rgb, width: size, height: size, channels: 3 }),
          );
          written++;
        }
        pr.tick();
      }
    } finally {
      await slide?.close();
    }
  }
  pr.finish(`(${written} files written, ${skipped} patches already done)`);
  return { written, skipped };
}
