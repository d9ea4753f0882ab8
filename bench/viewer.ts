/**
 * Viewer latencies (`deno run -A bench/viewer.ts`; standalone, not a `deno task bench` group):
 *
 * - deep-zoom tiles over HTTP (loopback), 16 requests in flight, on a synthetic 4096² JPEG slide:
 *   cold (a fresh server: every tile read, decoded, cut and JPEG-encoded), re-encoded (the slide's
 *   decoded tiles cached, the encoded-tile cache cleared) and warm (encoded-tile cache hits), as
 *   p50 / p95 milliseconds per request; and one 256² tile's JPEG (jpeg-js, q85) vs PNG encode;
 * - click-to-mask with a cached embedding: POST /api/segment + polling the job until the mask is
 *   back, on the tiny test run (tests/viewer/fixture.ts); and the predictor's decode alone (prompt
 *   encoder + mask decoder + upscaling + readback) for the default profile's SAM and for ViT-B on
 *   a cached embedding (random weights and embedding: the cost does not depend on the values).
 *
 * `VIEWER_BENCH_DIR` keeps the slide and the run between invocations; `VIEWER_BENCH_PARTS`
 * (tiles,encode,click,decode) picks the measurements.
 */
import { encode as encodeJpeg } from "jpeg-js";
import { initGpu, tensor } from "../engine/mod.ts";
import { encodePng } from "../engine/io/png.ts";
import { SamPredictor } from "../model/sam/predictor.ts";
import { Sam } from "../model/sam/sam.ts";
import { SAM_CONFIGS } from "../model/sam/configs.ts";
import { PROFILES } from "../pipeline/config.ts";
import { samConfigOf } from "../pipeline/sam/build.ts";
import { generateSyntheticSlide } from "../pipeline/wsi/synthetic.ts";
import { startViewer } from "../pipeline/viewer/server.ts";
import { viewerFixture } from "../tests/viewer/fixture.ts";
import type { BenchRow } from "./registry.ts";
import { runCommand } from "../pipeline/cli/args.ts";

const ADAPTER_CPU = "cpu (Deno)";

