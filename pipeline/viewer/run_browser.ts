/**
 * The run browser's data: the gallery listing (every patch of a split with what the run holds for
 * it: ground truth, CAM, pseudo-labels per iteration, final mask and Dice), the patch images as
 * overlay-ready PNGs, and the dashboard (state.json, metrics.jsonl per stage, summary.json), read
 * fresh on each request so the page follows a run that is still training.
 */
import { decodePng, encodePng, type Image8 } from "../../engine/io/png.ts";
import { jet } from "../plots.ts";
import { parseMetrics } from "../run_dir.ts";
import type { RunEntry, Split } from "./catalog.ts";
import { readConfined } from "./safe_path.ts";
import type { SegmentService } from "./segment.ts";

/** One gallery entry. */
export interface GalleryItem {
  id: string;
  split: Split;
  label: 0 | 1;
  truth: boolean;
  cam: boolean;
  /** Iterations k with a pseudo-label `pseudo/iter_<k>/<split>/<id>_1.png`. */
  pseudo: number[];
  final: boolean;
  dice: number | null;
}

/** Overlay kinds of a patch (`image` is the patch itself). */
const PATCH_KINDS = /^(image|truth|cam|cam_mask|final|pseudo_(\d{1,3}))$/;

async function names(dir: string): Promise<Set<string>> {
  const out = new Set<string>();
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile) out.add(e.name);
  } catch { /* absent: empty */ }
  return out;
}

/** Iterations whose pseudo-label folders exist. */
async function pseudoIters(run: RunEntry): Promise<number[]> {
  const out: number[] = [];
  try {
    for await (const e of Deno.readDir(`${run.dir}/pseudo`)) {
      const m = /^iter_(\d{1,3})$/.exec(e.name);
      if (m && e.isDirectory) out.push(Number(m[1]));
    }
  } catch { /* none yet */ }
  return out.sort((a, b) => a - b);
}

/** The gallery of one split. */
export async function gallery(
  run: RunEntry,
  split: Split,
  seg: SegmentService,
): Promise<GalleryItem[]> {
  const cams = await names(`${run.dir}/cam/${split}`);
  const iters = await pseudoIters(run);
  const pseudo = await Promise.all(iters.map((k) => names(`${run.dir}/pseudo/iter_${k}/${split}`)));
  const fin = seg.finals.get(split);
  return run.splits[split].map((it) => ({
    id: it.id,
    split,
    label: it.label,
    truth: it.mask !== null,
    cam: cams.has(`${it.id}_norm.png`),
    pseudo: iters.filter((_, i) => pseudo[i].has(`${it.id}_1.png`)),
    final: !!fin?.masks.has(it.id),
    dice: fin?.dice.get(it.id) ?? null,
  }));
}

/** A 0/1 (or 0/255) mask as an RGBA PNG: `colour` where on, transparent elsewhere. */
function maskPng(
  on: (i: number) => boolean,
  w: number,
  h: number,
  colour: [number, number, number],
): Uint8Array {
  const px = new Uint8Array(w * h * 4);
  for (let i = 0; i < w * h; i++) {
    if (!on(i)) continue;
    px.set(colour, i * 4);
    px[i * 4 + 3] = 255;
  }
  return encodePng({ data: px, width: w, height: h, channels: 4 });
}

function decodeOr404(bytes: Uint8Array | null, name: string): Image8 | null {
  return bytes ? decodePng(bytes, name) : null;
}

/** Mask colours shared with the page's legend. */
const COLOURS: Record<string, [number, number, number]> = {
  truth: [255, 40, 40],
  cam_mask: [255, 255, 255],
  pseudo: [255, 200, 0],
  final: [0, 230, 0],
};

/**
 * One patch image: `image` (the PNG as stored), or an RGBA overlay PNG. Null when the run has no
 * such file for the patch (404).
 */
export async function patchImage(
  run: RunEntry,
  split: Split,
  id: string,
  kind: string,
  seg: SegmentService,
): Promise<Uint8Array | null> {
  const item = run.splits[split].find((p) => p.id === id);
  const m = PATCH_KINDS.exec(kind);
  if (!item || !m) return null;
  const roots = run.roots;
  if (kind === "image") return await readConfined(item.image, roots);
  if (kind === "final") {
    const mask = seg.finals.get(split)?.masks.get(id);
    if (!mask) return null;
    const S = run.cfg.patchSize;
    return maskPng((i) => mask[i] !== 0, S, S, COLOURS.final);
  }
  let file: string | null, colour: [number, number, number] | null;
  if (kind === "truth") [file, colour] = [item.mask, COLOURS.truth];
  else if (kind === "cam") [file, colour] = [`${run.dir}/cam/${split}/${id}_norm.png`, null];
  else if (kind === "cam_mask") {
    [file, colour] = [`${run.dir}/cam/${split}/${id}_mask.png`, COLOURS.cam_mask];
  } else {[file, colour] = [
      `${run.dir}/pseudo/iter_${Number(m[2])}/${split}/${id}_1.png`,
      COLOURS.pseudo,
    ];}
  if (!file) return null;
  const img = decodeOr404(await readConfined(file, roots), file);
  if (!img) return null;
  const c = img.channels;
  if (colour) return maskPng((i) => img.data[i * c] !== 0, img.width, img.height, colour);
  // CAM: jet colours, alpha 255 (the page's opacity slider blends it).
  const px = new Uint8Array(img.width * img.height * 4);
  for (let i = 0; i < img.width * img.height; i++) {
    px.set(jet(img.data[i * c] / 255), i * 4);
    px[i * 4 + 3] = 255;
  }
  return encodePng({ data: px, width: img.width, height: img.height, channels: 4 });
}

const MAX_DASHBOARD_FILE = 16 * 2 ** 20;

async function readSmallText(p: string, roots: string[]): Promise<string | null> {
  const b = await readConfined(p, roots);
  if (!b) return null;
  if (b.byteLength > MAX_DASHBOARD_FILE) {
    throw new Error(`${p}: ${b.byteLength} bytes, more than the dashboard reads`);
  }
  return new TextDecoder().decode(b);
}

/** Loss series of one stage: epochs, train and validation loss. */
export interface StageCurves {
  epoch: number[];
  train: (number | null)[];
  val: (number | null)[];
}

/** The dashboard's data, read now. */
export async function dashboard(run: RunEntry): Promise<Record<string, unknown>> {
  const roots = run.roots;
  const errors: string[] = [];
  const json = async (name: string) => {
    try {
      const t = await readSmallText(`${run.dir}/${name}`, roots);
      return t === null ? null : JSON.parse(t);
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
      return null;
    }
  };
  const state = await json("state.json");
  const summary = await json("summary.json");
  const curves: Record<string, StageCurves> = {};
  try {
    const t = await readSmallText(`${run.dir}/metrics.jsonl`, roots);
    // A line torn by a running append is dropped by parseMetrics.
    for (const r of t ? parseMetrics(t, "metrics.jsonl") : []) {
      if (typeof r.epoch !== "number") continue;
      const c = curves[r.stage] ??= { epoch: [], train: [], val: [] };
      const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
      c.epoch.push(r.epoch);
      c.train.push(num(r.train_loss));
      c.val.push(num(r.val_loss));
    }
  } catch (e) {
    errors.push(`metrics.jsonl: ${(e as Error).message}`);
  }
  return {
    profile: run.cfg.profile,
    state,
    summary,
    curves,
    errors,
    time: new Date().toISOString(),
  };
}
