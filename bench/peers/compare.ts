/** Checks a peer's output against PyTorch's (the reference) element by element. */

export interface OutputCheck {
  ok: boolean;
  /** Largest |peer − reference| (Infinity where the peer gave a non-finite value). */
  maxAbsErr: number;
  /** Tolerance used: REL_TOL × the largest |reference|. */
  tol: number;
  /** First flat index whose error exceeds the tolerance (null: none). */
  firstWrongIndex: number | null;
  wrongCount: number;
  /** Why the output is wrong ("" when ok). */
  error: string;
}

/**
 * Tolerance relative to the output's scale: fp32 implementations that sum in other orders differ
 * by ~1e-6 relative per op and ~1e-4 after the 12 blocks of a ViT-B; a wrong kernel is off by O(1).
 */
const REL_TOL = 5e-3;

export function compareOutputs(got: Float32Array, ref: Float32Array): OutputCheck {
  if (got.length !== ref.length) {
    return {
      ok: false,
      maxAbsErr: Infinity,
      tol: 0,
      firstWrongIndex: 0,
      wrongCount: ref.length,
      error: `output has ${got.length} elements, the reference ${ref.length}`,
    };
  }
  let scale = 0;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]));
  const tol = REL_TOL * (scale || 1e-30);
  let maxAbsErr = 0, first: number | null = null, wrong = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Number.isFinite(got[i]) ? Math.abs(got[i] - ref[i]) : Infinity;
    if (d > maxAbsErr) maxAbsErr = d;
    if (d > tol) {
      wrong++;
      first ??= i;
    }
  }
  return {
    ok: wrong === 0,
    maxAbsErr,
    tol,
    firstWrongIndex: first,
    wrongCount: wrong,
    error: wrong
      ? `output wrong: ${wrong} of ${ref.length} elements off by more than ${
        tol.toPrecision(2)
      } (max |err| ${maxAbsErr.toPrecision(3)}), first wrong at flat index ${first}`
      : "",
  };
}
