/**
 * Slide-level train/val/test splits. Defaults are the lists in EP-SAM `0_data_preprocess.py`;
 * splitting by slide keeps patches of one slide out of two splits.
 */
import type { SplitName } from "./sampling.ts";

/** Slide keys per split. */
export type SplitLists = Record<SplitName, string[]>;

/** Camelyon16 tumour slides by number (`tumor_061.tif` → `061`; `normal_001` → `normal-001`). */
// deno-fmt-ignore
export const CAMELYON16_SPLIT: SplitLists = {
  train: [
    "061", "018", "039", "031", "035", "051", "064", "040", "030", "007",
    "025", "041", "054", "065", "005", "046", "023", "004", "022", "008",
    "006", "068", "001", "009", "015", "042", "016", "056", "027", "057",
    "038", "063", "019", "045", "037", "062", "058", "033", "010", "002",
    "060", "055", "069", "052", "066", "011", "024",
  ],
  val: ["048", "013", "067", "044", "043", "036"],
  test: [
    "032", "047", "049", "028", "050", "053", "034", "012", "059", "014",
    "020", "003", "026", "029", "017",
  ],
};

/**
 * Camelyon17 slides by patient and node: two-digit patient then node
 * (`patient_024_node_1.tif` → `241`), the form the reference's lists use.
 */
// deno-fmt-ignore
export const CAMELYON17_SPLIT: SplitLists = {
  train: [
    "241", "512", "204", "224", "444", "481", "423", "603", "674",
    "213", "161", "363", "451", "151", "174", "720", "202", "410",
    "171", "640", "382", "120", "662", "681", "402", "464", "731",
  ],
  val: ["343", "521", "152"],
  test: ["622", "391", "044", "614", "104", "091", "754", "463", "172"],
};

/** File name without folder and extension. */
export function stem(path: string): string {
  const base = path.split(/[\\/]/).pop() ?? path;
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

/**
 * Slide key of a file for a dataset, or null when the reference would not use it
 * (Camelyon17 patients 80–99 are left out there; unparsable names).
 */
export function slideKey(dataset: string, path: string): string | null {
  const s = stem(path);
  if (dataset === "camelyon16") {
    // The reference's lists hold tumour slides by number; other slides (normal_001, test_001)
    // keep their full name so they cannot collide with them.
    const m = /^tumou?r_(\d+)$/i.exec(s);
    return m ? m[1].padStart(3, "0") : s.replace(/_/g, "-");
  }
  if (dataset === "camelyon17") {
    const m = /patient_(\d+)_node_(\d+)$/.exec(s);
    if (!m) return null;
    const patient = Number(m[1]), node = Number(m[2]);
    if (patient >= 80 && patient <= 99) return null;
    return `${String(patient).padStart(2, "0")}${node}`;
  }
  // Ids are split on "_" downstream (`<id>_<label>.png`, `<key>_<centre>`).
  return s.replace(/_/g, "-");
}

/** Default split of a dataset; `synthetic` (or any other) splits the given keys by order. */
export function defaultSplit(dataset: string, keys: readonly string[] = []): SplitLists {
  if (dataset === "camelyon16") return structuredClone(CAMELYON16_SPLIT);
  if (dataset === "camelyon17") return structuredClone(CAMELYON17_SPLIT);
  // Last key to test, the one before to val, the rest to train (each split non-empty from 3).
  const k = [...keys].sort();
  if (k.length < 3) return { train: k, val: [], test: [] };
  return { train: k.slice(0, -2), val: [k[k.length - 2]], test: [k[k.length - 1]] };
}

/** Reads a split from JSON `{"train": [...], "val": [...], "test": [...]}`. */
export function parseSplit(text: string, source: string): SplitLists {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: not JSON (${(e as Error).message})`);
  }
  const o = j as Record<string, unknown>;
  const out = {} as SplitLists;
  for (const s of ["train", "val", "test"] as const) {
    const v = o?.[s] ?? [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw new Error(`${source}: "${s}" must be a list of slide keys (strings)`);
    }
    out[s] = v as string[];
  }
  const seen = new Map<string, string>();
  for (const s of ["train", "val", "test"] as const) {
    for (const k of out[s]) {
      if (seen.has(k)) throw new Error(`${source}: slide ${k} is in both ${seen.get(k)} and ${s}`);
      seen.set(k, s);
    }
  }
  return out;
}

/** Split of a slide key, or null when the key is in no list. */
export function splitOf(lists: SplitLists, key: string): SplitName | null {
  for (const s of ["train", "val", "test"] as const) if (lists[s].includes(key)) return s;
  return null;
}
