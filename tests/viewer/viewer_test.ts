/**
 * `deno task view` end to end on a tiny trained run (tests/viewer/fixture.ts): the HTTP API's
 * confinement and validation (raw requests, so `..` and encodings reach the server unchanged), a
 * bad slide, concurrency, and the page in Debian's chromium driven by puppeteer-core (tiles at
 * three zoom levels, the heat-map toggle against the known tumour pixels, the gallery, a click on
 * a tumour patch against the server's mask). The browser part skips, saying why, where no
 * chromium is installed. Screenshots go to the fixture's temp folder.
 */
import assert from "node:assert/strict";
import { decodePng } from "../../engine/io/png.ts";
import { listSplit } from "../../pipeline/data/patches.ts";
import { startViewer, type Viewer } from "../../pipeline/viewer/server.ts";
import { type ViewerFixture, viewerFixture } from "./fixture.ts";
import { fixturePath, haveFixtures } from "../fixtures.ts";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

/** One raw HTTP/1.1 GET (or other method) with the path sent exactly as given. */
async function raw(
  url: string,
  path: string,
  method = "GET",
  body?: string,
): Promise<{ status: number; headers: string; body: Uint8Array }> {
  const u = new URL(url);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  const head = `${method} ${path} HTTP/1.1\r\nHost: ${u.host}\r\nConnection: close\r\n` +
    (body !== undefined
      ? `Content-Type: application/json\r\nContent-Length: ${
        new TextEncoder().encode(body).length
      }\r\n`
      : "") +
    "\r\n";
  await conn.write(new TextEncoder().encode(head + (body ?? "")));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  conn.close();
  const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) (all.set(c, o), o += c.length);
  const text = new TextDecoder("latin1").decode(all);
  const end = text.indexOf("\r\n\r\n");
  const status = Number(text.slice(9, 12));
  return { status, headers: text.slice(0, end), body: all.slice(end + 4) };
}

async function post(url: string, path: string, body: unknown): Promise<Response> {
  return await fetch(new URL(path, url), { method: "POST", body: JSON.stringify(body) });
}

