/**
 * Slide-reading and preparation throughput (`deno task bench --filter wsi`):
 *
 * - 512×512 level-0 `readRegion` on the JPEG fixture, cold (no tile cache: every tile a read
 *   touches is decoded) and warm (8 regions read again and again), as reads per second, with
 *   OpenSlide's `read_region` on the same seeded region list beside them when Debian's
 *   `python3-openslide` is installed (bench/peers/openslide_read.py; benchmark only);
 * - peak RSS over 300 reads with the default cache;
 * - synthetic slide generation (2048², jpeg-js) and patch extraction on it (prepareDataset:
 *   candidates, then selection + extraction of 512² PNG patches), as patches per second;
 * - a 40 000×40 000 slide: written cheaply (uniform glass tiles, tissue rendered only where the
 *   synthetic blobs are), then prepared (tissue mask at downsample 16, grid sampling, a capped
 *   number of patches extracted) in a child process whose peak RSS (VmHWM) is reported.
 *   `WSI_BENCH_BIG=0` skips it.
 *
 * `deno run -A bench/wsi.ts` prints the rows alone.
 */
import { fixturePath, haveFixtures } from "../tests/fixtures.ts";
import { openSlide } from "../pipeline/wsi/slide.ts";
import {
  asapXml,
  generateSyntheticSlide,
  type Polygon,
  regionClasses,
  renderRegion,
  type SyntheticLayout,
  syntheticLayout,
} from "../pipeline/wsi/synthetic.ts";
import { writePyramidTiff } from "../pipeline/wsi/tiff_writer.ts";
import { prepareDataset, type PrepareResult } from "../pipeline/wsi/extract.ts";
import type { DatasetRules } from "../pipeline/wsi/sampling.ts";
import { writeFileAtomic } from "../engine/io/atomic.ts";
import type { BenchRow } from "./registry.ts";

const ADAPTER = "cpu (Deno)";
const REGION = 512;
const PYTHON = "/usr/bin/python3";

/** Seeded region origins: `n` level-0 (x, y) with the region inside a `w`×`h` level. */
function regionList(n: number, w: number, h: number, seed = 1): [number, number][] {
  let s = seed >>> 0;
  const r = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  return Array.from(
    { length: n },
    () => [Math.floor(r() * (w - REGION)), Math.floor(r() * (h - REGION))],
  );
}

