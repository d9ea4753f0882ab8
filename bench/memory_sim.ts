/**
 * Replays a pool trace (bench/memory.ts --trace) through candidate buffer-pool policies, with no GPU:
 * per measured step the live and held peaks each policy would have had and the bytes of buffers it
 * would have created (what re-creating costs in time). Buffers released in the open batch are
 * "pending" until the next submit, as in engine/pool.ts; policies that destroy buffers may destroy
 * only submitted ones.
 *
 *   deno run -A bench/memory_sim.ts TRACE.json [MAX_SLAB_MIB]
 *
 * MAX_SLAB_MIB (default 256, lavapipe's maxBufferSize) caps a slab; a smaller cap mimics, on a
 * trace at a smaller batch, where the paper's batch would put its tensors against the cap.
 */
import { sizeClass } from "../engine/pool.ts";
import { RangeHeap } from "../engine/range_heap.ts";
import type { TraceEvent } from "./memory.ts";
import { runCommand, UsageError } from "../pipeline/cli/args.ts";

interface Buf {
  size: number;
  /** Submits seen when it was parked (for least-recently-used destruction). */
  parkedAt: number;
}

interface Policy {
  name: string;
  /** The buffer size a request of `bytes` takes. */
  classOf(bytes: number): number;
  /** A parked buffer for a request of class `size`, or null (then a new one is made). */
  take(parked: Buf[], size: number): Buf | null;
  /** Held bytes over which submitted parked buffers are destroyed before a new one is made. */
  budget?(livePeakSoFar: number): number;
}

interface StepResult {
  livePeak: number;
  heldPeak: number;
  createdBytes: number;
  created: number;
}

function exactTake(parked: Buf[], size: number): Buf | null {
  const i = parked.findIndex((b) => b.size === size);
  return i < 0 ? null : parked.splice(i, 1)[0];
}

function lendTake(factor: number) {
  return (parked: Buf[], size: number): Buf | null => {
    let best = -1;
    for (let i = 0; i < parked.length; i++) {
      const s = parked[i].size;
      if (s >= size && s <= size * factor && (best < 0 || s < parked[best].size)) best = i;
    }
    return best < 0 ? null : parked.splice(best, 1)[0];
  };
}

/** Replays `events` through `p`; one result per measured step ("m" markers). */
export function replay(events: TraceEvent[], p: Policy): StepResult[] {
  return replayWith(events, p, null);
}

/** {@link replay} with `extra[i]` live and held bytes added at event i (slabs beside the pool). */
function replayWith(
  events: TraceEvent[],
  p: Policy,
  extra: { live: number; held: number }[] | null,
): StepResult[] {
  const live = new Map<number, Buf>();
  let free: Buf[] = [];
  let pending: Buf[] = [];
  let liveBytes = 0, heldBytes = 0, submits = 0;
  let livePeakEver = 0;
  const out: StepResult[] = [];
  let cur: StepResult | null = null;
  let x = { live: 0, held: 0 };
  const note = () => {
    livePeakEver = Math.max(livePeakEver, liveBytes + x.live);
    if (cur) {
      cur.livePeak = Math.max(cur.livePeak, liveBytes + x.live);
      cur.heldPeak = Math.max(cur.heldPeak, heldBytes + x.held);
    }
  };
  for (const [i, e] of events.entries()) {
    if (extra) {
      x = extra[i];
      note();
    }
    switch (e[0]) {
      case "m":
        cur = {
          livePeak: liveBytes + x.live,
          heldPeak: heldBytes + x.held,
          createdBytes: 0,
          created: 0,
        };
        out.push(cur);
        break;
      case "s":
        submits++;
        free.push(...pending);
        pending = [];
        break;
      case "t":
        liveBytes += e[1];
        heldBytes += e[1];
        note();
        break;
      case "a": {
        const size = p.classOf(e[2]);
        let b = p.take(free, size) ?? p.take(pending, size);
        if (!b) {
          if (p.budget) {
            const limit = p.budget(livePeakEver);
            // Oldest parked first: what the step has not needed for longest.
            free.sort((x, y) => x.parkedAt - y.parkedAt);
            while (heldBytes + size > limit && free.length) heldBytes -= free.shift()!.size;
          }
          b = { size, parkedAt: 0 };
          heldBytes += size;
          if (cur) {
            cur.createdBytes += size;
            cur.created++;
          }
        }
        live.set(e[1], b);
        liveBytes += b.size;
        note();
        break;
      }
      case "r": {
        const b = live.get(e[1]);
        if (!b) break;
        live.delete(e[1]);
        liveBytes -= b.size;
        b.parkedAt = submits;
        pending.push(b);
        break;
      }
    }
  }
  free = [];
  return out;
}

