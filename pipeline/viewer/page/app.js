// EP-SAM viewer page: plain JS, no build step. OpenSeadragon (canvas drawer) shows the slide and
// its raster overlays as tiled images on the same deep-zoom grid; vector overlays (annotations,
// patch grid, predicted polygons, prompts and masks) are drawn on a canvas above it, redrawn on
// every viewport change. Long work (SAM) runs as server jobs this page polls.
"use strict";

const $ = (id) => document.getElementById(id);
/** HTML-escapes text from the server (file names, run contents) before it goes into markup. */
const esc = (v) =>
  String(v).replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );
const app = {
  info: null,
  viewer: null,
  slide: null,
  layers: {}, // name -> {on, opacity, item?}
  vector: { annotations: null, grid: null, polygons: null },
  seg: null, // {slide, origin, points, mask: HTMLCanvasElement|null, job}
  patch: null, // {split, id, points}
  gallery: { items: [], split: "test" },
  jobs: 0,
};
globalThis.viewerApp = app;
app.openSlide = (s) => openSlide(s);

async function getJson(url, opts) {
  const r = await fetch(url, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function setStatus(text, frac) {
  $("job-status").textContent = text;
  const p = $("job-progress");
  if (frac === undefined) p.hidden = true;
  else {
    p.hidden = false;
    if (frac === null) p.removeAttribute("value");
    else p.value = frac;
  }
}

// ------------------------------------------------------------------------------ jobs

/** Polls a job until it ends, showing its progress; resolves with the job's final body. */
async function waitJob(id, label) {
  app.jobs++;
  try {
    for (let polls = 0;; polls++) {
      const j = await getJson(`/api/jobs/${id}`);
      if (j.state === "done") return j;
      if (j.state === "error" || j.state === "dropped") throw new Error(j.error || j.message);
      let text = `${label}: ${j.message}`;
      let frac;
      if (j.state === "queued") text += ` (${j.queuedSeconds.toFixed(0)} s)`;
      if (j.state === "embedding") {
        text += ` — ${j.elapsedSeconds.toFixed(0)} s`;
        if (j.estimateSeconds) {
          text += ` of ~${j.estimateSeconds.toFixed(0)} s (last pass)`;
          frac = Math.min(0.99, j.elapsedSeconds / j.estimateSeconds);
        } else {
          text += " (a ViT-B pass takes about a minute on a software adapter)";
          frac = null;
        }
      }
      setStatus(text, frac);
      // Decoder-only jobs end in tens of milliseconds: poll fast first, then every 250 ms.
      await new Promise((r) => setTimeout(r, polls < 10 ? 25 : 250));
    }
  } finally {
    app.jobs--;
    setStatus("");
  }
}

/** A 0/255 mask data URL as a canvas: `rgb` where on, transparent elsewhere. */
async function maskCanvas(dataUrl, rgb) {
  const img = new Image();
  img.src = dataUrl;
  await img.decode();
  const c = document.createElement("canvas");
  c.width = img.width;
  c.height = img.height;
  const x = c.getContext("2d");
  x.drawImage(img, 0, 0);
  const d = x.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < d.data.length; i += 4) {
    const on = d.data[i] > 127;
    d.data[i] = rgb[0];
    d.data[i + 1] = rgb[1];
    d.data[i + 2] = rgb[2];
    d.data[i + 3] = on ? 255 : 0;
  }
  x.putImageData(d, 0, 0);
  return c;
}

// ------------------------------------------------------------------------------ slides

const SLIDE_LAYERS = [
  { name: "tissue", label: "tissue mask", kind: "raster", opacity: 0.35 },
  {
    name: "annotations",
    label: "ground truth (ASAP)",
    kind: "vector",
    opacity: 1,
    hint: "yellow: tumour; blue: exclusion",
  },
  {
    name: "grid",
    label: "patch grid (label / split)",
    kind: "vector",
    opacity: 0.8,
    hint: "red: tumour, blue: normal; solid train, dashed val, dotted test",
  },
  { name: "heatmap", label: "tumour probability", kind: "raster", opacity: 0.6 },
  { name: "polygons", label: "predicted tumour polygons", kind: "vector", opacity: 0.8 },
];

function tileSource(slide, layer) {
  const dz = slide.dz;
  const path = layer === "slide" ? "tiles" : layer;
  return {
    width: dz.width,
    height: dz.height,
    tileSize: dz.tileSize,
    tileOverlap: 0,
    minLevel: dz.minLevel,
    maxLevel: dz.maxLevel,
    getTileUrl: (l, x, y) => `/api/slides/${encodeURIComponent(slide.id)}/${path}/${l}/${x}/${y}`,
  };
}

function available(slide, name) {
  if (name === "tissue") return [true, ""];
  if (name === "annotations") return [slide.annotations, "no annotation XML for this slide"];
  if (name === "grid") return [slide.grid, "no prepared patches on this slide"];
  if (name === "heatmap") return [slide.heatmap, slide.predictionNote || ""];
  if (name === "polygons") return [slide.polygons, slide.predictionNote || ""];
  return [false, ""];
}

function buildOverlayControls(slide) {
  const box = $("slide-overlays");
  box.innerHTML = "";
  for (const L of SLIDE_LAYERS) {
    const [ok, why] = available(slide, L.name);
    const st = app.layers[L.name] ??= { on: false, opacity: L.opacity };
    if (!ok) st.on = false;
    const row = document.createElement("div");
    row.className = "overlay-row" + (ok ? "" : " disabled");
    row.innerHTML =
      `<label><input type="checkbox" id="toggle-${L.name}" ${st.on ? "checked" : ""} ${
        ok ? "" : "disabled"
      }> ${L.label}</label><input type="range" id="opacity-${L.name}" min="0" max="1" step="0.05" value="${st.opacity}" ${
        ok ? "" : "disabled"
      }>` + (ok ? (L.hint ? `<small>${L.hint}</small>` : "") : `<small>${esc(why)}</small>`);
    box.appendChild(row);
    row.querySelector(`#toggle-${L.name}`).addEventListener("change", (e) => {
      st.on = e.target.checked;
      applyLayer(L);
    });
    row.querySelector(`#opacity-${L.name}`).addEventListener("input", (e) => {
      st.opacity = Number(e.target.value);
      applyLayer(L);
    });
  }
  $("heat-legend").hidden = !slide.heatmap;
}

async function applyLayer(L) {
  const st = app.layers[L.name];
  if (L.kind === "raster") {
    if (st.on && !st.item) {
      const tiled = await new Promise((resolve, reject) =>
        app.viewer.addTiledImage({
          tileSource: tileSource(app.slide, L.name),
          opacity: st.opacity,
          success: (e) => resolve(e.item),
          error: (e) => reject(new Error(e.message)),
        })
      );
      st.item = tiled;
    }
    if (st.item) st.item.setOpacity(st.on ? st.opacity : 0);
  } else {
    if (st.on && app.vector[L.name] === null) {
      try {
        app.vector[L.name] = await getJson(
          `/api/slides/${encodeURIComponent(app.slide.id)}/${L.name}`,
        );
      } catch (e) {
        $("slide-message").textContent = `${L.label}: ${e.message}`;
        app.vector[L.name] = { error: e.message };
      }
    }
    drawVectors();
  }
}

function openSlide(slide) {
  app.slide = slide;
  document.querySelectorAll("#slide-list button").forEach((b) =>
    b.classList.toggle("active", b.dataset.id === slide.id)
  );
  app.vector = { annotations: null, grid: null, polygons: null };
  app.seg = null;
  for (const st of Object.values(app.layers)) st.item = null;
  $("slide-message").textContent = "";
  const err = $("slide-error");
  if (slide.error) {
    err.hidden = false;
    err.textContent = `${slide.name} cannot be read:\n${slide.error}`;
    app.viewer.close();
    buildOverlayControls({
      ...slide,
      annotations: false,
      grid: false,
      heatmap: false,
      polygons: false,
    });
    return;
  }
  err.hidden = true;
  buildOverlayControls(slide);
  app.viewer.open(tileSource(slide, "slide"));
  app.viewer.addOnceHandler("open", () => {
    for (const L of SLIDE_LAYERS) if (app.layers[L.name].on) applyLayer(L);
  });
}

/** Image (level-0) → vector-canvas pixels. */
function toScreen(x, y) {
  const item = app.viewer.world.getItemAt(0);
  const p = item.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
  return [p.x * devicePixelRatio, p.y * devicePixelRatio];
}

function tracePath(ctx, flat) {
  for (let i = 0; i < flat.length; i += 2) {
    const [sx, sy] = toScreen(flat[i], flat[i + 1]);
    if (i === 0) ctx.moveTo(sx, sy);
    else ctx.lineTo(sx, sy);
  }
  ctx.closePath();
}

function drawVectors() {
  const c = $("vector-layer");
  const wrap = $("viewer-wrap");
  const w = Math.round(wrap.clientWidth * devicePixelRatio),
    h = Math.round(wrap.clientHeight * devicePixelRatio);
  if (c.width !== w || c.height !== h) {
    c.width = w;
    c.height = h;
  }
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  if (!app.viewer || !app.viewer.world.getItemCount() || !app.slide) return;
  const lw = 2 * devicePixelRatio;
  const L = app.layers;
  const g = app.vector.grid;
  if (L.grid?.on && g?.patches) {
    ctx.globalAlpha = L.grid.opacity;
    const dash = { train: [], val: [6, 3], test: [2, 2] };
    for (const p of g.patches) {
      const [x0, y0] = toScreen(p.x, p.y);
      const [x1, y1] = toScreen(p.x + g.patch, p.y + g.patch);
      if (x1 < 0 || y1 < 0 || x0 > w || y0 > h) continue;
      ctx.setLineDash(dash[p.split].map((v) => v * devicePixelRatio));
      ctx.strokeStyle = p.label ? "#ff3030" : "#30a0ff";
      ctx.lineWidth = lw / 2;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
    ctx.setLineDash([]);
  }
  const a = app.vector.annotations;
  if (L.annotations?.on && a?.positive) {
    ctx.globalAlpha = L.annotations.opacity;
    ctx.lineWidth = lw;
    for (const [list, col] of [[a.positive, "#f4fa58"], [a.exclusion, "#58a0fa"]]) {
      ctx.strokeStyle = col;
      for (const poly of list) {
        ctx.beginPath();
        tracePath(ctx, poly.points);
        ctx.stroke();
      }
    }
  }
  const pg = app.vector.polygons;
  if (L.polygons?.on && pg?.regions) {
    ctx.globalAlpha = L.polygons.opacity;
    ctx.lineWidth = lw;
    for (const r of pg.regions) {
      const col = r.color ? `rgb(${r.color.join(",")})` : "#00e000";
      ctx.strokeStyle = col;
      ctx.fillStyle = col;
      for (const poly of r.polygons) {
        ctx.beginPath();
        for (const ring of poly) tracePath(ctx, ring);
        ctx.globalAlpha = L.polygons.opacity * 0.3;
        ctx.fill("evenodd");
        ctx.globalAlpha = L.polygons.opacity;
        ctx.stroke();
      }
    }
  }
  ctx.globalAlpha = 1;
  const s = app.seg;
  if (s && s.slide === app.slide.id) {
    if (s.mask && s.origin) {
      const [x0, y0] = toScreen(s.origin.x, s.origin.y);
      const [x1, y1] = toScreen(s.origin.x + s.origin.side, s.origin.y + s.origin.side);
      ctx.imageSmoothingEnabled = false;
      ctx.globalAlpha = 0.5;
      ctx.drawImage(s.mask, x0, y0, x1 - x0, y1 - y0);
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 1;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
    for (const p of s.points) {
      const [x, y] = toScreen(p.x, p.y);
      ctx.beginPath();
      ctx.arc(x, y, 5 * devicePixelRatio, 0, 2 * Math.PI);
      ctx.fillStyle = p.label ? "#00ff00" : "#ff0000";
      ctx.fill();
      ctx.strokeStyle = "#000";
      ctx.stroke();
    }
  }
}

async function segmentOnSlide(x, y, negative) {
  const slide = app.slide;
  const T = app.info.slidePatchSide;
  const p = { x: Math.floor(x), y: Math.floor(y), label: negative ? 0 : 1 };
  let s = app.seg;
  const inside = s && s.slide === slide.id && s.origin && p.x >= s.origin.x &&
    p.y >= s.origin.y && p.x < s.origin.x + s.origin.side && p.y < s.origin.y + s.origin.side;
  if (!inside) s = app.seg = { slide: slide.id, origin: null, points: [], mask: null };
  s.points.push(p);
  drawVectors();
  const body = { slide: slide.id, points: s.points };
  if (s.origin) body.origin = { x: s.origin.x, y: s.origin.y };
  try {
    const r = await getJson("/api/segment", { method: "POST", body: JSON.stringify(body) });
    s.origin = r.origin;
    const j = await waitJob(r.job, "segment");
    if (app.seg !== s) return;
    s.mask = await maskCanvas(j.result.mask, [0, 255, 0]);
    s.result = j.result;
    $("slide-message").textContent =
      `mask of the ${T}-px patch at (${s.origin.x}, ${s.origin.y}): ` +
      `predicted IoU ${j.result.iou.toFixed(3)}${
        j.result.embeddingCached ? " (cached embedding)" : ""
      }`;
    drawVectors();
  } catch (e) {
    $("slide-message").textContent = `segment: ${e.message}`;
  }
}

function initViewer() {
  app.viewer = OpenSeadragon({
    element: $("osd"),
    drawer: "canvas",
    showNavigationControl: false,
    showNavigator: false,
    animationTime: 0.4,
    maxZoomPixelRatio: 4,
    imageLoaderLimit: 8,
    gestureSettingsMouse: { clickToZoom: false },
  });
  for (const ev of ["update-viewport", "animation", "open", "resize"]) {
    app.viewer.addHandler(ev, drawVectors);
  }
  app.viewer.addHandler("canvas-click", (e) => {
    if (!$("segment-mode").checked || !e.quick || !app.slide || app.slide.error) return;
    e.preventDefaultAction = true;
    const item = app.viewer.world.getItemAt(0);
    const p = item.viewerElementToImageCoordinates(e.position);
    segmentOnSlide(p.x, p.y, e.originalEvent.shiftKey);
  });
  $("segment-clear").addEventListener("click", () => {
    app.seg = null;
    drawVectors();
  });
  const bar = $("legend-bar").getContext("2d");
  for (let i = 0; i < 120; i++) {
    bar.fillStyle = `rgb(${jet(i / 119).join(",")})`;
    bar.fillRect(i, 0, 1, 10);
  }
}

/** Same colour map as the server's heat-map tiles (pipeline/plots.ts jet). */
function jet(v) {
  const t = Math.min(1, Math.max(0, v));
  const ch = (o) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - o))));
  return [ch(3), ch(2), ch(1)];
}

