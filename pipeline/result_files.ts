/**
 * Field checks of the stage result files read back on resume: `summary.json` (stage 5) and
 * `pseudo/iter_<k>/stats.json` (pseudo-labels). A damaged or hand-edited file must be an error
 * naming the file and field, not a TypeError in the summary table.
 */
import { badField, isObj, readRunJson } from "./run_dir.ts";
import type { Summary } from "./stages/evaluate.ts";
import type { PseudoStats } from "./sam/pseudo_labels.ts";

/** A score that is NaN when nothing was scored: JSON.stringify writes NaN as null. */
const SCORE_FIELDS = ["dice", "iou", "pooledDice", "pooledIoU"] as const;

function checkScore(file: string, at: string, v: Record<string, unknown>, k: string): void {
  if (v[k] !== null && typeof v[k] !== "number") {
    badField(file, `${at}${k}`, "a number (or null for none scored)", v[k]);
  }
  if (v[k] === null) v[k] = NaN;
}

function checkCount(file: string, at: string, v: Record<string, unknown>, k: string): void {
  if (!(Number.isSafeInteger(v[k]) && (v[k] as number) >= 0)) {
    badField(file, `${at}${k}`, "a non-negative integer", v[k]);
  }
}

function checkNumbers(file: string, field: string, v: unknown, optional: boolean): void {
  if (v === undefined && optional) return;
  if (!isObj(v)) return badField(file, field, "an object of numbers per stage", v);
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== "number") badField(file, `${field}.${k}`, "a number", x);
  }
}

/** Checks a parsed `pseudo/iter_<k>/stats.json`; null scores (NaN when written) become NaN. */
export function validatePseudoStats(v: unknown, file: string, at = ""): PseudoStats {
  if (!isObj(v)) {
    return badField(file, at ? at.slice(0, -1) : "(root)", "an object of pseudo-label stats", v);
  }
  for (const k of ["iter", "kept", "total", "valKept"]) checkCount(file, at, v, k);
  for (const k of SCORE_FIELDS) checkScore(file, at, v, k);
  return v as unknown as PseudoStats;
}

/** Checks a parsed `summary.json` in the fields the summary table and resume read. */
export function validateSummary(v: unknown, file: string): Summary {
  if (!isObj(v)) return badField(file, "(root)", "an object (the evaluation summary)", v);
  if (typeof v.samWeights !== "string") badField(file, "samWeights", "a string", v.samWeights);
  for (const part of ["cam", "final"]) {
    const s = v[part];
    if (!isObj(s)) return badField(file, part, "an object of scores", s);
    for (const k of SCORE_FIELDS) checkScore(file, `${part}.`, s, k);
    checkCount(file, `${part}.`, s, "n");
  }
  if (!Array.isArray(v.pseudo)) return badField(file, "pseudo", "an array of stats", v.pseudo);
  v.pseudo.forEach((p, i) => validatePseudoStats(p, file, `pseudo[${i}].`));
  if (!isObj(v.margin)) return badField(file, "margin", "an object {dice, iou}", v.margin);
  for (const k of ["dice", "iou"]) checkScore(file, "margin.", v.margin, k);
  checkNumbers(file, "seconds", v.seconds, false);
  checkNumbers(file, "peakGpuBytes", v.peakGpuBytes, true);
  return v as unknown as Summary;
}

/** Reads and checks `summary.json` (size-bounded). */
export const readSummary = (path: string): Summary => validateSummary(readRunJson(path), path);

/** Reads and checks a pseudo-label round's `stats.json` (size-bounded). */
export const readPseudoStats = (path: string): PseudoStats =>
  validatePseudoStats(readRunJson(path), path);
