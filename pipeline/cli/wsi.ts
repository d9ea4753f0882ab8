/**
 * `deno task wsi <command>`: inspect slides, cut regions and thumbnails, make synthetic slides.
 *
 *   info <slide> [--json]
 *   region <slide> --level L --x X --y Y --w W --h H --out region.png   (X, Y in level-0 pixels)
 *   thumbnail <slide> --out thumb.png [--overlay annotations.xml] [--max 1024]
 *   synth --seed S --out <dir> [--count N] [--size 4096] [--tumours 2]
 */
import { openSlide, type Slide } from "../wsi/slide.ts";
import { generateSyntheticSlide } from "../wsi/synthetic.ts";
import { rasterize, readAsapXml } from "../wsi/annotations.ts";
import { writePng } from "../../engine/io/png.ts";
import {
  numberFlag,
  type ParsedFlags,
  requiredNumberFlag,
  runSubcommand,
  type Subcommand,
  subcommand,
  UsageError,
} from "./args.ts";

const USAGE = `usage: deno task wsi <command> ...
  info <slide> [--json]
  region <slide> --level L --x X --y Y --w W --h H --out <png>
  thumbnail <slide> --out <png> [--overlay <xml>] [--max 1024]
  synth --seed S --out <dir> [--count N] [--size 4096] [--tumours 2]
  mask <slide> <xml> --level L --out <png> [--max-vertices N]`;

/**
 * An integer flag in [min, max] (a UsageError naming the flag otherwise); `def` when absent,
 * required when there is no default.
 */