// ------------------------------------------------------------------------------ gallery

const patchLayerState = {
  truth: { on: true, opacity: 0.4 },
  cam: { on: false, opacity: 0.5 },
  cam_mask: { on: false, opacity: 0.4 },
  final: { on: true, opacity: 0.4 },
};

function patchUrl(it, kind) {
  return `/api/run/patches/${it.split}/${encodeURIComponent(it.id)}/${kind}.png`;
}

function kindsOf(it) {
  const k = [];
  if (it.truth) k.push("truth");
  if (it.cam) k.push("cam", "cam_mask");
  for (const i of it.pseudo) k.push(`pseudo_${i}`);
  if (it.final) k.push("final");
  return k;
}

function renderGallery() {
  const g = app.gallery;
  const lab = $("gallery-label").value;
  const sort = $("gallery-sort").value;
  let items = g.items.filter((it) => lab === "all" || String(it.label) === lab);
  const d = (it) => (it.dice === null ? -1 : it.dice);
  if (sort === "dice-desc") items = items.toSorted((a, b) => d(b) - d(a));
  else if (sort === "dice-asc") {
    items = items.toSorted((a, b) => (a.dice ?? 2) - (b.dice ?? 2));
  } else items = items.toSorted((a, b) => (a.id < b.id ? -1 : 1));
  const box = $("gallery");
  box.innerHTML = "";
  for (const it of items) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.id = it.id;
    const thumbs = ["image", ...kindsOf(it)].map((k) =>
      `<div class="thumb"><img src="${patchUrl(it, "image")}" alt="">` +
      (k === "image"
        ? ""
        : `<img src="${patchUrl(it, k)}" alt="" style="opacity:${k === "cam" ? 0.6 : 0.5}">`) +
      `<span>${k.replace("_mask", " mask").replace("pseudo_", "pseudo ")}</span></div>`
    ).join("");
    card.innerHTML = `<div class="thumbs">${thumbs}</div><div class="caption">${esc(it.id)} · ${
      it.label ? "tumour" : "normal"
    }${it.dice === null ? "" : ` · Dice ${it.dice.toFixed(3)}`}</div>`;
    card.addEventListener("click", () => openPatch(it));
    box.appendChild(card);
  }
  $("gallery-status").textContent = `${items.length} of ${g.items.length} patches` +
    (g.finalState && g.finalState !== "done" ? ` · final masks: ${g.finalMessage}` : "");
}