/**
 * Requests of `threshold` bytes or more as ranges of slabs (engine/range_heap.ts), a new slab
 * of max(request, `minSlab`) bytes (at most `maxSlab`) when none has room; smaller ones as
 * `replay` does with engine/pool.ts's classes. Freed ranges are reusable at once (as pending
 * buffers are by kernels).
 */
export function replaySlabs(
  events: TraceEvent[],
  threshold: number,
  minSlab: number,
  maxSlab: number,
  /** Requests over this many bytes take whole buffers by class (as small ones do). */
  ceiling = Infinity,
  /**
   * Before a new slab is made, destroy the empty ones no range of which was freed since the last
   * submit (engine/pool.ts's rule for destroying a slab): room too small for the request, or in
   * the wrong place, given back before more is taken.
   */
  reclaimEmpty = false,
): StepResult[] {
  const heap = new RangeHeap<number>(256);
  const dirty = new Set<number>();
  let nextSlab = 1;
  const ranges = new Map<number, { slab: number; offset: number; length: number }>();
  const small: TraceEvent[] = [];
  // Small requests through the class pool, big ones here; both counted in one figure.
  const out: StepResult[] = [];
  let cur: StepResult | null = null;
  let bigLive = 0;
  const bigCur: { live: number; held: number }[] = [];
  for (const e of events) {
    if (e[0] === "a" && e[2] >= threshold && e[2] <= ceiling) {
      let r = heap.alloc(e[2]);
      if (!r && reclaimEmpty) {
        for (const sl of [...heap.slabs]) {
          if (sl.used === 0 && !dirty.has(sl.buffer)) heap.removeSlab(sl.buffer);
        }
      }
      if (!r) {
        // minSlab < 0: slabs grow with the heap, up to -minSlab (a small program holds little).
        const want = minSlab < 0 ? Math.min(-minSlab, heap.heldBytes) : minSlab;
        const size = Math.min(maxSlab, Math.max(heap.rangeLength(e[2]), want));
        heap.addSlab(nextSlab++, Math.max(size, heap.rangeLength(e[2])));
        if (cur) {
          cur.createdBytes += size;
          cur.created++;
        }
        r = heap.alloc(e[2])!;
      }
      ranges.set(e[1], { slab: r.slab.buffer, offset: r.offset, length: r.length });
      bigLive += r.length;
      small.push(["t", 0]);
      bigCur.push({ live: bigLive, held: heap.heldBytes });
    } else if (e[0] === "r" && ranges.has(e[1])) {
      const r = ranges.get(e[1])!;
      ranges.delete(e[1]);
      heap.release(r.slab, r.offset, r.length);
      dirty.add(r.slab);
      bigLive -= r.length;
      small.push(["t", 0]);
      bigCur.push({ live: bigLive, held: heap.heldBytes });
    } else {
      if (e[0] === "s") dirty.clear();
      small.push(e);
      bigCur.push({ live: bigLive, held: heap.heldBytes });
    }
    if (e[0] === "m") {
      cur = { livePeak: 0, heldPeak: 0, createdBytes: 0, created: 0 };
      out.push(cur);
    }
  }
  // Replay the small ones with the big figures added at each event.
  const smallSteps = replayWith(small, { name: "", classOf: sizeClass, take: exactTake }, bigCur);
  return smallSteps.map((s, i) => ({
    ...s,
    createdBytes: s.createdBytes + out[i].createdBytes,
    created: s.created + out[i].created,
  }));
}

