/**
 * Patch candidates and their stratified selection, after EP-SAM `tools/wsi_preprocess.py`
 * (`sample_centers`, `isTumor`, `tumorPercentage`, `CreateDF_*`) and `0_data_preprocess.py`
 * (5 % bins with per-bin caps, the 20–90 % band for positives, random negatives).
 */
import { type AnnotationSet, tumourPixelCount } from "./annotations.ts";
import { mulberry32 } from "../../engine/mulberry32.ts";

/** Grid options; defaults are the reference's `sample_centers` arguments. */
export interface GridOptions {
  /** Level-0 pixels per tissue-mask pixel (the reference's `mask_downscale`). */
  maskDownsample: number;
  /** Grid step in level-0 pixels (`sample_side`: 512 for Camelyon17, 256 in the Camelyon16 code). */
  side?: number;
  /** Half-width of the focus window as a fraction of `side` (`focus_width_percentage` 0.25). */
  focus?: number;
  /** Margin as a fraction of the mask size where no centre is taken (`padding_percentage` 0.01). */
  padding?: number;
}

/**
 * Patch centres (level-0 `x, y` pairs) on a tissue mask. Two interleaved grids: step `side`,
 * and the same shifted by half a step along both axes. A centre is kept when its focus window
 * (± side·focus, end-exclusive like the reference's numpy slice) lies inside the margins and
 * touches tissue. Order: by grid row, then column, then shift.
 */
export function sampleCenters(
  mask: Uint8Array,
  width: number,
  height: number,
  opts: GridOptions,
): Int32Array {
  const ds = opts.maskDownsample, sideL0 = opts.side ?? 512;
  const focus = opts.focus ?? 0.25, padding = opts.padding ?? 0.01;
  const side = sideL0 / ds;
  const padR = height * padding, padC = width * padding;
  const half = Math.trunc(sideL0 * focus / ds);
  const nRows = Math.floor(height / side), nCols = Math.floor(width / side);
  // Integral image makes each focus-window test O(1).
  const W1 = width + 1;
  const sum = new Int32Array((height + 1) * W1);
  for (let y = 0; y < height; y++) {
    let run = 0;
    for (let x = 0; x < width; x++) {
      run += mask[y * width + x] ? 1 : 0;
      sum[(y + 1) * W1 + x + 1] = sum[y * W1 + x + 1] + run;
    }
  }
  const out: number[] = [];
  for (let i = 0; i < nRows; i++) {
    for (let j = 0; j < nCols; j++) {
      for (const shift of [0, 0.5]) {
        const r = Math.trunc((i + shift) * side), c = Math.trunc((j + shift) * side);
        const r0 = Math.max(0, r - half), r1 = Math.min(r + half, height - 1);
        const c0 = Math.max(0, c - half), c1 = Math.min(c + half, width - 1);
        if (r0 < padR || r1 > height - padR) continue;
        if (c0 < padC || c1 > width - padC) continue;
        if (r1 <= r0 || c1 <= c0) continue;
        const s = sum[r1 * W1 + c1] - sum[r0 * W1 + c1] - sum[r1 * W1 + c0] + sum[r0 * W1 + c0];
        if (s > 0) out.push(Math.round(c * ds), Math.round(r * ds));
      }
    }
  }
  return Int32Array.from(out);
}

/** One candidate patch of a slide (a row of the reference's per-slide data frame). */
export interface PatchRecord {
  /** `<slideKey>_<cy 7 digits><cx 7 digits>` as the reference (row before column). */
  id: string;
  slide: string;
  /** Level-0 centre. */
  cx: number;
  cy: number;
  isTumor: boolean;
  /** Tumour percentage truncated to 0.1 % (`int(frac*1000)/10`). */
  tumorPercentage: number;
}

/** Reference patch id: slide key, then centre row and column zero-padded to 7 digits. */
function patchId(slideKey: string, cx: number, cy: number): string {
  return `${slideKey}_${String(cy).padStart(7, "0")}${String(cx).padStart(7, "0")}`;
}