async function waitJob(
  url: string,
  id: string,
  limitMs = 120_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const j = await (await fetch(new URL(`/api/jobs/${id}`, url))).json();
    if (j.state === "done") return j;
    if (j.state === "error" || j.state === "dropped") throw new Error(`job ${id}: ${j.message}`);
    if (Date.now() > deadline) throw new Error(`job ${id} still ${j.state}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** 0/1 mask of a job result's data-URL PNG. */
function maskOf(dataUrl: string): { data: Uint8Array; size: number } {
  const bytes = Uint8Array.from(atob(dataUrl.split(",")[1]), (c) => c.charCodeAt(0));
  const img = decodePng(bytes);
  return {
    data: Uint8Array.from(
      { length: img.width * img.height },
      (_, i) => (img.data[i * img.channels] > 127 ? 1 : 0),
    ),
    size: img.width,
  };
}

let fx: ViewerFixture;
let viewer: Viewer;

Deno.test({
  name: "viewer: fixture run and server start",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const t0 = performance.now();
    fx = await viewerFixture();
    console.log(
      `fixture: train ${fx.seconds.train.toFixed(1)} s, infer ${fx.seconds.infer.toFixed(1)} s, ` +
        `predictions ${fx.seconds.predictions.toFixed(1)} s (${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s)`,
    );
    viewer = await startViewer({
      run: fx.run,
      slides: [fx.slides, fx.extraSlides],
      predictions: [fx.predictions],
      port: 0,
      log: () => {},
    });
    assert.match(viewer.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  },
});

Deno.test({
  name: "viewer: only what was named at start is served (traversal, symlinks → 404)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const test = await listSplit(`${fx.run}/data/test`);
    const pos = test.find((p) => p.label === 1)!;
    // A CAM file replaced by a symlink out of the run folder after start.
    const cam = `${fx.run}/cam/test/${pos.id}_mask.png`;
    const saved = await Deno.readFile(cam);
    await Deno.remove(cam);
    await Deno.symlink("/etc/hostname", cam);
    try {
      const paths = [
        "/../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2Fetc%2Fpasswd",
        "//etc/passwd",
        "/lib/..%2F..%2Fdeno.json",
        "/lib/%2e%2e%2f%2e%2e%2fdeno.json",
        "/app.js/../../deno.json",
        "/api/slides/..%2F..%2F..%2Fetc%2Fpasswd/annotations",
        "/api/slides/%2Fetc%2Fpasswd/grid",
        "/api/slides/escape/tiles/10/0/0", // symlink out of the slides folder: never listed
        "/api/slides/synthetic_000.tif/grid",
        `/api/run/patches/test/..%2F..%2F..%2Fconfig.json/image.png`,
        `/api/run/patches/test/${pos.id}%2F..%2F..%2F..%2Fconfig.json/image.png`,
        `/api/run/patches/..%2F..%2Fcheckpoints/${pos.id}/image.png`,
        `/api/run/patches/test/${pos.id}/..%2F..%2Fsummary.json`,
        `/api/run/patches/test/${pos.id}/cam_mask.png`, // the symlink
        "/api/run/patches/test/%2Fetc%2Fpasswd/image.png",
        "/config.json",
        "/run/summary.json",
      ];
      for (const p of paths) {
        const r = await raw(viewer.url, p);
        assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
        assert.ok(!new TextDecoder().decode(r.body).includes("root:"), p);
      }
      // The same patch's other files are served.
      assert.equal(
        (await raw(viewer.url, `/api/run/patches/test/${pos.id}/image.png`)).status,
        200,
      );
      assert.equal((await raw(viewer.url, `/api/run/patches/test/${pos.id}/cam.png`)).status, 200);
      // Foreign Host headers (DNS rebinding) are refused on loopback.
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: Number(new URL(viewer.url).port),
      });
      await conn.write(
        new TextEncoder().encode(
          "GET /api/info HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        ),
      );
      const b = new Uint8Array(64);
      await conn.read(b);
      conn.close();
      assert.match(new TextDecoder().decode(b), /^HTTP\/1.1 403/);
    } finally {
      await Deno.remove(cam);
      await Deno.writeFile(cam, saved);
    }
  },
});

Deno.test({
  name: "viewer: bad parameters are a 400 at once (a point at 1e16 does not loop)",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const bad = [
      "/api/slides/synthetic_000/tiles/abc/0/0",
      "/api/slides/synthetic_000/tiles/1e3/0/0",
      "/api/slides/synthetic_000/tiles/-1/0/0",
      "/api/slides/synthetic_000/tiles/99/0/0",
      "/api/slides/synthetic_000/tiles/10/999999/0",
      "/api/slides/synthetic_000/tiles/10/0/99999999999999999999",
      "/api/slides/synthetic_000/tiles/10/0.5/0",
      "/api/run/gallery?split=../../etc",
    ];
    for (const p of bad) assert.equal((await raw(viewer.url, p)).status, 400, p);
    const t0 = performance.now();
    const bodies: unknown[] = [
      { slide: "synthetic_000", points: [{ x: 1e16, y: 1e16, label: 1 }] },
      { slide: "synthetic_000", points: [{ x: -5, y: 10, label: 1 }] },
      { slide: "synthetic_000", points: [{ x: 10, y: 10, label: 2 }] },
      { slide: "synthetic_000", points: [{ x: "10", y: 10, label: 1 }] },
      { slide: "synthetic_000", points: [] },
      { slide: "synthetic_000", points: Array(65).fill({ x: 10, y: 10, label: 1 }) },
      { slide: "synthetic_000", origin: { x: 1e16, y: 0 }, points: [{ x: 10, y: 10, label: 1 }] },
      {
        slide: "synthetic_000",
        points: [{ x: 10, y: 10, label: 1 }, { x: 900, y: 900, label: 1 }],
      },
      { patch: { split: "test", id: "nope" }, points: [{ x: 1, y: 1, label: 1 }] },
      { patch: { split: "test", id: fx ? "x" : "", x: 1 }, points: [{ x: 1e300, y: 1, label: 1 }] },
      { points: [{ x: 1, y: 1, label: 1 }] },
      "not an object",
    ];
    for (const b of bodies) {
      const r = await post(viewer.url, "/api/segment", b);
      await r.body?.cancel();
      assert.ok(
        r.status === 400 || r.status === 404,
        `${JSON.stringify(b).slice(0, 80)}: ${r.status}`,
      );
    }
    const big = await raw(
      viewer.url,
      "/api/segment",
      "POST",
      JSON.stringify({ pad: "x".repeat(70_000) }),
    );
    assert.equal(big.status, 413);
    const notJson = await raw(viewer.url, "/api/segment", "POST", "{");
    assert.equal(notJson.status, 400);
    assert.equal((await raw(viewer.url, "/api/jobs/j999999")).status, 404);
    assert.ok(performance.now() - t0 < 10_000, "validation took too long");
  },
});

Deno.test({
  name: "viewer: a bad slide gives its error and an error tile; the others keep serving",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const info = await (await fetch(new URL("/api/info", viewer.url))).json();
    const ids = info.slides.map((s: { id: string }) => s.id).sort();
    assert.deepEqual(ids, ["broken", "synthetic_000", "synthetic_001", "synthetic_002"]);
    const broken = info.slides.find((s: { id: string }) => s.id === "broken");
    assert.match(broken.error, /broken\.tif/);
    const r = await raw(viewer.url, "/api/slides/broken/tiles/0/0/0");
    assert.equal(r.status, 200);
    assert.match(r.headers, /x-tile-error: /i);
    const ok = await raw(viewer.url, "/api/slides/synthetic_000/tiles/10/1/1");
    assert.equal(ok.status, 200);
    assert.match(ok.headers, /content-type: image\/jpeg/i);
    // Prediction discovery: infer's output in <run>/infer/<stem>, --predictions for the other.
    const by = (id: string) => info.slides.find((s: { id: string }) => s.id === id);
    assert.equal(by(fx.inferSlide).heatmap, true);
    assert.equal(by(fx.predSlide).heatmap, true);
    assert.equal(by(fx.predSlide).polygons, true);
    assert.equal(by("synthetic_000").heatmap, false);
    assert.match(by("synthetic_000").predictionNote, /probability\.tif/);
    const heat = await raw(viewer.url, `/api/slides/${fx.inferSlide}/heatmap/10/0/0`);
    assert.equal(heat.status, 200);
    assert.doesNotMatch(heat.headers, /x-tile-error/i);
    const poly = await (await fetch(new URL(`/api/slides/${fx.predSlide}/polygons`, viewer.url)))
      .json();
    assert.ok(poly.regions.length >= 1 && poly.regions[0].name === "Tumor");
    assert.equal((await raw(viewer.url, "/api/slides/synthetic_000/polygons")).status, 404);
  },
});

Deno.test({
  name:
    "viewer: 64 concurrent tiles and a segmentation all succeed; a client leaving costs nothing",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const t0 = performance.now();
    const urls: string[] = [];
    for (const s of ["synthetic_000", "synthetic_001", "synthetic_002"]) {
      for (let y = 0; y < 4; y++) {
        for (let x = 0; x < 4; x++) urls.push(`/api/slides/${s}/tiles/10/${x}/${y}`);
      }
      for (let y = 0; y < 2; y++) {
        for (let x = 0; x < 2; x++) urls.push(`/api/slides/${s}/tiles/9/${x}/${y}`);
      }
    }
    while (urls.length < 64) urls.push(`/api/slides/synthetic_001/heatmap/10/${urls.length % 4}/1`);
    assert.equal(urls.length, 64);
    const seg = post(viewer.url, "/api/segment", {
      slide: "synthetic_001",
      points: [{ x: 500, y: 500, label: 1 }],
    }).then(async (r) => {
      assert.equal(r.status, 200);
      const { job } = await r.json();
      return await waitJob(viewer.url, job);
    });
    const tiles = await Promise.all(urls.map(async (u) => {
      const r = await fetch(new URL(u, viewer.url));
      const b = new Uint8Array(await r.arrayBuffer());
      return { u, status: r.status, n: b.length, err: r.headers.get("x-tile-error") };
    }));
    for (const t of tiles) {
      assert.equal(t.status, 200, t.u);
      assert.ok(t.n > 0 && t.err === null, `${t.u}: ${t.err}`);
    }
    const j = await seg as { result: { size: number; origin: { side: number } } };
    assert.equal(j.result.size, viewer.segment.patchSize());
    assert.ok(performance.now() - t0 < 180_000);
    // Clients that hang up mid-request: the server keeps answering the others.
    for (let i = 0; i < 8; i++) {
      const c = await Deno.connect({
        hostname: "127.0.0.1",
        port: Number(new URL(viewer.url).port),
      });
      await c.write(
        new TextEncoder().encode(
          `GET /api/slides/synthetic_002/tiles/10/${i % 4}/${
            3 - (i >> 2)
          } HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
        ),
      );
      c.close();
    }
    const again = await raw(viewer.url, "/api/slides/synthetic_002/tiles/10/0/0");
    assert.equal(again.status, 200);
    // Caches stay within their byte budgets.
    assert.ok(viewer.tiles.cache.bytes <= viewer.tiles.cache.maxBytes);
  },
});