/** Classes of `parts` steps an octave above 1 MiB (8: engine/pool.ts's). */
function octaveParts(parts: number) {
  return (bytes: number) => {
    const b = Math.max(256, Math.ceil(bytes / 4) * 4);
    if (b <= 1 << 20) return 2 ** Math.ceil(Math.log2(b));
    const step = 2 ** Math.floor(Math.log2(b)) / parts;
    return Math.ceil(b / step) * step;
  };
}

export const POLICIES: Policy[] = [
  { name: "classes (engine/pool.ts)", classOf: sizeClass, take: exactTake },
  { name: "16ths of an octave", classOf: octaveParts(16), take: exactTake },
  { name: "quarters of an octave", classOf: octaveParts(4), take: exactTake },
  { name: "octaves", classOf: octaveParts(1), take: exactTake },
  { name: "classes, lend ≤1.25×", classOf: sizeClass, take: lendTake(1.25) },
  { name: "classes, lend ≤2×", classOf: sizeClass, take: lendTake(2) },
  ...[1.0, 1.05, 1.1, 1.2].map((f) => ({
    name: `classes, destroy parked over ${f}× live peak`,
    classOf: sizeClass,
    take: exactTake,
    budget: (peak: number) => peak * f,
  })),
];

/** Replays the trace at `path` through every policy and prints each one's last step. */
function simulate(path: string, maxSlab: number): void {
  const events = JSON.parse(Deno.readTextFileSync(path)) as TraceEvent[];
  const gib = (n: number) => (n / 2 ** 30).toFixed(3);
  const runs: [string, StepResult[]][] = POLICIES.map((p) => [p.name, replay(events, p)]);
  for (const t of [1, 4, 16]) {
    for (const minSlab of [0, 16, 64, 256, -16, -32, -64, -128]) {
      for (const ceil of [1, 0.5]) {
        for (const reclaim of [false, true]) {
          runs.push([
            `slabs ${t} MiB..${ceil}×cap, new slab ≥${minSlab} MiB${reclaim ? ", reclaim" : ""}`,
            replaySlabs(events, t * 2 ** 20, minSlab * 2 ** 20, maxSlab, ceil * maxSlab, reclaim),
          ]);
        }
      }
    }
  }
  for (const [name, steps] of runs) {
    const s = steps[steps.length - 1];
    console.log(
      `${name.padEnd(54)} live ${gib(s.livePeak)}  held ${gib(s.heldPeak)} GiB  ${
        (s.heldPeak / s.livePeak).toFixed(3)
      }×  created ${gib(s.createdBytes)} GiB in ${s.created} buffers (last step)`,
    );
  }
}

const USAGE = `usage: deno run -A bench/memory_sim.ts TRACE.json [MAX_SLAB_MIB]
  TRACE.json    a pool trace written by bench/memory.ts --trace FILE
  MAX_SLAB_MIB  the largest slab (default 256, lavapipe's maxBufferSize)`;

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      { name: "bench/memory_sim.ts", usage: USAGE, positionals: true, options: {} },
      Deno.args,
      (_flags, positionals) => {
        const path = positionals[0];
        if (!path || positionals.length > 2) throw new UsageError("give TRACE.json [MAX_SLAB_MIB]");
        const maxSlabMib = Number(positionals[1] ?? 256);
        if (!(maxSlabMib > 0)) {
          throw new UsageError(`MAX_SLAB_MIB must be a positive number, got ${positionals[1]}`);
        }
        simulate(path, maxSlabMib * 2 ** 20);
      },
    ),
  );
}
