/**
 * Point prompts as EP-SAM makes them (`segment_anything/utils/make_prompt.py`), seeded:
 * - {@link randomPointsInMask}: N distinct pixels of a mask, uniformly (training prompts);
 * - {@link camPointsInMask}: N distinct pixels of the CAM mask drawn without replacement with
 *   probability ∝ the normalised CAM (pseudo-labels and inference).
 * Points are (x, y) in the mask's pixels, label 1. An empty mask gives the reference's single point
 * (0, 0). Where the reference's numpy call fails because fewer than N pixels carry non-zero
 * probability (it then falls back to (0, 0)), these draw every such pixel instead.
 */

/** The host half of a seeded generator (engine/rng.ts `Rng`). */
export interface HostUniform {
  uniformHost(n: number, lo?: number, hi?: number): Float32Array;
}

/** N points: `coords` holds (x, y) pairs, `labels` ones. */
export interface PointPrompt {
  coords: Float32Array;
  labels: Float32Array;
  n: number;
}

function pointsFrom(indices: number[], width: number): PointPrompt {
  if (!indices.length) {
    return { coords: new Float32Array([0, 0]), labels: new Float32Array([1]), n: 1 };
  }
  const coords = new Float32Array(indices.length * 2);
  indices.forEach((p, i) => {
    coords[2 * i] = p % width;
    coords[2 * i + 1] = Math.floor(p / width);
  });
  return { coords, labels: new Float32Array(indices.length).fill(1), n: indices.length };
}

function checkSize(what: string, len: number, width: number, height: number): void {
  if (len !== width * height) {
    throw new Error(`${what}: ${len} values for a ${width}×${height} map`);
  }
}

/** Up to `n` distinct pixels where `mask` is non-zero, uniformly at random. */
export function randomPointsInMask(
  mask: ArrayLike<number>,
  width: number,
  height: number,
  n: number,
  rng: HostUniform,
): PointPrompt {
  checkSize("randomPointsInMask", mask.length, width, height);
  const on: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) on.push(i);
  const k = Math.min(n, on.length);
  if (k === 0) return pointsFrom([], width);
  // Partial Fisher–Yates: the first k of a random permutation.
  const u = rng.uniformHost(k);
  for (let i = 0; i < k; i++) {
    const j = i + Math.min(on.length - 1 - i, Math.floor(u[i] * (on.length - i)));
    [on[i], on[j]] = [on[j], on[i]];
  }
  return pointsFrom(on.slice(0, k), width);
}

/**
 * Up to `n` distinct pixels inside `camMask`, drawn without replacement with probability ∝ `cam`
 * (numpy's `choice(..., replace=False, p=...)` distribution, by Efraimidis–Spirakis keys).
 */
export function camPointsInMask(
  cam: ArrayLike<number>,
  camMask: ArrayLike<number>,
  width: number,
  height: number,
  n: number,
  rng: HostUniform,
): PointPrompt {
  checkSize("camPointsInMask (cam)", cam.length, width, height);
  checkSize("camPointsInMask (mask)", camMask.length, width, height);
  const cand: number[] = [];
  for (let i = 0; i < cam.length; i++) if (camMask[i] > 0 && cam[i] > 0) cand.push(i);
  if (!cand.length) return pointsFrom([], width);
  const u = rng.uniformHost(cand.length);
  // key = log(u)/w: the k largest keys are a weighted sample without replacement.
  const keys = cand.map((p, i) => ({ p, key: Math.log(Math.max(u[i], 1e-12)) / cam[p] }));
  keys.sort((a, b) => b.key - a.key || a.p - b.p);
  return pointsFrom(keys.slice(0, Math.min(n, keys.length)).map((k) => k.p), width);
}

/**
 * Packs per-sample prompts into one batch of `n` points each: shorter lists are padded with
 * label −1 points (SAM's "not a point"), as a batch needs one point count.
 */
export function batchPrompts(ps: PointPrompt[]): PointPrompt {
  const n = Math.max(1, ...ps.map((p) => p.n));
  const coords = new Float32Array(ps.length * n * 2);
  const labels = new Float32Array(ps.length * n).fill(-1);
  ps.forEach((p, b) => {
    coords.set(p.coords, b * n * 2);
    labels.set(p.labels, b * n);
  });
  return { coords, labels, n };
}