Deno.test({
  name: "viewer: the dashboard follows state.json and metrics.jsonl as they change",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const get = async () => await (await fetch(new URL("/api/run/dashboard", viewer.url))).json();
    const d0 = await get();
    assert.equal(d0.state.stages.evaluate.status, "done");
    assert.ok(d0.curves.classifier.epoch.length >= 1);
    assert.ok(d0.summary && typeof d0.summary.final.dice === "number");
    const metrics = `${fx.run}/metrics.jsonl`, state = `${fx.run}/state.json`;
    const [m0, s0] = [await Deno.readTextFile(metrics), await Deno.readTextFile(state)];
    try {
      // A run still training: a new epoch record (and a torn line being appended) and a running stage.
      await Deno.writeTextFile(
        metrics,
        m0 + JSON.stringify({ stage: "iter_1", epoch: 1, train_loss: 0.5, val_loss: 0.6 }) +
          '\n{"stage":',
      );
      const st = JSON.parse(s0);
      st.stages.iter_1 = { status: "running", epoch: 1 };
      await Deno.writeTextFile(state, JSON.stringify(st));
      const d1 = await get();
      assert.deepEqual(d1.curves.iter_1, { epoch: [1], train: [0.5], val: [0.6] });
      assert.equal(d1.state.stages.iter_1.status, "running");
      assert.deepEqual(d1.errors, []);
    } finally {
      await Deno.writeTextFile(metrics, m0);
      await Deno.writeTextFile(state, s0);
    }
  },
});