function int(
  v: string | undefined,
  name: string,
  def?: number,
  range: { min?: number; max?: number } = {},
): number {
  const flags = { [name]: v }, opts = { ...range, integer: true };
  const n = def === undefined
    ? requiredNumberFlag(flags, name, opts)
    : numberFlag(flags, name, { def, ...opts })!;
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${name} ${v} is too large`);
  return n;
}

/** Largest region `region` writes (OpenSlide-style RGBA in memory, then one PNG): 2^28 px. */
const MAX_REGION_PIXELS = 2 ** 28;

/** The slide's summary as printed by `info --json`. */
function slideInfo(s: Slide) {
  return {
    levels: s.levels.map(({ width, height, downsample, tileWidth, tileHeight }) => ({
      width,
      height,
      downsample,
      tileWidth,
      tileHeight,
    })),
    mpp: s.mpp,
    compression: s.compression,
  };
}

const INFO_OPTIONS = { json: { type: "boolean" } } as const;

async function info(values: ParsedFlags<typeof INFO_OPTIONS>, positionals: string[]) {
  if (positionals.length !== 1) throw new UsageError("expected one slide path");
  const s = await openSlide(positionals[0]);
  try {
    const i = slideInfo(s);
    if (values.json) console.log(JSON.stringify(i));
    else {
      console.log(`${s.path}: ${i.compression}, mpp ${i.mpp ? i.mpp.join(" x ") : "unknown"}`);
      i.levels.forEach((l, k) =>
        console.log(
          `  level ${k}: ${l.width}x${l.height} downsample ${l.downsample} tiles ${l.tileWidth}x${l.tileHeight}`,
        )
      );
    }
  } finally {
    await s.close();
  }
}

const REGION_OPTIONS = {
  level: { type: "string" },
  x: { type: "string" },
  y: { type: "string" },
  w: { type: "string" },
  h: { type: "string" },
  out: { type: "string" },
} as const;

async function region(values: ParsedFlags<typeof REGION_OPTIONS>, positionals: string[]) {
  if (positionals.length !== 1 || !values.out) {
    throw new UsageError("expected <slide> and --out");
  }
  // Every argument is checked before the slide is read: a zero or huge size would otherwise
  // surface as the PNG encoder's message or an allocation failure.
  const w = int(values.w, "w", undefined, { min: 1 }),
    h = int(values.h, "h", undefined, { min: 1 });
  if (w * h > MAX_REGION_PIXELS) {
    throw new UsageError(
      `--w ${w} --h ${h} is ${w * h} pixels, above the ${MAX_REGION_PIXELS} a region ` +
        `may have; cut it into smaller regions`,
    );
  }
  const x = int(values.x, "x"), y = int(values.y, "y");
  const level = int(values.level, "level", 0, { min: 0 });
  const s = await openSlide(positionals[0]);
  try {
    if (level >= s.levels.length) {
      throw new UsageError(
        `--level ${level} does not exist: ${s.path} has levels 0..${s.levels.length - 1}`,
      );
    }
    const rgba = await s.readRegion(level, x, y, w, h);
    await writePng(values.out, { data: rgba, width: w, height: h, channels: 4 });
  } finally {
    await s.close();
  }
}

/** Area-average resize of an RGB image (thumbnails only ever shrink). */
function shrinkRgb(src: Uint8Array, sw: number, sh: number, dw: number, dh: number): Uint8Array {
  const out = new Uint8Array(dw * dh * 3);
  for (let y = 0; y < dh; y++) {
    const ya = Math.floor((y * sh) / dh), yb = Math.max(ya + 1, Math.floor(((y + 1) * sh) / dh));
    for (let x = 0; x < dw; x++) {
      const xa = Math.floor((x * sw) / dw), xb = Math.max(xa + 1, Math.floor(((x + 1) * sw) / dw));
      let r = 0, g = 0, b = 0;
      for (let yy = ya; yy < yb; yy++) {
        for (let xx = xa; xx < xb; xx++) {
          const i = (yy * sw + xx) * 3;
          r += src[i];
          g += src[i + 1];
          b += src[i + 2];
        }
      }
      const n = (yb - ya) * (xb - xa), o = (y * dw + x) * 3;
      out[o] = Math.round(r / n);
      out[o + 1] = Math.round(g / n);
      out[o + 2] = Math.round(b / n);
    }
  }
  return out;
}

const THUMBNAIL_OPTIONS = {
  out: { type: "string" },
  overlay: { type: "string" },
  max: { type: "string" },
} as const;

async function thumbnail(values: ParsedFlags<typeof THUMBNAIL_OPTIONS>, positionals: string[]) {
  if (positionals.length !== 1 || !values.out) {
    throw new UsageError("expected <slide> and --out");
  }
  const max = int(values.max, "max", 1024, { min: 1, max: 16384 });
  const s = await openSlide(positionals[0]);
  try {
    const [W, H] = [s.levels[0].width, s.levels[0].height];
    const scale = Math.min(1, max / Math.max(W, H));
    const tw = Math.max(1, Math.round(W * scale)), th = Math.max(1, Math.round(H * scale));
    // Smallest level that is still at least as large as the thumbnail.
    let L = 0;
    for (let k = 0; k < s.levels.length; k++) {
      if (s.levels[k].width >= tw && s.levels[k].height >= th) L = k;
    }
    const lv = s.levels[L];
    if (lv.width * lv.height > 2 ** 27) {
      throw new Error(
        `${s.path}: no level small enough for a thumbnail: the smallest usable level is ` +
          `${lv.width}x${lv.height} (more than 2^27 pixels) and the file has no smaller level`,
      );
    }
    const rgb = await s.readRegionRGB(L, 0, 0, lv.width, lv.height);
    const img = shrinkRgb(rgb, lv.width, lv.height, tw, th);
    if (values.overlay) {
      const ann = await readAsapXml(values.overlay);
      const mask = rasterize(ann, tw, th, (W / tw + H / th) / 2);
      for (let i = 0; i < tw * th; i++) {
        if (!mask[i]) continue;
        const edge = (i % tw > 0 && !mask[i - 1]) || (i % tw < tw - 1 && !mask[i + 1]) ||
          (i >= tw && !mask[i - tw]) || (i < tw * (th - 1) && !mask[i + tw]);
        const a = edge ? 1 : 0.35;
        img[i * 3] = Math.round(img[i * 3] * (1 - a) + 40 * a);
        img[i * 3 + 1] = Math.round(img[i * 3 + 1] * (1 - a) + 220 * a);
        img[i * 3 + 2] = Math.round(img[i * 3 + 2] * (1 - a) + 40 * a);
      }
    }
    await writePng(values.out, { data: img, width: tw, height: th, channels: 3 });
  } finally {
    await s.close();
  }
}

const SYNTH_OPTIONS = {
  seed: { type: "string" },
  out: { type: "string" },
  count: { type: "string" },
  size: { type: "string" },
  tumours: { type: "string" },
} as const;

async function synth(values: ParsedFlags<typeof SYNTH_OPTIONS>) {
  if (!values.out) throw new UsageError("--out <dir> is required");
  const seed = int(values.seed, "seed", 0, { min: 0 });
  const count = int(values.count, "count", 1, { min: 1 });
  const size = int(values.size, "size", 4096, { min: 1 });
  const tumours = int(values.tumours, "tumours", 2, { min: 0 });
  await Deno.mkdir(values.out, { recursive: true });
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const base = `${values.out}/synthetic_${seed + i}`;
    const spec = {
      seed: seed + i,
      width: size,
      height: size,
      tumours,
    };
    const { tiff, layout } = await generateSyntheticSlide(spec, `${base}.tif`, `${base}.xml`);
    console.log(
      `${base}.tif: ${size}x${size}, ${tiff.levels.length} levels, ${layout.tumours.length} ` +
        `tumours, ${(tiff.bytes / 2 ** 20).toFixed(1)} MiB, ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s`,
    );
  }
}

/** Subcommands; others may register more (e.g. `mask`). */
export const COMMANDS: Record<string, Subcommand> = {
  info: subcommand({ options: INFO_OPTIONS, positionals: true, run: info }),
  region: subcommand({ options: REGION_OPTIONS, positionals: true, run: region }),
  thumbnail: subcommand({ options: THUMBNAIL_OPTIONS, positionals: true, run: thumbnail }),
  synth: subcommand({ options: SYNTH_OPTIONS, run: synth }),
};

export function main(argv: string[]): Promise<number> {
  return runSubcommand({ name: "wsi", usage: USAGE }, COMMANDS, argv);
}

/** `mask <slide> <xml> --level L --out <png>`: the annotation mask (0/255) at a slide level. */
const MASK_OPTIONS = {
  level: { type: "string" },
  out: { type: "string" },
  "max-vertices": { type: "string" },
} as const;

async function mask(values: ParsedFlags<typeof MASK_OPTIONS>, positionals: string[]) {
  if (positionals.length !== 2 || !values.out) {
    throw new UsageError("expected <slide> <xml> and --out");
  }
  const s = await openSlide(positionals[0]);
  try {
    const level = int(values.level, "level", 0);
    const L = s.levels[level];
    if (!L) throw new UsageError(`level ${level} not in 0..${s.levels.length - 1}`);
    const maxVertices = values["max-vertices"] === undefined
      ? undefined
      : int(values["max-vertices"], "max-vertices", undefined, { min: 1 });
    const ann = await readAsapXml(positionals[1], { maxVertices });
    for (const ig of ann.ignored) console.error(`ignored ${ig.name} (${ig.group}): ${ig.reason}`);
    const m = rasterize(ann, L.width, L.height, L.downsample);
    await writePng(values.out, { data: m, width: L.width, height: L.height, channels: 1 });
  } finally {
    await s.close();
  }
}
COMMANDS.mask = subcommand({ options: MASK_OPTIONS, positionals: true, run: mask });

if (import.meta.main) Deno.exit(await main(Deno.args));
