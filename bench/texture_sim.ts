/**
 * Replays a step's scratch-texture requests (engine/texture_pool.ts `recordTextureRequests`)
 * through other pool policies, without a GPU: how many textures each would make, their bytes, and
 * the most texture bytes held (in use + parked) at once. The step is replayed twice and the second
 * pass counted, as the pool enters a step with the last one's textures parked.
 *
 * Policies: `exact` hands out a parked texture of the asked shape only (the pool's rule); `fit`
 * also one at least as wide and as tall, at most `slack` times the asked bytes (smallest first);
 * `classes` makes every texture with its width and height rounded up to a power of two and hands
 * out by that rounded shape. All park up to `cap` bytes, least recently given back evicted first.
 */
import type { TextureRequest } from "../engine/texture_pool.ts";

export interface TexturePolicy {
  name: string;
  rule: "exact" | "fit" | "classes";
  cap: number;
  /** fit: the largest texture handed out, as a multiple of the bytes asked for. */
  slack?: number;
}

export interface TextureSimFigures {
  made: number;
  madeBytes: number;
  /** Of the bytes made, those in textures over 64 MiB (the costly ones on lavapipe). */
  madeBytesOver64MiB: number;
  /** The most bytes of textures in use and parked at once. */
  heldPeak: number;
}

interface SimTexture {
  w: number;
  h: number;
  bytes: number;
  lastUse: number;
}

const BIG = 64 * 2 ** 20;
const pow2 = (n: number) => 2 ** Math.ceil(Math.log2(n));

/** The figures of `policy` on the second of two passes through `log`. */
export function simulateTextures(log: TextureRequest[], policy: TexturePolicy): TextureSimFigures {
  const parked: SimTexture[] = [];
  const inUse = new Map<number, SimTexture>();
  let parkedBytes = 0, liveBytes = 0, clock = 0;
  let f: TextureSimFigures = { made: 0, madeBytes: 0, madeBytesOver64MiB: 0, heldPeak: 0 };
  const take = (w: number, h: number): SimTexture => {
    const [cw, ch] = policy.rule === "classes" ? [pow2(w), pow2(h)] : [w, h];
    const asked = cw * ch * 16;
    let best = -1;
    for (let i = 0; i < parked.length; i++) {
      const t = parked[i];
      const ok = t.w === cw && t.h === ch ||
        policy.rule === "fit" && t.w >= cw && t.h >= ch && t.bytes <= (policy.slack ?? 1) * asked;
      if (!ok) continue;
      // Exact first, then the smallest; among equals the most recently given back (the pool's pop).
      if (
        best < 0 || parked[best].bytes > t.bytes ||
        parked[best].bytes === t.bytes && t.lastUse > parked[best].lastUse
      ) best = i;
    }
    if (best >= 0) {
      const [t] = parked.splice(best, 1);
      parkedBytes -= t.bytes;
      return t;
    }
    f.made++;
    f.madeBytes += asked;
    if (asked > BIG) f.madeBytesOver64MiB += asked;
    return { w: cw, h: ch, bytes: asked, lastUse: 0 };
  };
  for (let pass = 0; pass < 2; pass++) {
    f = { made: 0, madeBytes: 0, madeBytesOver64MiB: 0, heldPeak: liveBytes + parkedBytes };
    for (const e of log) {
      if (e[0] === "a") {
        const t = take(e[2], e[3]);
        inUse.set(e[1], t);
        liveBytes += t.bytes;
      } else {
        const t = inUse.get(e[1]);
        if (!t) continue; // taken before the log began
        inUse.delete(e[1]);
        liveBytes -= t.bytes;
        t.lastUse = ++clock;
        parked.push(t);
        parkedBytes += t.bytes;
        while (parkedBytes > policy.cap && parked.length) {
          let old = 0;
          for (let i = 1; i < parked.length; i++) {
            if (parked[i].lastUse < parked[old].lastUse) old = i;
          }
          parkedBytes -= parked.splice(old, 1)[0].bytes;
        }
      }
      f.heldPeak = Math.max(f.heldPeak, liveBytes + parkedBytes);
    }
  }
  return f;
}

/** The policies bench/memory.ts --texture-sim compares (the pool's own first). */
export function defaultTexturePolicies(): TexturePolicy[] {
  const MiB = 2 ** 20;
  return [
    { name: "exact:256 (the pool)", rule: "exact", cap: 256 * MiB },
    { name: "exact:512", rule: "exact", cap: 512 * MiB },
    { name: "fit×1.25:256", rule: "fit", cap: 256 * MiB, slack: 1.25 },
    { name: "fit×2:256", rule: "fit", cap: 256 * MiB, slack: 2 },
    { name: "fit×4:256", rule: "fit", cap: 256 * MiB, slack: 4 },
    { name: "fit×2:512", rule: "fit", cap: 512 * MiB, slack: 2 },
    { name: "classes:256", rule: "classes", cap: 256 * MiB },
    { name: "classes:512", rule: "classes", cap: 512 * MiB },
  ];
}