async function loadGallery() {
  if (!app.info.run) {
    $("gallery-status").textContent = "no run: start the viewer with --run";
    return;
  }
  const split = $("gallery-split").value;
  app.gallery.split = split;
  const r = await getJson(`/api/run/gallery?split=${split}`);
  app.gallery.items = r.items;
  app.gallery.finalState = r.final.state;
  app.gallery.finalMessage = r.final.message;
  renderGallery();
  if (r.final.state !== "done" && r.final.state !== "error" && r.final.state !== "dropped") {
    try {
      await waitJob(r.final.job, `final masks (${split})`);
    } catch (e) {
      $("gallery-status").textContent += ` · final masks failed: ${e.message}`;
      return;
    }
    if (app.gallery.split === split) await loadGallery();
  }
}

function openPatch(it) {
  app.patch = { ...it, points: [] };
  $("patch-modal").hidden = false;
  $("patch-title").textContent = `${it.split} / ${it.id} (${it.label ? "tumour" : "normal"})` +
    (it.dice === null ? "" : ` — final SAM Dice ${it.dice.toFixed(3)}`);
  $("patch-image").src = patchUrl(it, "image");
  const layers = $("patch-layers");
  layers.innerHTML = "";
  const ctl = $("patch-overlays");
  ctl.innerHTML = "";
  for (const k of kindsOf(it)) {
    const st = patchLayerState[k] ??= { on: false, opacity: 0.4 };
    const img = document.createElement("img");
    img.src = patchUrl(it, k);
    img.style.opacity = st.on ? st.opacity : 0;
    layers.appendChild(img);
    const row = document.createElement("div");
    row.className = "overlay-row";
    row.innerHTML = `<label><input type="checkbox" ${st.on ? "checked" : ""}> ${
      k.replace("_mask", " mask").replace("pseudo_", "pseudo-label iter ")
    }</label><input type="range" min="0" max="1" step="0.05" value="${st.opacity}">`;
    const [cb, range] = row.querySelectorAll("input");
    const apply = () => (img.style.opacity = st.on ? st.opacity : 0);
    cb.addEventListener("change", () => (st.on = cb.checked, apply()));
    range.addEventListener("input", () => (st.opacity = Number(range.value), apply()));
    ctl.appendChild(row);
  }
  const S = app.info.patchSize;
  for (const id of ["patch-mask", "patch-points"]) {
    const c = $(id);
    c.width = S;
    c.height = S;
    c.getContext("2d").clearRect(0, 0, S, S);
  }
  $("patch-points").width = 512;
  $("patch-points").height = 512;
  $("patch-result").textContent = "";
}