/**
 * Tumour statistics of each centre over a `size`×`size` level-0 window whose top-left is
 * `trunc(c - size/2)` (the reference's `getSamplesWithAnnotations`).
 */
export function patchRecords(
  slideKey: string,
  centers: Int32Array,
  ann: AnnotationSet | null,
  size: number,
  onProgress?: (done: number) => void,
): PatchRecord[] {
  const area = size * size;
  const scratch = new Uint8Array(area);
  const out: PatchRecord[] = [];
  for (let k = 0; k < centers.length; k += 2) {
    const cx = centers[k], cy = centers[k + 1];
    const x0 = Math.trunc(cx - size / 2), y0 = Math.trunc(cy - size / 2);
    const count = ann ? tumourPixelCount(ann, x0, y0, size, size, scratch) : 0;
    out.push({
      id: patchId(slideKey, cx, cy),
      slide: slideKey,
      cx,
      cy,
      isTumor: count > 0,
      tumorPercentage: tenths(count, area) / 10,
    });
    onProgress?.(k / 2 + 1);
  }
  return out;
}

/** `int(count/area*1000)` in Python float arithmetic. */
function tenths(count: number, area: number): number {
  return Math.trunc((count / area) * 1000);
}

// ---------------------------------------------------------------------------------------------
// Selection.

/** FNV-1a of a string, to derive independent streams per (split, bin) from one seed. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** `n` items drawn without replacement (partial Fisher–Yates), all of them if fewer. */
function sampleWithoutReplacement<T>(items: readonly T[], n: number, seed: number): T[] {
  const a = items.slice();
  const k = Math.min(n, a.length);
  const rnd = mulberry32(seed);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rnd() * (a.length - i));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a.slice(0, k);
}

/** Selection rule of one split. */
export interface SplitRule {
  /** `binned`: ≤ `binCap` per 5 % bin then the band; `random`: `count` from the band. */
  mode: "binned" | "random";
  binCap?: number;
  count?: number;
  /** Positive band on the tumour percentage; `inclusive` picks `[lo, hi]` over `(lo, hi)`. */
  band: { lo: number; hi: number; inclusive: boolean };
  /** Binned mode: top the binned draw up to this many rows (before the band) from the rest. */
  topUpTo?: number;
  /** Number of negatives (`isTumor == false`) drawn at random. */
  negatives: number;
}

export type SplitName = "train" | "val" | "test";
export const SPLITS: readonly SplitName[] = ["train", "val", "test"];
export type DatasetRules = Record<SplitName, SplitRule>;

const OPEN_BAND = { lo: 20, hi: 90, inclusive: false };

/** The reference's caps and counts (`0_data_preprocess.py`). */
export function defaultRules(dataset: string): DatasetRules {
  if (dataset === "camelyon17") {
    return {
      train: { mode: "binned", binCap: 500, band: OPEN_BAND, negatives: 6000 },
      val: { mode: "binned", binCap: 50, band: OPEN_BAND, topUpTo: 1000, negatives: 700 },
      test: {
        mode: "random",
        count: 2000,
        band: { lo: 20, hi: 90, inclusive: true },
        negatives: 2000,
      },
    };
  }
  return {
    train: { mode: "binned", binCap: 430, band: OPEN_BAND, negatives: 6000 },
    val: { mode: "binned", binCap: 50, band: OPEN_BAND, negatives: 700 },
    test: { mode: "binned", binCap: 143, band: OPEN_BAND, negatives: 2000 },
  };
}

/** 5 % bin of a percentage, `[5b, 5b+5)`; 100 % is in no bin (pandas `cut(right=False)`). */
export function binOf(pct: number): number {
  const t = Math.round(pct * 10); // tenths are exact integers
  return t >= 1000 || t < 0 ? -1 : Math.floor(t / 50);
}

function inBand(pct: number, band: SplitRule["band"]): boolean {
  const t = Math.round(pct * 10), lo = band.lo * 10, hi = band.hi * 10;
  return band.inclusive ? t >= lo && t <= hi : t > lo && t < hi;
}