/** CPU milliseconds this process (all its threads: server and encoder workers) has used. */
async function cpuMs(): Promise<number> {
  const f = (await Deno.readTextFile("/proc/self/stat")).split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, 100 ticks a second
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Fetches `urls` with `conc` in flight; per-request milliseconds, sorted. */
async function fetchAll(base: string, urls: string[], conc: number): Promise<number[]> {
  const ms: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < urls.length) {
      const u = urls[next++];
      const t0 = performance.now();
      const r = await fetch(new URL(u, base));
      await r.arrayBuffer();
      if (r.status !== 200 || r.headers.get("x-tile-error")) throw new Error(`${u}: ${r.status}`);
      ms.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
  return ms.sort((a, b) => a - b);
}

function row(name: string, shape: number[], ms: number, notes: string, adapter = ADAPTER_CPU) {
  return { name, shape, ms, gflops: null, gbps: null, adapter, notes } as BenchRow;
}

async function benchViewer(): Promise<BenchRow[]> {
  const dir = Deno.env.get("VIEWER_BENCH_DIR") ??
    await Deno.makeTempDir({ prefix: "viewer_bench_" });
  const rows: BenchRow[] = [];
  const slideDir = `${dir}/slides`;
  const slide = `${slideDir}/bench_4096.tif`;
  if (!(await Deno.stat(slide).then(() => true, () => false))) {
    await Deno.mkdir(slideDir, { recursive: true });
    await generateSyntheticSlide({ seed: 5, width: 4096, height: 4096, tumours: 2 }, slide, null);
  }
  // Tiles: level 12 (full resolution, 256 tiles) and level 11 (64 tiles, cut from level 1).
  const urls: string[] = [];
  for (const [l, n] of [[12, 16], [11, 8]]) {
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < n; x++) urls.push(`/api/slides/bench_4096/tiles/${l}/${x}/${y}`);
    }
  }
  const conc = 16;
  // VIEWER_BENCH_PARTS=tiles,encode,click,decode (default all) picks the measurements.
  const parts = new Set(
    (Deno.env.get("VIEWER_BENCH_PARTS") ?? "tiles,encode,click,decode").split(","),
  );
  if (parts.has("tiles")) {
    const v = await startViewer({ slides: [slideDir], predictions: [], port: 0, log: () => {} });
    try {
      let c0 = await cpuMs();
      const cold = await fetchAll(v.url, urls, conc);
      const coldCpu = (await cpuMs() - c0) / urls.length;
      v.tiles.cache.clear();
      c0 = await cpuMs();
      const reenc = await fetchAll(v.url, urls, conc);
      const reencCpu = (await cpuMs() - c0) / urls.length;
      const warm = await fetchAll(v.url, urls, conc);
      // CPU time per tile: what the load of other processes does not inflate (client included).
      rows.push(
        row("viewer tile cold CPU per tile", [urls.length], coldCpu, "process CPU ms / tiles"),
      );
      rows.push(
        row(
          "viewer tile re-encoded CPU per tile",
          [urls.length],
          reencCpu,
          "process CPU ms / tiles",
        ),
      );
      for (const [name, ms] of [["cold", cold], ["re-encoded", reenc], ["warm", warm]] as const) {
        for (const q of [50, 95]) {
          rows.push(
            row(
              `viewer tile ${name} p${q}`,
              [urls.length, conc],
              pct(ms, q),
              "HTTP loopback, 16 in flight",
            ),
          );
        }
      }
    } finally {
      await v.close();
    }
  }
  if (parts.has("encode")) {
    // Encoding one 256² tile of slide pixels.
    const { openSlide } = await import("../pipeline/wsi/slide.ts");
    const s = await openSlide(slide);
    const rgba = await s.readRegion(0, 2048, 2048, 256, 256);
    await s.close();
    for (
      const [name, f] of [
        ["jpeg-js q85", () => encodeJpeg({ data: rgba, width: 256, height: 256 }, 85)],
        ["png", () => encodePng({ data: rgba, width: 256, height: 256, channels: 4 })],
      ] as const
    ) {
      f();
      const t: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        f();
        t.push(performance.now() - t0);
      }
      t.sort((a, b) => a - b);
      rows.push(
        row(`viewer tile encode ${name}`, [256, 256], pct(t, 50), "one 256x256 slide tile"),
      );
    }
  }
  const g = await initGpu();
  if (parts.has("click")) {
    // End to end: click on a test patch of the tiny run twice (the second uses the cached embedding).
    const fx = await viewerFixture();
    const v = await startViewer({
      run: fx.run,
      slides: [],
      predictions: [],
      port: 0,
      log: () => {},
    });
    try {
      const { listSplit } = await import("../pipeline/data/patches.ts");
      const pos = (await listSplit(`${fx.run}/data/test`)).find((p) => p.label === 1)!;
      const S = v.segment.patchSize();
      const click = async (x: number) => {
        const t0 = performance.now();
        const r = await fetch(new URL("/api/segment", v.url), {
          method: "POST",
          body: JSON.stringify({
            patch: { split: "test", id: pos.id },
            points: [{ x, y: S / 2, label: 1 }],
          }),
        });
        const { job } = await r.json();
        for (;;) {
          const j = await (await fetch(new URL(`/api/jobs/${job}`, v.url))).json();
          if (j.state === "done") break;
          if (j.state === "error") throw new Error(j.error);
          await new Promise((res) => setTimeout(res, 10));
        }
        return performance.now() - t0;
      };
      await click(S / 2); // embeds and caches
      const t: number[] = [];
      for (let i = 0; i < 10; i++) t.push(await click(1 + (i * 5) % (S - 2)));
      t.sort((a, b) => a - b);
      rows.push(
        row(
          "viewer click-to-mask (tiny run SAM, cached embedding)",
          [S],
          pct(t, 50),
          "HTTP + job poll every 10 ms",
          g.adapterName,
        ),
      );
    } finally {
      await v.close();
    }
  }
  // Decoder alone on a cached embedding: the default profile's SAM and ViT-B.
  const decoders = [
    ["default profile SAM", samConfigOf(PROFILES.default)],
    ["ViT-B", SAM_CONFIGS.vit_b],
  ] as const;
  for (const [label, cfg] of parts.has("decode") ? decoders : []) {
    const sam = new Sam(cfg, 1).eval();
    const pred = new SamPredictor(sam);
    const [eh, ew] = cfg.prompt_encoder.image_embedding_size;
    const C = cfg.prompt_encoder.embed_dim;
    const I = cfg.encoder.img_size;
    // A cached embedding: what setImage leaves behind (values do not change the cost).
    const emb = tensor(Float32Array.from({ length: C * eh * ew }, (_, i) => Math.sin(i)), [
      1,
      C,
      eh,
      ew,
    ]);
    // deno-lint-ignore no-explicit-any
    const p = pred as any;
    p.features = emb;
    p.originalHw = [512, 512];
    p.inputHw = [I, I];
    const once = async () => {
      const t0 = performance.now();
      const o = pred.predict({ pointCoords: [200, 210], pointLabels: [1], multimask: false });
      await o.masksLogits.data();
      await o.iou.data();
      o.lowResLogits.dispose();
      o.masksLogits.dispose();
      o.iou.dispose();
      return performance.now() - t0;
    };
    await once();
    await once();
    const t: number[] = [];
    for (let i = 0; i < 7; i++) t.push(await once());
    t.sort((a, b) => a - b);
    rows.push(
      row(
        `viewer mask decode (${label}, cached embedding)`,
        [C, eh, ew],
        pct(t, 50),
        "predictor.predict + readback, 512x512 mask",
        g.adapterName,
      ),
    );
    pred.dispose();
    sam.dispose();
  }
  if (!Deno.env.get("VIEWER_BENCH_DIR")) await Deno.remove(dir, { recursive: true });
  return rows;
}

const USAGE = `usage: deno run -A bench/viewer.ts
  takes no flags; environment: VIEWER_BENCH_DIR (keep the slide and run between invocations),
  VIEWER_BENCH_PARTS (comma-separated: tiles,encode,click,decode; default all)`;

if (import.meta.main) {
  Deno.exit(
    await runCommand(
      { name: "bench/viewer.ts", usage: USAGE, options: {} },
      Deno.args,
      async () => {
        const load = await Deno.readTextFile("/proc/loadavg").catch(() => "?");
        console.log(`load average at start: ${load.trim()}`);
        for (const r of await benchViewer()) {
          console.log(
            `${r.name.padEnd(62)} ${r.ms.toFixed(1).padStart(9)} ms  [${r.shape}]  ${r.adapter}  ${
              r.notes ?? ""
            }`,
          );
        }
        console.log(
          `load average at end: ${
            (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).trim()
          }`,
        );
      },
    ),
  );
}
