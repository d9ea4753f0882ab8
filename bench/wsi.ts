/**
 * Slide-reading throughput: 512x512 level-0 region reads on the JPEG fixture with a cold and a
 * warm tile cache, peak RSS over many reads, and synthetic-slide generation. OpenSlide's figure
 * is added when Python's `openslide` module is importable (it usually is not here).
 */
import { fixturePath, haveFixtures } from "../tests/fixtures.ts";
import { openSlide } from "../pipeline/wsi/slide.ts";
import { generateSyntheticSlide } from "../pipeline/wsi/synthetic.ts";

export interface BenchRow {
  name: string;
  shape: number[];
  ms: number;
  gflops: number | null;
  gbps: number | null;
  adapter: string;
}

const ADAPTER = "cpu (Deno)";

/** Deterministic pseudo-random region origins inside a 4096x4096 slide. */
function origins(n: number, seed = 1): [number, number][] {
  let s = seed;
  const r = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  return Array.from({ length: n }, () => [Math.floor(r() * 3584), Math.floor(r() * 3584)]);
}

async function openslideMs(path: string, pts: [number, number][]): Promise<number | null> {
  const code = `import openslide, time, json, sys
s = openslide.OpenSlide(${JSON.stringify(path)})
pts = json.loads(sys.argv[1]); t = time.perf_counter()
for x, y in pts: s.read_region((x, y), 0, (512, 512))
print((time.perf_counter() - t) * 1000 / len(pts))`;
  try {
    const out = await new Deno.Command("python3", {
      args: ["-c", code, JSON.stringify(pts)],
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? Number(new TextDecoder().decode(out.stdout).trim()) : null;
  } catch {
    return null;
  }
}

export async function benchWsi(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const bytes = 512 * 512 * 4;
  const row = (name: string, ms: number, shape = [512, 512, 4]) =>
    rows.push({ name, shape, ms, gflops: null, gbps: bytes / ms / 1e6, adapter: ADAPTER });
  if (haveFixtures()) {
    const path = fixturePath("wsi", "slide_jpeg_t256.tif");
    const pts = origins(40);
    // Cold: a zero-byte cache, so every read decodes all (9) tiles it touches.
    const cold = await openSlide(path, { cacheBytes: 0 });
    await cold.readRegion(0, 0, 0, 512, 512);
    let t0 = performance.now();
    for (const [x, y] of pts) await cold.readRegion(0, x, y, 512, 512);
    row("wsi.readRegion 512x512 L0 jpeg cold cache", (performance.now() - t0) / pts.length);
    await cold.close();
    // Warm: the same region again and again (all tiles cached).
    const warm = await openSlide(path);
    await warm.readRegion(0, 1000, 1200, 512, 512);
    t0 = performance.now();
    for (let i = 0; i < 40; i++) await warm.readRegion(0, 1000, 1200, 512, 512);
    row("wsi.readRegion 512x512 L0 jpeg warm cache", (performance.now() - t0) / 40);
    await warm.close();
    // Peak RSS over many reads with the default 128 MiB cache.
    const many = origins(300, 7);
    const s = await openSlide(path);
    let peak = Deno.memoryUsage().rss;
    const rss0 = peak;
    t0 = performance.now();
    for (const [x, y] of many) {
      await s.readRegion(0, x, y, 512, 512);
      peak = Math.max(peak, Deno.memoryUsage().rss);
    }
    const ms = (performance.now() - t0) / many.length;
    rows.push({
      name: `wsi.readRegion x300 default cache: peak rss ${(peak / 2 ** 20).toFixed(0)} MiB ` +
        `(start ${(rss0 / 2 ** 20).toFixed(0)} MiB, cache ${
          (s.cacheStats().bytes / 2 ** 20).toFixed(0)
        } MiB)`,
      shape: [300, 512, 512, 4],
      ms,
      gflops: null,
      gbps: bytes / ms / 1e6,
      adapter: ADAPTER,
    });
    await s.close();
    const os = await openslideMs(path, pts);
    if (os !== null) row("openslide.read_region 512x512 L0 jpeg (python)", os);
  }
  const dir = await Deno.makeTempDir({ prefix: "bench_wsi_" });
  try {
    const t0 = performance.now();
    await generateSyntheticSlide({ seed: 1, width: 2048, height: 2048 }, `${dir}/s.tif`, null);
    const ms = performance.now() - t0;
    rows.push({
      name: "wsi.synthetic 2048x2048 jpeg pyramid",
      shape: [2048, 2048, 3],
      ms,
      gflops: null,
      gbps: (2048 * 2048 * 3) / ms / 1e6,
      adapter: ADAPTER,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return rows;
}

if (import.meta.main) {
  for (const r of await benchWsi()) {
    console.log(
      `${r.name.padEnd(90)} ${r.ms.toFixed(2).padStart(9)} ms  ${r.gbps?.toFixed(3)} GB/s`,
    );
  }
}