/** Peak resident set of this process (VmHWM), in bytes; null off Linux. */
function vmHwm(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

interface PeerResult {
  cold_ms: number;
  warm_ms: number;
  openslide: string;
}

/** OpenSlide's figures on the same regions, or a reason why there are none. */
async function openslidePeer(
  path: string,
  regions: [number, number][],
  warm: [number, number][],
  passes: number,
): Promise<PeerResult | string> {
  const script = new URL("./peers/openslide_read.py", import.meta.url).pathname;
  try {
    const child = new Deno.Command(PYTHON, {
      args: [script],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(
      new TextEncoder().encode(JSON.stringify({ path, size: REGION, regions, warm, passes })),
    );
    await w.close();
    const out = await child.output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
      return `OpenSlide peer failed (${err}); apt-get install python3-openslide`;
    }
    return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  } catch (e) {
    return `OpenSlide peer not run (${(e as Error).message})`;
  }
}

function row(name: string, shape: number[], ms: number, bytes: number | null, notes?: string) {
  return {
    name,
    shape,
    ms,
    gflops: null,
    gbps: bytes === null ? null : bytes / ms / 1e6,
    adapter: ADAPTER,
    notes,
  };
}

/** Region reads on the JPEG fixture, ours and OpenSlide's. */
async function readRows(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const path = fixturePath("wsi", "slide_jpeg_t256.tif");
  const bytes = REGION * REGION * 4;
  const probe = await openSlide(path);
  const { width, height } = probe.levels[0];
  await probe.close();
  const regions = regionList(40, width, height, 1);
  const warmList = regions.slice(0, 8);
  const passes = 5;

  // Cold: a zero-byte cache, so every read decodes every tile it touches (9 for most origins).
  const cold = await openSlide(path, { cacheBytes: 0 });
  await cold.readRegion(0, 5, 5, REGION, REGION); // compile the decoder paths first
  let t0 = performance.now();
  for (const [x, y] of regions) await cold.readRegion(0, x, y, REGION, REGION);
  const coldMs = (performance.now() - t0) / regions.length;
  await cold.close();
  // Warm: 8 regions read once untimed, then `passes` timed passes (all tiles cached).
  const warm = await openSlide(path);
  for (const [x, y] of warmList) await warm.readRegion(0, x, y, REGION, REGION);
  t0 = performance.now();
  for (let p = 0; p < passes; p++) {
    for (const [x, y] of warmList) await warm.readRegion(0, x, y, REGION, REGION);
  }
  const warmMs = (performance.now() - t0) / (passes * warmList.length);
  await warm.close();

  const peer = await openslidePeer(path, regions, warmList, passes);
  const rate = (ms: number) => `${(1000 / ms).toFixed(1)} reads/s`;
  const vs = (ours: number, theirs: number) =>
    `; OpenSlide ${rate(theirs)}; ours takes ${(ours / theirs).toFixed(2)}x OpenSlide's time`;
  const shape = [regions.length, REGION, REGION, 4];
  rows.push(
    row(
      "wsi.readRegion 512x512 L0 jpeg cold cache",
      shape,
      coldMs,
      bytes,
      rate(coldMs) + (typeof peer === "string" ? "" : vs(coldMs, peer.cold_ms)),
    ),
    row(
      "wsi.readRegion 512x512 L0 jpeg warm cache",
      [passes * warmList.length, REGION, REGION, 4],
      warmMs,
      bytes,
      rate(warmMs) + (typeof peer === "string" ? "" : vs(warmMs, peer.warm_ms)),
    ),
  );
  if (typeof peer === "string") console.error(peer);
  else {
    rows.push(
      row(
        `openslide.read_region 512x512 L0 jpeg cold (python, openslide ${peer.openslide})`,
        shape,
        peer.cold_ms,
        bytes,
        rate(peer.cold_ms),
      ),
      row(
        `openslide.read_region 512x512 L0 jpeg warm (python, openslide ${peer.openslide})`,
        [passes * warmList.length, REGION, REGION, 4],
        peer.warm_ms,
        bytes,
        rate(peer.warm_ms),
      ),
    );
  }

  // Peak RSS over many reads with the default 128 MiB cache.
  const many = regionList(300, width, height, 7);
  const s = await openSlide(path);
  let peak = Deno.memoryUsage().rss;
  const rss0 = peak;
  t0 = performance.now();
  for (const [x, y] of many) {
    await s.readRegion(0, x, y, REGION, REGION);
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }
  const ms = (performance.now() - t0) / many.length;
  rows.push(
    row(
      "wsi.readRegion x300 default cache",
      [many.length, REGION, REGION, 4],
      ms,
      bytes,
      `peak rss ${mib(peak)} (start ${mib(rss0)}, cache ${mib(s.cacheStats().bytes)})`,
    ),
  );
  await s.close();
  return rows;
}

/** Rules that take at most a few patches (a bench, not a dataset). */
function cappedRules(binCap: number, negatives: number): DatasetRules {
  const band = { lo: 20, hi: 90, inclusive: false };
  const r = { mode: "binned" as const, binCap, band, negatives };
  return { train: r, val: { ...r }, test: { ...r } };
}

/** prepareDataset twice: candidates only (no patches), then selection + extraction. */
async function timedPrepare(
  slides: string,
  out: string,
  rules: DatasetRules,
  gridSide = 512,
): Promise<{ candidatesMs: number; extractMs: number; result: PrepareResult }> {
  const base = {
    dataset: "synthetic",
    slides,
    annotations: slides,
    out,
    gridSide,
    progress: false,
    log: () => {},
  };
  let t0 = performance.now();
  await prepareDataset({ ...base, rules: cappedRules(0, 0) });
  const candidatesMs = performance.now() - t0;
  await Deno.remove(`${out}/manifest.json`); // other rules: the manifest check would refuse
  t0 = performance.now();
  const result = await prepareDataset({ ...base, rules });
  return { candidatesMs, extractMs: performance.now() - t0, result };
}

/** Synthetic slide generation, and extraction on it. */
async function syntheticRows(dir: string): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const N = 2048;
  await Deno.mkdir(`${dir}/slides`);
  let t0 = performance.now();
  await generateSyntheticSlide(
    { seed: 1, width: N, height: N },
    `${dir}/slides/synthetic_001.tif`,
    `${dir}/slides/synthetic_001.xml`,
  );
  const ms = performance.now() - t0;
  rows.push(row(`wsi.synthetic ${N}x${N} jpeg pyramid`, [N, N, 3], ms, N * N * 3));
  t0 = performance.now();
  const { candidatesMs, extractMs, result } = await timedPrepare(
    `${dir}/slides`,
    `${dir}/out`,
    cappedRules(1000, 1000),
    256,
  );
  const n = result.manifest.patches.length;
  rows.push(
    row(
      `wsi.extract 512x512 patches (prepare, synthetic ${N}x${N}, grid 256)`,
      [n, REGION, REGION, 3],
      extractMs / Math.max(1, n),
      REGION * REGION * 3,
      `${(n / (extractMs / 1000)).toFixed(1)} patches/s (${n} patches, ${result.written} PNGs; ` +
        `read + PNG encode + write); candidates ${candidatesMs.toFixed(0)} ms`,
    ),
  );
  return rows;
}

// ---------------------------------------------------------------------------------------------
// The 40 000² slide.

const BIG = 40000;

/** Tissue of a 4000² synthetic layout (two blobs, two tumours) placed twice on a BIG² slide. */
function bigLayout(): SyntheticLayout {
  const small = syntheticLayout({ seed: 6, width: 4000, height: 4000, blobs: 2, tumours: 2 });
  const at = [[3000, 5000], [BIG - 9000, BIG - 14000]];
  const move = (p: Polygon, dx: number, dy: number): Polygon =>
    p.map(([x, y]) => [x + dx, y + dy] as [number, number]);
  return {
    spec: { ...small.spec, width: BIG, height: BIG },
    blobs: at.flatMap(([dx, dy]) => small.blobs.map((p) => move(p, dx, dy))),
    tumours: at.flatMap(([dx, dy]) => small.tumours.map((p) => move(p, dx, dy))),
  };
}

/** Child: writes the big slide into `dir`; prints JSON. */
async function bigWrite(dir: string): Promise<void> {
  const layout = bigLayout();
  const T = 256;
  const boxes = layout.blobs.map((p) => {
    const xs = p.map((q) => q[0]), ys = p.map((q) => q[1]);
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
  });
  // Glass colour: the mean of rendered glass (which carries a little noise).
  const g = renderRegion(layout, 0, 0, 64, 64);
  const glass = [0, 1, 2].map((c) => {
    let s = 0;
    for (let i = c; i < g.length; i += 3) s += g[i];
    return Math.round(s / (g.length / 3));
  });
  let tissueTiles = 0, glassTiles = 0;
  const t0 = performance.now();
  const info = await writePyramidTiff(`${dir}/big-40k.tif`, {
    width: BIG,
    height: BIG,
    channels: 3,
    compression: "jpeg",
    tileSize: T,
    mpp: 0.243,
    description: "synthetic 40000x40000 bench slide",
  }, (tx, ty) => {
    const x0 = tx * T, y0 = ty * T;
    if (
      boxes.some(([a, b, c, d]) => x0 < c && x0 + T > a && y0 < d && y0 + T > b) &&
      regionClasses(layout, x0, y0, T, T).some((v) => v !== 0)
    ) {
      tissueTiles++;
      return renderRegion(layout, x0, y0, T, T);
    }
    glassTiles++;
    return { uniform: glass };
  });
  await writeFileAtomic(`${dir}/big-40k.xml`, asapXml(layout.tumours));
  console.log(JSON.stringify({
    ms: performance.now() - t0,
    bytes: info.bytes,
    levels: info.levels.length,
    tissueTiles,
    glassTiles,
    vmhwm: vmHwm(),
  }));
}

/** Child: prepares the big slide in `dir` (capped patches); prints JSON. */
async function bigPrepare(dir: string): Promise<void> {
  const t0 = performance.now();
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, Deno.memoryUsage().rss)), 50);
  try {
    const { candidatesMs, extractMs, result } = await timedPrepare(
      dir,
      `${dir}/out`,
      cappedRules(3, 40),
    );
    const s = result.manifest.slides[0];
    console.log(JSON.stringify({
      ms: performance.now() - t0,
      candidatesMs,
      extractMs,
      candidates: s?.candidates ?? 0,
      tumourCandidates: s?.tumourCandidates ?? 0,
      patches: result.manifest.patches.length,
      written: result.written,
      vmhwm: vmHwm(),
      sampledPeakRss: peak,
    }));
  } finally {
    clearInterval(timer);
  }
}

