/**
 * Loss curves as an SVG line chart (axes, ticks, grid, axis labels, legend, one polyline per
 * series). SVG gives text and lines for free, scales without blur and opens in any browser; raster
 * images stay for what is an image (overlays, panels: `plots.ts`).
 */

/** Line colours (matplotlib's tab10, which readers already know). */
export const SERIES_COLOURS: readonly string[] = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
];

/** Tick positions: a 1/2/5×10^k step giving about `target` ticks over [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  // Ticks by index, not `v += step`: far from zero a step below half an ulp would not advance v.
  const k0 = Math.ceil(lo / step - 1e-9);
  for (
    let i = 0, v = k0 * step;
    v <= hi + step * 1e-9 && i <= 4 * target + 4;
    v = (k0 + ++i) * step
  ) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

/** log10 positions of decade ticks, or 1-2-5 ticks when the range spans under two decades. */
function logTicks(lo: number, hi: number): number[] {
  for (const ms of [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    const out: number[] = [];
    for (let k = Math.floor(lo); k <= Math.ceil(hi); k++) {
      for (const m of ms) {
        const v = k + Math.log10(m);
        if (v >= lo - 1e-9 && v <= hi + 1e-9) out.push(v);
      }
    }
    if (out.length >= 3 || ms.length === 9) return out;
  }
  return [];
}

/** Short tick label: ≤ 4 significant digits, exponent form when very large or small. */
export function formatTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace("e+", "e");
  return String(Number(v.toPrecision(4)));
}

export interface Series {
  name: string;
  points: [number, number][];
}

export interface CurveOptions {
  title?: string;
  width: number;
  height: number;
  xLabel?: string;
  yLabel?: string;
  /** Logarithmic y axis (non-positive values are dropped). */
  logY?: boolean;
}

/** Font size of tick labels, axis labels and the legend (px); the title is larger. */
const FONT = 11, TITLE_FONT = 16;
/** Width of a character at {@link FONT}, an upper estimate for sans-serif (margins only). */
const CHAR_WIDTH = 0.62 * FONT;

/** Text with the XML special characters escaped. */
const esc = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => `&${{ "&": "amp", "<": "lt", ">": "gt", '"': "quot" }[c] ?? "#39"};`,
  );

/** A coordinate as written in the SVG (two decimals, no trailing zeros). */
export const svgNumber = (v: number): string => String(Math.round(v * 100) / 100);

/** The chart's data → pixel mapping, exposed so tests can check what was drawn. */
export interface CurveLayout {
  /** Plot area in SVG pixels. */
  left: number;
  top: number;
  width: number;
  height: number;
  /** Pixel x of a data x; pixel y of a data y (log10 taken when `logY`). */
  px: (x: number) => number;
  py: (y: number) => number;
  xTicks: number[];
  /** Tick positions in axis units (log10 of the value when `logY`) and their labels. */
  yTicks: number[];
  yTickLabels: string[];
  /** Each series' finite points (positive when `logY`), sorted by x. */
  points: [number, number][][];
}

/** Axis ranges, ticks and margins of a chart. */
export function curveLayout(series: Series[], opts: CurveOptions): CurveLayout {
  const { width: W, height: H, title, xLabel, yLabel, logY = false } = opts;
  if (!(W >= 120 && H >= 90)) {
    throw new Error(`loss curves: ${W}×${H} is too small (need at least 120×90)`);
  }
  const fy = (y: number) => (logY ? Math.log10(y) : y);
  const points = series.map((s) =>
    s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0))
      .sort((a, b) => a[0] - b[0])
  );
  const all = points.flat();
  let [x0, x1] = all.length
    ? [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))]
    : [0, 1];
  let [y0, y1] = all.length
    ? [Math.min(...all.map((p) => fy(p[1]))), Math.max(...all.map((p) => fy(p[1])))]
    : [0, 1];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - (Math.abs(y0) * 0.1 || 1), y1 + (Math.abs(y1) * 0.1 || 1)];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  if (!logY && y0 < 0 && all.every((p) => p[1] >= 0)) y0 = 0;

  const xTicks = niceTicks(x0, x1, Math.max(2, Math.floor(W / 90)));
  const yTicks = logY ? logTicks(y0, y1) : niceTicks(y0, y1, Math.max(2, Math.floor(H / 60)));
  const yTickLabels = yTicks.map((v) => (logY ? formatTick(10 ** v) : formatTick(v)));
  const widest = Math.max(0, ...yTickLabels.map((s) => s.length)) * CHAR_WIDTH;
  const left = Math.ceil(8 + (yLabel ? FONT + 6 : 0) + widest + 8);
  const lastX = formatTick(xTicks[xTicks.length - 1] ?? 0).length * CHAR_WIDTH;
  const top = title ? TITLE_FONT + 16 : 12;
  const right = Math.max(16, Math.ceil(lastX / 2) + 6);
  const bottom = FONT + 14 + (xLabel ? FONT + 8 : 0);
  const width = W - left - right, height = H - top - bottom;
  return {
    left,
    top,
    width,
    height,
    px: (x) => left + ((x - x0) / (x1 - x0)) * width,
    py: (y) => top + (1 - (fy(y) - y0) / (y1 - y0)) * height,
    xTicks,
    yTicks,
    yTickLabels,
    points,
  };
}

