/**
 * bench/memory.ts's step recorder, against a fake pool (no GPU): what it says was held at a step's
 * held peak, including a peak reached at the step's very start.
 */
import assert from "node:assert/strict";
import type { Allocation } from "../../engine/pool.ts";
import { type PoolState, StepRecorder } from "../../bench/memory.ts";

/** A pool that only counts: whole buffers by size, parked ones by size, parked textures. */
class FakePool implements PoolState {
  liveBytes = 0;
  pooledBytes = 0;
  parked = new Map<number, number>();
  textures = 0;
  constructor(readonly rec: StepRecorder | null = null) {}
  parkedBySize(): Map<number, number> {
    return new Map(this.parked);
  }
  cachedTextureBytes(): number {
    return this.textures;
  }
  take(size: number, rec: StepRecorder): Allocation {
    const n = this.parked.get(size) ?? 0;
    if (n > 0) {
      this.parked.set(size, n - 1);
      this.pooledBytes -= size;
    }
    this.liveBytes += size;
    const a = { buffer: {} as GPUBuffer, offset: 0, size };
    rec.acquire(a, size);
    return a;
  }
  give(a: Allocation, rec: StepRecorder): void {
    rec.release(a);
    this.liveBytes -= a.size;
    this.pooledBytes += a.size;
    this.parked.set(a.size, (this.parked.get(a.size) ?? 0) + 1);
  }
}

Deno.test("step recorder: a held peak at the step's start reports what was held then, not zeros", () => {
  const p = new FakePool();
  const rec = new StepRecorder(p);
  // The warm-up step: two 4 KiB buffers and one 1 KiB buffer, all given back; a parked texture.
  const warm = [p.take(4096, rec), p.take(4096, rec), p.take(1024, rec)];
  for (const a of warm) p.give(a, rec);
  p.textures = 512;
  p.pooledBytes += 512;
  const kept = p.take(1024, rec); // live across the step boundary
  rec.beginStep();
  assert.equal(rec.heldPeak, 1024 + 2 * 4096 + 512);
  // The measured step takes only what is parked: held never grows past its start.
  const a = p.take(4096, rec);
  p.give(a, rec);
  assert.equal(rec.heldPeak, 1024 + 2 * 4096 + 512, "held never grew");
  assert.equal(rec.livePeak, 1024 + 4096);
  assert.equal(rec.atHeldPeak.live, 1024, "live at the start, not 0");
  assert.equal(rec.atHeldPeak.cachedTextures, 512);
  assert.deepEqual([...rec.atHeldPeak.parked], [[4096, 2], [1024, 0]]);
  // 4096 was taken again in the step; the 1 KiB class (none parked) is not counted.
  assert.equal(rec.parkedNeverTakenAgain(), 0);
  p.give(kept, rec);
});

Deno.test("step recorder: a held peak inside the step reports the moment it grew to", () => {
  const p = new FakePool();
  const rec = new StepRecorder(p);
  p.give(p.take(8192, rec), rec); // parked, and never asked for again
  rec.beginStep();
  const a = p.take(2048, rec);
  const b = p.take(4096, rec); // the held peak: 8192 parked + 6144 live
  p.give(a, rec);
  p.give(b, rec);
  assert.equal(rec.heldPeak, 8192 + 2048 + 4096);
  assert.equal(rec.atHeldPeak.live, 2048 + 4096);
  assert.deepEqual(rec.atHeldPeak.parked.get(8192), 1);
  assert.equal(rec.parkedNeverTakenAgain(), 8192);
});