/** Runs this file in a child with `args`; returns its JSON line. */
async function child(args: string[]): Promise<Record<string, number>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(
      `bench child ${args[0]} failed: ${new TextDecoder().decode(out.stderr).slice(-2000)}`,
    );
  }
  return JSON.parse(text.split("\n").pop()!);
}

async function bigRows(dir: string): Promise<BenchRow[]> {
  await Deno.mkdir(`${dir}/big`);
  const w = await child(["--big-write", `${dir}/big`]);
  const p = await child(["--big-prepare", `${dir}/big`]);
  const hwm = (r: Record<string, number>) =>
    r.vmhwm ? mib(r.vmhwm) : `~${mib(r.sampledPeakRss ?? 0)} (sampled)`;
  return [
    row(
      `wsi.big ${BIG}x${BIG} jpeg pyramid write (uniform glass tiles)`,
      [BIG, BIG, 3],
      w.ms,
      null,
      `${w.tissueTiles} rendered + ${w.glassTiles} glass level-0 tiles, ${w.levels} levels, ` +
        `${mib(w.bytes)} file; child peak RSS ${hwm(w)}`,
    ),
    row(
      `wsi.big ${BIG}x${BIG} prepare (tissue mask, grid, capped extraction): peak RSS ${hwm(p)}`,
      [BIG, BIG, 3],
      p.ms,
      null,
      `candidates ${p.candidates} (${p.tumourCandidates} tumour) in ${
        p.candidatesMs.toFixed(0)
      } ms; ${p.patches} patches (${p.written} PNGs) in ${p.extractMs.toFixed(0)} ms; ` +
        ((p.vmhwm || p.sampledPeakRss) < 2 ** 30
          ? "within the 1 GiB bound"
          : "OVER the 1 GiB bound"),
    ),
  ];
}