Deno.test({
  name: "viewer: --sam-checkpoint segments slides without a run (official-format weights)" +
    (haveFixtures() ? "" : " (ignored: no ../shared/fixtures)"),
  ignore: !haveFixtures(),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const v = await startViewer({
      slides: [fx.slides],
      predictions: [],
      samCheckpoint: fixturePath("sam-tiny", "weights.pth"),
      samModel: fixturePath("sam-tiny", "case.json"),
      port: 0,
      log: () => {},
    });
    try {
      const info = await (await fetch(new URL("/api/info", v.url))).json();
      assert.equal(info.run, null);
      assert.match(info.sam, /weights\.pth$/);
      const r = await post(v.url, "/api/segment", {
        slide: "synthetic_001",
        points: [{ x: 600, y: 600, label: 1 }, { x: 700, y: 650, label: 0 }],
      });
      assert.equal(r.status, 200);
      const { job, origin } = await r.json();
      assert.deepEqual(origin, { x: 344, y: 344, side: 512 });
      const j = await waitJob(v.url, job) as {
        result: { mask: string; size: number; iou: number };
      };
      assert.equal(j.result.size, 512);
      assert.ok(Number.isFinite(j.result.iou));
      assert.equal(maskOf(j.result.mask).size, 512);
      // A gallery without a run is refused, not an error.
      assert.equal((await raw(v.url, "/api/run/gallery?split=test")).status, 404);
    } finally {
      await v.close();
    }
  },
});

