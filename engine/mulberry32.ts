/**
 * mulberry32, the project's one small seeded host PRNG (32-bit state, identical on every
 * platform): ADL's per-forward branch draw, patch sampling, synthetic slides, test inputs. Not for
 * tensors: GPU draws and their host mirror use Philox (engine/rng.ts).
 */

/** One step from a u32 `state`: the next state and a draw in [0, 1) (for state kept in a checkpoint). */
export function mulberry32Step(state: number): [number, number] {
  const s = (state + 0x6d2b79f5) >>> 0;
  let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return [s, ((t ^ (t >>> 14)) >>> 0) / 4294967296];
}

/** A generator of draws in [0, 1) seeded with `seed` (taken as a u32). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    const [next, draw] = mulberry32Step(state);
    state = next;
    return draw;
  };
}