export async function benchWsi(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  if (haveFixtures()) rows.push(...(await readRows()));
  else console.error("wsi: ../shared/fixtures missing: region-read rows skipped");
  const dir = await Deno.makeTempDir({ prefix: "bench_wsi_" });
  try {
    rows.push(...(await syntheticRows(dir)));
    if (Deno.env.get("WSI_BENCH_BIG") !== "0") rows.push(...(await bigRows(dir)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return rows;
}

const WSI_USAGE = `usage: deno run -A bench/wsi.ts
  Region reads of the shared fixtures, synthetic slides and (unless WSI_BENCH_BIG=0) the big-slide
  memory rows. --big-write DIR and --big-prepare DIR are the child processes it starts itself.`;

if (import.meta.main) {
  const [mode, dir] = Deno.args;
  if (mode === "--help" || mode === "-h") console.log(WSI_USAGE);
  else if ((mode === "--big-write" || mode === "--big-prepare") && !dir) {
    console.error(`bench/wsi.ts: ${mode} needs a directory\n${WSI_USAGE}`);
    Deno.exit(2);
  } else if (mode && !mode.startsWith("--big-")) {
    console.error(`bench/wsi.ts: unknown argument ${mode}\n${WSI_USAGE}`);
    Deno.exit(2);
  } else if (mode === "--big-write") await bigWrite(dir);
  else if (mode === "--big-prepare") await bigPrepare(dir);
  else {
    for (const r of await benchWsi()) {
      console.log(
        `${r.name.padEnd(80)} ${r.ms.toFixed(2).padStart(9)} ms  ${r.notes ?? ""}`,
      );
    }
  }
}