function drawPatchPoints() {
  const c = $("patch-points"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const S = app.info.patchSize;
  for (const p of app.patch.points) {
    ctx.beginPath();
    ctx.arc((p.x + 0.5) * c.width / S, (p.y + 0.5) * c.height / S, 6, 0, 2 * Math.PI);
    ctx.fillStyle = p.label ? "#00ff00" : "#ff0000";
    ctx.fill();
    ctx.strokeStyle = "#000";
    ctx.stroke();
  }
}

async function segmentOnPatch(e) {
  const it = app.patch;
  if (!it) return;
  const S = app.info.patchSize;
  const rect = $("patch-stack").getBoundingClientRect();
  const x = Math.min(S - 1, Math.max(0, Math.floor((e.clientX - rect.left) / rect.width * S)));
  const y = Math.min(S - 1, Math.max(0, Math.floor((e.clientY - rect.top) / rect.height * S)));
  it.points.push({ x, y, label: e.shiftKey ? 0 : 1 });
  drawPatchPoints();
  try {
    const r = await getJson("/api/segment", {
      method: "POST",
      body: JSON.stringify({ patch: { split: it.split, id: it.id }, points: it.points }),
    });
    const j = await waitJob(r.job, "segment");
    if (app.patch !== it) return;
    const m = await maskCanvas(j.result.mask, [0, 255, 255]);
    const c = $("patch-mask"), ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    ctx.drawImage(m, 0, 0);
    c.style.opacity = 0.5;
    it.result = j.result;
    $("patch-result").textContent = `predicted IoU ${j.result.iou.toFixed(3)}` +
      (j.result.embeddingCached ? " (cached embedding)" : "");
  } catch (err) {
    $("patch-result").textContent = `segment: ${err.message}`;
  }
}

// ------------------------------------------------------------------------------ dashboard

const charts = new Map();

async function loadDashboard() {
  if (!app.info.run) {
    $("dash-status").textContent = "no run: start the viewer with --run";
    return;
  }
  let d;
  try {
    d = await getJson("/api/run/dashboard");
  } catch (e) {
    $("dash-status").textContent = `dashboard: ${e.message}`;
    return;
  }
  const stages = Object.entries(d.state?.stages ?? {});
  const running = stages.some(([, s]) => s.status === "running");
  $("dash-status").textContent = `${app.info.run.dir} · profile ${d.profile} · ` +
    (running ? "training (updates every 3 s)" : "idle") + ` · read ${d.time}` +
    (d.errors.length ? ` · ${d.errors.join("; ")}` : "");
  const maxSec = Math.max(1, ...stages.map(([, s]) => s.seconds ?? 0));
  $("dash-stages").innerHTML = "<tr><th>stage</th><th>status</th><th>epoch</th><th>seconds</th>" +
    "<th></th><th>updated</th></tr>" +
    stages.map(([name, s]) =>
      `<tr><td>${esc(name)}</td><td class="status-${esc(s.status)}">${esc(s.status)}</td><td>${
        esc(s.epoch ?? "")
      }</td>` +
      `<td>${s.seconds !== undefined ? Number(s.seconds).toFixed(1) : ""}</td>` +
      `<td><div class="bar" style="width:${
        ((s.seconds ?? 0) / maxSec * 200).toFixed(0)
      }px"></div></td>` +
      `<td>${esc(s.updated ?? "")}</td></tr>`
    ).join("");
  const box = $("dash-curves");
  for (const [stage, c] of Object.entries(d.curves)) {
    const data = [c.epoch, c.train, c.val];
    let ch = charts.get(stage);
    if (!ch) {
      const div = document.createElement("div");
      div.dataset.stage = stage;
      box.appendChild(div);
      ch = new uPlot(
        {
          title: stage,
          width: 420,
          height: 220,
          scales: { x: { time: false } },
          series: [{ label: "epoch" }, { label: "train", stroke: "#1f77b4" }, {
            label: "val",
            stroke: "#ff7f0e",
          }],
        },
        data,
        div,
      );
      charts.set(stage, ch);
    } else ch.setData(data);
  }
  const sm = d.summary;
  $("dash-summary").innerHTML = sm
    ? "<tr><th></th><th>Dice</th><th>IoU</th><th>pooled Dice</th><th>patches</th></tr>" +
      [["CAM masks", sm.cam], ["final SAM", sm.final]].map(([k, v]) =>
        `<tr><td>${k}</td><td>${v.dice.toFixed(4)}</td><td>${v.iou.toFixed(4)}</td>` +
        `<td>${v.pooledDice.toFixed(4)}</td><td>${esc(v.n)}</td></tr>`
      ).join("") + `<tr><td colspan="5">${esc(sm.samWeights)}</td></tr>`
    : "<tr><td>no summary.json yet (evaluate has not run)</td></tr>";
}

// ------------------------------------------------------------------------------ start

function showTab(name) {
  document.querySelectorAll(".tab").forEach((b) =>
    b.classList.toggle("active", b.dataset.tab === name)
  );
  for (const t of ["slides", "gallery", "dashboard"]) $(`tab-${t}`).hidden = t !== name;
  if (name === "gallery" && !app.gallery.loaded) {
    app.gallery.loaded = true;
    loadGallery();
  }
  if (name === "dashboard") loadDashboard();
  app.tab = name;
}

async function main() {
  app.info = await getJson("/api/info");
  initViewer();
  const list = $("slide-list");
  for (const s of app.info.slides) {
    const li = document.createElement("li");
    li.innerHTML = `<button data-id="${esc(s.id)}">${esc(s.name)}</button>` +
      (s.error ? `<div class="err">cannot be read</div>` : "");
    li.querySelector("button").addEventListener("click", () => openSlide(s));
    list.appendChild(li);
  }
  if (!app.info.slides.length) $("slide-message").textContent = "no slides (--slides or --run)";
  document.querySelectorAll(".tab").forEach((b) =>
    b.addEventListener("click", () => showTab(b.dataset.tab))
  );
  $("gallery-split").addEventListener("change", loadGallery);
  $("gallery-sort").addEventListener("change", renderGallery);
  $("gallery-label").addEventListener("change", renderGallery);
  $("patch-close").addEventListener("click", () => {
    $("patch-modal").hidden = true;
    app.patch = null;
  });
  $("patch-stack").addEventListener("click", segmentOnPatch);
  $("patch-clear").addEventListener("click", () => {
    app.patch.points = [];
    drawPatchPoints();
    const c = $("patch-mask");
    c.getContext("2d").clearRect(0, 0, c.width, c.height);
  });
  setInterval(() => {
    if (app.tab === "dashboard") loadDashboard();
  }, 3000);
  const first = app.info.slides.find((s) => !s.error) ?? app.info.slides[0];
  if (first) openSlide(first);
  app.ready = true;
}

main().catch((e) => {
  document.body.insertAdjacentHTML(
    "afterbegin",
    `<div class="error">viewer: ${esc(e.message)}</div>`,
  );
});