/** Line chart of several series as an SVG document. */
export function lossCurveSvg(series: Series[], opts: CurveOptions): string {
  const { width: W, height: H, title, xLabel, yLabel } = opts;
  const lay = curveLayout(series, opts);
  const { left, top, width: pw, height: ph } = lay;
  const n = svgNumber;
  // The y ticks are in axis units: map them without the log10 that py applies to values.
  const yPixel = (v: number) => lay.py(opts.logY ? 10 ** v : v);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="sans-serif" font-size="${FONT}">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<defs><clipPath id="plot-area"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/>` +
    `</clipPath></defs>`,
  ];
  if (title) {
    out.push(
      `<text class="title" x="${n(left + pw / 2)}" y="${
        TITLE_FONT + 4
      }" font-size="${TITLE_FONT}" ` +
        `text-anchor="middle">${esc(title)}</text>`,
    );
  }
  out.push(`<g class="grid" stroke="#e4e4e4" stroke-width="1">`);
  for (const v of lay.xTicks) {
    out.push(`<line x1="${n(lay.px(v))}" y1="${top}" x2="${n(lay.px(v))}" y2="${top + ph}"/>`);
  }
  for (const v of lay.yTicks) {
    out.push(`<line x1="${left}" y1="${n(yPixel(v))}" x2="${left + pw}" y2="${n(yPixel(v))}"/>`);
  }
  out.push(`</g>`);
  out.push(`<g class="axes" stroke="#3c3c3c" fill="#3c3c3c">`);
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none"/>`);
  for (const v of lay.xTicks) {
    const x = n(lay.px(v));
    out.push(`<line x1="${x}" y1="${top + ph}" x2="${x}" y2="${top + ph + 4}"/>`);
    out.push(
      `<text class="x-tick" x="${x}" y="${top + ph + 6 + FONT}" stroke="none" ` +
        `text-anchor="middle">${esc(formatTick(v))}</text>`,
    );
  }
  lay.yTicks.forEach((v, i) => {
    const y = n(yPixel(v));
    out.push(`<line x1="${left - 4}" y1="${y}" x2="${left}" y2="${y}"/>`);
    out.push(
      `<text class="y-tick" x="${left - 7}" y="${y}" dy="0.35em" stroke="none" ` +
        `text-anchor="end">${esc(lay.yTickLabels[i])}</text>`,
    );
  });
  if (xLabel) {
    out.push(
      `<text class="x-label" x="${n(left + pw / 2)}" y="${H - 6}" stroke="none" ` +
        `text-anchor="middle">${esc(xLabel)}</text>`,
    );
  }
  if (yLabel) {
    const cy = n(top + ph / 2);
    out.push(
      `<text class="y-label" x="${FONT + 2}" y="${cy}" transform="rotate(-90 ${FONT + 2} ${cy})" ` +
        `stroke="none" text-anchor="middle">${esc(yLabel)}</text>`,
    );
  }
  out.push(`</g>`);
  out.push(`<g class="series" clip-path="url(#plot-area)" fill="none" stroke-width="2">`);
  lay.points.forEach((pts, k) => {
    const colour = SERIES_COLOURS[k % SERIES_COLOURS.length];
    const name = esc(series[k].name);
    if (pts.length === 1) {
      const [x, y] = pts[0];
      out.push(
        `<circle data-series="${name}" cx="${n(lay.px(x))}" cy="${n(lay.py(y))}" r="2.5" ` +
          `fill="${colour}"/>`,
      );
    } else if (pts.length > 1) {
      const coords = pts.map(([x, y]) => `${n(lay.px(x))},${n(lay.py(y))}`).join(" ");
      out.push(
        `<polyline data-series="${name}" stroke="${colour}" stroke-linejoin="round" ` +
          `points="${coords}"/>`,
      );
    }
  });
  out.push(`</g>`);
  if (series.length) {
    const lw = Math.ceil(Math.max(...series.map((s) => s.name.length)) * CHAR_WIDTH) + 34;
    const lh = series.length * (FONT + 4) + 8;
    const lx = left + pw - lw - 6, ly = top + 6;
    out.push(`<g class="legend">`);
    out.push(
      `<rect x="${lx}" y="${ly}" width="${lw}" height="${lh}" fill="#ffffff" stroke="#b4b4b4"/>`,
    );
    series.forEach((s, k) => {
      const y = ly + 4 + k * (FONT + 4) + (FONT + 4) / 2;
      const colour = SERIES_COLOURS[k % SERIES_COLOURS.length];
      out.push(
        `<line x1="${lx + 6}" y1="${n(y)}" x2="${lx + 24}" y2="${n(y)}" stroke="${colour}" ` +
          `stroke-width="3"/>`,
      );
      out.push(`<text x="${lx + 29}" y="${n(y)}" dy="0.35em">${esc(s.name)}</text>`);
    });
    out.push(`</g>`);
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