// ------------------------------------------------------------------------------ browser

Deno.test({
  name: "viewer: the page in chromium" +
    (CHROMIUM ? "" : " (ignored: no /usr/bin/chromium; apt-get install chromium to run it)"),
  ignore: !CHROMIUM,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const { default: puppeteer } = await import("puppeteer-core");
    const profile = await Deno.makeTempDir({ prefix: "viewer_chromium_" });
    // Kept after the test (a few small PNGs) for a look at what the browser showed.
    const shots = await Deno.makeTempDir({ prefix: "viewer_screenshots_" });
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
      ], // deno-fmt-ignore
    });
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 1000, height: 700, deviceScaleFactor: 1 });
      const problems: string[] = [];
      const tileLevels = new Set<number>();
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(`${m.type()}: ${m.text()}`);
      });
      page.on("pageerror", (e) => problems.push(`pageerror: ${(e as Error).message}`));
      page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
      page.on("response", (r) => {
        const m = /\/api\/slides\/[^/]+\/tiles\/(\d+)\//.exec(r.url());
        if (m && r.status() === 200) tileLevels.add(Number(m[1]));
        if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
      });
      await page.goto(viewer.url, { waitUntil: "load" });
      await page.waitForFunction("window.viewerApp && window.viewerApp.ready", { timeout: 30_000 });

      // Page-side code is passed as strings: it runs in the browser, not under Deno's types.
      const ev = <T>(code: string): Promise<T> => page.evaluate(code) as Promise<T>;
      const waitFor = (code: string, timeout = 60_000) =>
        page.waitForFunction(code, { timeout, polling: 100 });

      /** Waits until every tiled image is fully loaded and drawn. */
      const settle = async () => {
        await waitFor(`(() => {
          const v = viewerApp.viewer, n = v.world.getItemCount();
          if (!n) return false;
          for (let i = 0; i < n; i++) if (!v.world.getItemAt(i).getFullyLoaded()) return false;
          return true;
        })()`);
        await new Promise((r) => setTimeout(r, 300)); // the draw after the last tile
      };
      interface Grab {
        w: number;
        h: number;
        px: number[];
        x0: number;
        y0: number;
        per: number;
      }
      /** The OSD canvas and the image coordinates of its pixels (no rotation: affine). */
      const grab = () =>
        ev<Grab>(`(() => {
          const v = viewerApp.viewer, c = v.drawer.canvas;
          const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          const item = v.world.getItemAt(0);
          const k = c.width / v.container.clientWidth;
          const a = item.viewerElementToImageCoordinates(new OpenSeadragon.Point(0, 0));
          const b = item.viewerElementToImageCoordinates(new OpenSeadragon.Point(100, 100));
          return { w: c.width, h: c.height, px: Array.from(d), x0: a.x, y0: a.y,
                   per: (b.x - a.x) / 100 / k };
        })()`);

      await t.step(
        "loads with no console errors; tiles at three zoom levels show the slide",
        async () => {
          for (const zoom of [1, 4, 16]) {
            await ev(`(() => {
            const v = viewerApp.viewer;
            v.viewport.goHome(true);
            v.viewport.zoomTo(v.viewport.getHomeZoom() * ${zoom}, null, true);
          })()`);
            await settle();
            const g = await grab();
            let nonBlack = 0, sum = 0, sum2 = 0;
            for (let i = 0; i < g.px.length; i += 4) {
              const l = (g.px[i] + g.px[i + 1] + g.px[i + 2]) / 3;
              if (l > 10) nonBlack++;
              sum += l;
              sum2 += l * l;
            }
            const n = g.px.length / 4, mean = sum / n, sd = Math.sqrt(sum2 / n - mean * mean);
            assert.ok(
              nonBlack / n > 0.5,
              `zoom ${zoom}: only ${(100 * nonBlack / n).toFixed(1)}% slide pixels`,
            );
            assert.ok(sd > 5, `zoom ${zoom}: flat canvas (sd ${sd.toFixed(1)})`);
            await page.screenshot({ path: `${shots}/zoom_${zoom}.png` });
          }
          assert.ok(tileLevels.size >= 3, `tile levels requested: ${[...tileLevels]}`);
          assert.deepEqual(problems, []);
        },
      );

      await t.step("a slide the reader refuses shows the reader's error", async () => {
        await ev(`viewerApp.openSlide(viewerApp.info.slides.find((x) => x.id === "broken"))`);
        const text = await ev<string>(`(() => {
          const e = document.getElementById("slide-error");
          return e.hidden ? "" : e.textContent;
        })()`);
        assert.match(text, /broken\.tif cannot be read:\n.*broken\.tif/s);
        assert.deepEqual(problems, []);
      });

      await t.step("the heat map changes the tumour pixels and nothing else", async () => {
        await ev(
          `viewerApp.openSlide(viewerApp.info.slides.find((x) => x.id === "${fx.predSlide}"))`,
        );
        await waitFor(
          `viewerApp.slide?.id === "${fx.predSlide}" && viewerApp.viewer.world.getItemCount() === 1`,
        );
        await ev(`(() => {
          const v = viewerApp.viewer;
          v.viewport.goHome(true);
          v.viewport.zoomTo(v.viewport.getHomeZoom() * 1.5, null, true);
        })()`);
        await settle();
        const off = await grab();
        await page.click("#toggle-heatmap");
        await waitFor("viewerApp.viewer.world.getItemCount() === 2");
        await settle();
        const on = await grab();
        await page.screenshot({ path: `${shots}/heatmap.png` });
        const m = fx.predMap;
        // Tumour around image point (x, y) within `r` image pixels (resampling at the edges).
        const tumourNear = (x: number, y: number, r: number) => {
          let any = false, all = true;
          for (const dy of [-r, 0, r]) {
            for (const dx of [-r, 0, r]) {
              const mx = Math.floor((x + dx) / m.downsample),
                my = Math.floor((y + dy) / m.downsample);
              const v = mx >= 0 && my >= 0 && mx < m.width && my < m.height
                ? m.data[my * m.width + mx]
                : 0;
              if (v) any = true;
              else all = false;
            }
          }
          return { any, all };
        };
        let changedOut = 0, changedIn = 0, inside = 0, changed = 0;
        const r = Math.max(2 * m.downsample, 2 * on.per);
        for (let y = 0; y < on.h; y++) {
          for (let x = 0; x < on.w; x++) {
            const i = (y * on.w + x) * 4;
            const d = Math.max(
              Math.abs(on.px[i] - off.px[i]),
              Math.abs(on.px[i + 1] - off.px[i + 1]),
              Math.abs(on.px[i + 2] - off.px[i + 2]),
            );
            const tn = tumourNear(on.x0 + (x + 0.5) * on.per, on.y0 + (y + 0.5) * on.per, r);
            if (d > 24) changed++;
            if (tn.all) {
              inside++;
              if (d > 24) changedIn++;
            } else if (!tn.any && d > 24) changedOut++;
          }
        }
        assert.ok(inside > 500, `the tumour covers only ${inside} canvas pixels`);
        assert.ok(
          changedIn / inside > 0.9,
          `the heat map changed ${changedIn}/${inside} tumour pixels`,
        );
        assert.ok(
          changedOut <= changed * 0.001,
          `${changedOut} of ${changed} changed pixels lie outside the tumour`,
        );
        assert.deepEqual(problems, []);
      });

      await t.step(
        "a click on the slide draws the server's mask where the patch was cut",
        async () => {
          // On the heat-map slide, still open: segment mode, one click at the tumour's centre.
          const m = fx.predMap;
          let sx = 0, sy = 0, n = 0;
          for (let y = 0; y < m.height; y++) {
            for (let x = 0; x < m.width; x++) {
              if (m.data[y * m.width + x]) (sx += x, sy += y, n++);
            }
          }
          const [cx, cy] = [
            Math.round((sx / n) * m.downsample),
            Math.round((sy / n) * m.downsample),
          ];
          await page.click("#toggle-heatmap"); // off: the vector layer is read on its own anyway
          await page.click("#segment-mode");
          const at = await ev<number[]>(`(() => {
          const q = viewerApp.viewer.world.getItemAt(0).imageToViewerElementCoordinates(
            new OpenSeadragon.Point(${cx}, ${cy}));
          const r = document.getElementById("osd").getBoundingClientRect();
          return [q.x + r.left, q.y + r.top];
        })()`);
          await page.mouse.click(at[0], at[1]);
          await waitFor("viewerApp.seg && viewerApp.seg.result", 120_000);
          // Zoom onto the patch so that each mask cell spans several screen pixels.
          await ev(`(() => {
            const o = viewerApp.seg.origin, it = viewerApp.viewer.world.getItemAt(0);
            viewerApp.viewer.viewport.fitBounds(it.imageToViewportRectangle(o.x, o.y, o.side, o.side), true);
          })()`);
          await new Promise((r) => setTimeout(r, 500));
          const got = await ev<
            { mask: string; origin: { x: number; y: number; side: number }; cells: number[] }
          >(`(() => {
          const s = viewerApp.seg, S = ${viewer.segment.patchSize()};
          const c = document.getElementById("vector-layer"), ctx = c.getContext("2d");
          const d = ctx.getImageData(0, 0, c.width, c.height).data;
          const it = viewerApp.viewer.world.getItemAt(0), k = devicePixelRatio;
          const cells = [];
          for (let y = 0; y < S; y++) {
            for (let x = 0; x < S; x++) {
              const p = it.imageToViewerElementCoordinates(new OpenSeadragon.Point(
                s.origin.x + (x + 0.5) * s.origin.side / S, s.origin.y + (y + 0.5) * s.origin.side / S));
              const px = Math.round(p.x * k), py = Math.round(p.y * k);
              if (px < 0 || py < 0 || px >= c.width || py >= c.height) { cells.push(-1); continue; }
              const o = (py * c.width + px) * 4;
              cells.push(d[o + 3] > 64 && d[o + 1] > d[o] + 64 ? 1 : 0);
            }
          }
          return { mask: s.result.mask, origin: s.origin, cells };
        })()`);
          const server = maskOf(got.mask);
          const S = server.size, per = got.origin.side / S;
          // The click's marker (radius 5 screen px) and the patch outline cover some cells: skip them.
          const scale = (await grab()).per; // image px per canvas px
          let compared = 0, agree = 0;
          for (let y = 0; y < S; y++) {
            for (let x = 0; x < S; x++) {
              const ix = got.origin.x + (x + 0.5) * per, iy = got.origin.y + (y + 0.5) * per;
              if (Math.hypot(ix - cx, iy - cy) < 8 * scale + per) continue;
              if (x === 0 || y === 0 || x === S - 1 || y === S - 1) continue;
              const c = got.cells[y * S + x];
              if (c < 0) continue;
              compared++;
              if (c === server.data[y * S + x]) agree++;
            }
          }
          assert.ok(compared > S * S * 0.8, `compared only ${compared} cells`);
          assert.equal(agree, compared, `${compared - agree} of ${compared} mask cells differ`);
          assert.ok(cx >= got.origin.x && cx < got.origin.x + got.origin.side);
          await page.screenshot({ path: `${shots}/slide_click.png` });
          await page.click("#segment-mode");
          assert.deepEqual(problems, []);
        },
      );

      await t.step("the gallery lists every test patch", async () => {
        await page.click('button[data-tab="gallery"]');
        const test = await listSplit(`${fx.run}/data/test`);
        // The final masks are a job; the gallery re-renders with each positive's Dice when done.
        const positives = test.filter((p) => p.label === 1).length;
        await waitFor(
          `document.querySelectorAll("#gallery .card").length === ${test.length} &&
          [...document.querySelectorAll("#gallery .card .caption")]
            .filter((c) => /Dice/.test(c.textContent)).length === ${positives}`,
          120_000,
        );
        const ids = await ev<string[]>(
          `[...document.querySelectorAll("#gallery .card")].map((c) => c.dataset.id)`,
        );
        assert.deepEqual(ids.sort(), test.map((p) => p.id).sort());
        await page.screenshot({ path: `${shots}/gallery.png` });
      });

      await t.step("a click on a tumour patch draws the server's mask", async () => {
        const test = await listSplit(`${fx.run}/data/test`);
        const pos = test.find((p) => p.label === 1)!;
        await page.click(`#gallery .card[data-id="${pos.id}"]`);
        await page.waitForSelector("#patch-modal:not([hidden])");
        const box = (await (await page.$("#patch-stack"))!.boundingBox())!;
        await page.mouse.click(box.x + box.width * 0.5, box.y + box.height * 0.5);
        await waitFor("viewerApp.patch && viewerApp.patch.result", 120_000);
        const shown = await ev<{ bits: number[]; size: number; mask: string; points: unknown }>(
          `(() => {
          const c = document.getElementById("patch-mask");
          const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
          const bits = [];
          for (let i = 3; i < d.length; i += 4) bits.push(d[i] > 127 ? 1 : 0);
          return { bits, size: c.width, mask: viewerApp.patch.result.mask, points: viewerApp.patch.points };
        })()`,
        );
        const S = viewer.segment.patchSize();
        assert.equal(shown.size, S);
        const pts = shown.points as { x: number; y: number; label: number }[];
        assert.equal(pts.length, 1);
        assert.equal(pts[0].label, 1);
        for (const v of [pts[0].x, pts[0].y]) assert.ok(Math.abs(v - S / 2) <= 1, `click at ${v}`);
        // The server's own answer for the same prompt, asked afresh.
        const r = await post(viewer.url, "/api/segment", {
          patch: { split: "test", id: pos.id },
          points: shown.points,
        });
        const j = await waitJob(viewer.url, (await r.json()).job) as { result: { mask: string } };
        const server = maskOf(j.result.mask);
        assert.deepEqual(shown.bits, Array.from(server.data));
        assert.deepEqual(Array.from(maskOf(shown.mask).data), Array.from(server.data));
        await page.screenshot({ path: `${shots}/patch.png` });
        assert.deepEqual(problems, []);
      });
      await t.step("the dashboard draws the stages and a loss chart per stage", async () => {
        await ev(`document.getElementById("patch-close").click()`);
        await page.click('button[data-tab="dashboard"]');
        await waitFor(
          `document.querySelectorAll("#dash-curves canvas").length >= 2 &&
          document.querySelectorAll("#dash-stages tr").length >= 5`,
          30_000,
        );
        const stages = await ev<string[]>(
          `[...document.querySelectorAll("#dash-stages tr td:first-child")].map((c) => c.textContent)`,
        );
        assert.deepEqual(stages, [
          "dataset",
          "classifier",
          "initial_masks",
          "preliminary",
          "evaluate",
        ]);
        await page.screenshot({ path: `${shots}/dashboard.png` });
        assert.deepEqual(problems, []);
      });
      console.log(`screenshots in ${shots}`);
    } finally {
      await browser.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "viewer: stop",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await viewer?.close();
    if (!Deno.env.get("VIEWER_TEST_DIR") && fx) await Deno.remove(fx.dir, { recursive: true });
  },
});