/** A selected patch with its label (1 tumour, 0 normal) and split. */
export interface Selected extends PatchRecord {
  split: SplitName;
  label: 0 | 1;
}

/** Counts that explain a selection (for the manifest and the log). */
export interface SelectionReport {
  split: SplitName;
  candidates: number;
  positives: number;
  negatives: number;
  /** Positives per 5 % bin index (0..19). */
  perBin: number[];
  /** Requested counts that could not be met. */
  shortfalls: string[];
}

/**
 * Selects one split's patches from its candidates. Candidates are sorted by id first, so the
 * result depends only on the records and the seed, not on slide or file order.
 */
export function selectSplit(
  split: SplitName,
  records: readonly PatchRecord[],
  rule: SplitRule,
  seed: number,
): { selected: Selected[]; report: SelectionReport } {
  const sorted = records.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const shortfalls: string[] = [];
  let pos: PatchRecord[];
  if (rule.mode === "random") {
    const band = sorted.filter((r) => inBand(r.tumorPercentage, rule.band));
    const n = rule.count ?? 0;
    if (band.length < n) shortfalls.push(`positives: wanted ${n}, only ${band.length} in band`);
    pos = sampleWithoutReplacement(band, n, seed ^ hash32(`${split}/pos`));
  } else {
    const bins: PatchRecord[][] = Array.from({ length: 20 }, () => []);
    for (const r of sorted) {
      const b = binOf(r.tumorPercentage);
      if (b >= 0) bins[b].push(r);
    }
    let drawn: PatchRecord[] = [];
    bins.forEach((rows, b) => {
      drawn.push(
        ...sampleWithoutReplacement(rows, rule.binCap ?? 0, seed ^ hash32(`${split}/bin${b}`)),
      );
    });
    if (rule.topUpTo !== undefined && drawn.length < rule.topUpTo) {
      const taken = new Set(drawn.map((r) => r.id));
      const rest = sorted.filter((r) => !taken.has(r.id));
      drawn = drawn.concat(
        sampleWithoutReplacement(
          rest,
          rule.topUpTo - drawn.length,
          seed ^ hash32(`${split}/topup`),
        ),
      );
    }
    pos = drawn.filter((r) => inBand(r.tumorPercentage, rule.band));
  }
  const negAll = sorted.filter((r) => !r.isTumor);
  if (negAll.length < rule.negatives) {
    shortfalls.push(`negatives: wanted ${rule.negatives}, only ${negAll.length} available`);
  }
  const neg = sampleWithoutReplacement(negAll, rule.negatives, seed ^ hash32(`${split}/neg`));
  const perBin = new Array(20).fill(0);
  for (const r of pos) perBin[binOf(r.tumorPercentage)]++;
  const selected: Selected[] = [
    ...pos.map((r) => ({ ...r, split, label: (r.isTumor ? 1 : 0) as 0 | 1 })),
    ...neg.map((r) => ({ ...r, split, label: 0 as const })),
  ];
  return {
    selected,
    report: {
      split,
      candidates: records.length,
      positives: pos.length,
      negatives: neg.length,
      perBin,
      shortfalls,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Per-slide manifests (the reference's `dataframes/<slide>.csv`), JSON lines.

/** Serialises records as JSON lines. */
export function recordsToJsonl(records: readonly PatchRecord[]): string {
  return records.map((r) => JSON.stringify(r)).join("\n") + (records.length ? "\n" : "");
}

/** Parses JSON lines written by {@link recordsToJsonl}; `source` names the file in errors. */
export function recordsFromJsonl(text: string, source: string): PatchRecord[] {
  const out: PatchRecord[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let r: PatchRecord;
    try {
      r = JSON.parse(line);
    } catch (e) {
      throw new Error(`${source}:${i + 1}: not JSON (${(e as Error).message})`);
    }
    if (
      typeof r?.id !== "string" || typeof r.cx !== "number" || typeof r.cy !== "number" ||
      typeof r.isTumor !== "boolean" || typeof r.tumorPercentage !== "number"
    ) {
      throw new Error(`${source}:${i + 1}: not a patch record`);
    }
    out.push(r);
  });
  return out;
}
