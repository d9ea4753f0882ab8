/**
 * Tiled inference over a slide's tissue: the slide is cut into tiles of `tile` level-0 pixels
 * (the prepared patch side), each tile with tissue is resized to the model's patch size, classified,
 * and — when the classifier says tumour (p > 0.5) — segmented by SAM prompted from its CAM (as
 * `model_inference.py`). The tumour probability (sigmoid of the SAM logits; 0 elsewhere) is kept at
 * patch resolution per tile, i.e. downsample tile/patchSize, and written as a gray pyramidal TIFF,
 * with an overlay PNG on a thumbnail, its geometry in `probability.json`, and the tumour regions
 * (probability > 0.5) as polygons in `tumour.xml` (ASAP) and `tumour.geojson` (QuPath).
 */
import { noGrad, tensor, tidy } from "../../engine/mod.ts";
import { encodePng } from "../../engine/io/png.ts";
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import type { ResNetAdl } from "../../model/resnet_adl.ts";
import type { Sam } from "../../model/sam/sam.ts";
import { resizeBilinear } from "../data/patches.ts";
import { heatmapOverlay } from "../plots.ts";
import { Progress } from "../progress.ts";
import type { PipelineConfig } from "../config.ts";
import { camOf } from "../classifier/cam.ts";
import { segmentWithCam } from "../sam/segment.ts";
import type { HostPatch } from "../data/host_patches.ts";
import { polygonsFromMap, writePolygonExport } from "../export/export.ts";

export interface SlideResult {
  tiff: string;
  overlay: string;
  /** Tumour polygons (`tumour.xml`, `tumour.geojson`) and how many regions they hold. */
  xml: string;
  geojson: string;
  regions: number;
  width: number;
  height: number;
  downsample: number;
  tiles: number;
  tumourTiles: number;
}

export async function inferSlide(
  path: string,
  cls: ResNetAdl,
  sam: Sam,
  cfg: PipelineConfig,
  outDir: string,
  opts: { tile: number; quiet: boolean; minTissue?: number },
): Promise<SlideResult> {
  const { openSlide } = await import("../wsi/slide.ts");
  const { slideTissueMask } = await import("../wsi/tissue.ts");
  const { writePyramidTiff } = await import("../wsi/tiff_writer.ts");
  const slide = await openSlide(path);
  try {
    const S = cfg.patchSize, T = opts.tile;
    const W0 = slide.levels[0].width, H0 = slide.levels[0].height;
    const tissue = await slideTissueMask(slide);
    const nx = Math.ceil(W0 / T), ny = Math.ceil(H0 / T);
    const mw = nx * S, mh = ny * S; // map at downsample T/S
    const map = new Uint8Array(mw * mh);
    const tissueAt = (tx: number, ty: number) => {
      let on = 0, all = 0;
      const x0 = Math.floor((tx * T) / tissue.downsample),
        x1 = Math.ceil(((tx + 1) * T) / tissue.downsample);
      const y0 = Math.floor((ty * T) / tissue.downsample),
        y1 = Math.ceil(((ty + 1) * T) / tissue.downsample);
      for (let y = y0; y < Math.min(y1, tissue.height); y++) {
        for (let x = x0; x < Math.min(x1, tissue.width); x++, all++) {
          if (tissue.mask[y * tissue.width + x]) on++;
        }
      }
      return all ? on / all : 0;
    };
    const tiles: [number, number][] = [];
    for (let ty = 0; ty < ny; ty++) {
      for (let tx = 0; tx < nx; tx++) {
        if (tissueAt(tx, ty) > (opts.minTissue ?? 0.1)) tiles.push([tx, ty]);
      }
    }
    const prog = new Progress(`slide ${path.split("/").pop()}`, tiles.length, {
      unit: "tile",
      enabled: !opts.quiet,
    });
    let tumourTiles = 0;
    for (const [tx, ty] of tiles) {
      const rgb = await slide.readRegionRGB(0, tx * T, ty * T, T, T, [255, 255, 255]);
      const planar = new Float32Array(3 * T * T);
      for (let i = 0; i < T * T; i++) {
        for (let c = 0; c < 3; c++) planar[c * T * T + i] = rgb[i * 3 + c] / 255;
      }
      const small = resizeBilinear(planar, 3, T, T, S, S);
      const logitT = tidy(() => noGrad(() => cls.forward(tensor(small, [1, 3, S, S]))));
      const p = 1 / (1 + Math.exp(-(await logitT.item())));
      logitT.dispose();
      if (p > 0.5) {
        tumourTiles++;
        const u8 = new Uint8Array(S * S * 3);
        for (let i = 0; i < S * S; i++) {
          for (let c = 0; c < 3; c++) u8[i * 3 + c] = Math.round(small[c * S * S + i] * 255);
        }
        const cam = await camOf(cls, cfg, u8, S);
        const patch: HostPatch = {
          item: { id: `tile_${tx}_${ty}`, image: path, label: 1, mask: null },
          rgb: u8,
          gt: null,
          size: S,
        };
        const [lg] = await segmentWithCam(sam, cfg, [patch], [cam], {
          cache: null,
          split: "infer",
          purpose: 400,
          firstIndex: ty * nx + tx,
        });
        for (let y = 0; y < S; y++) {
          for (let x = 0; x < S; x++) {
            map[(ty * S + y) * mw + tx * S + x] = Math.round(255 / (1 + Math.exp(-lg[y * S + x])));
          }
        }
      }
      prog.tick();
    }
    prog.finish();
    const ds = T / S;
    const W = Math.ceil(W0 / ds), H = Math.ceil(H0 / ds);
    const tiff = `${outDir}/probability.tif`;
    const TT = 256;
    await writePyramidTiff(tiff, {
      width: W,
      height: H,
      channels: 1,
      compression: "deflate",
      tileSize: TT,
      fill: 0,
      description: `EP-SAM tumour probability (x255), downsample ${ds} of ${path}`,
    }, (qx, qy) => {
      const t = new Uint8Array(TT * TT);
      for (let y = 0; y < TT; y++) {
        const sy = qy * TT + y;
        if (sy >= mh) break;
        const n = Math.max(0, Math.min(TT, mw - qx * TT));
        t.set(map.subarray(sy * mw + qx * TT, sy * mw + qx * TT + n), y * TT);
      }
      return t;
    });
    // The map's geometry for `deno task export`, then the tumour polygons at the default settings.
    await writeFileAtomic(
      `${outDir}/probability.json`,
      JSON.stringify({
        downsample: ds,
        width: W,
        height: H,
        slide: path,
        width0: W0,
        height0: H0,
      }) +
        "\n",
    );
    const cropped = new Uint8Array(W * H);
    for (let y = 0; y < H; y++) cropped.set(map.subarray(y * mw, y * mw + W), y * W);
    const geometry = { width0: W0, height0: H0, mpp: slide.mpp };
    const polys = polygonsFromMap({ data: cropped, width: W, height: H, downsample: ds }, geometry);
    const xml = `${outDir}/tumour.xml`, geojson = `${outDir}/tumour.geojson`;
    await writePolygonExport(polys, geometry, { xml, geojson });
    if (!opts.quiet) {
      console.error(
        `tumour polygons: ${polys.regions.length} regions, ${polys.holes} holes (min area ` +
          `${polys.minAreaNote}) → ${xml}, ${geojson}`,
      );
    }
    // Overlay on a thumbnail (long side <= 1024).
    const scale = Math.min(1, 1024 / Math.max(W, H));
    const tw = Math.max(1, Math.round(W * scale)), th = Math.max(1, Math.round(H * scale));
    const lvl = slide.levels.reduce((b, l, i) => (l.width >= tw ? i : b), 0);
    const L = slide.levels[lvl];
    const thumbRgb = await slide.readRegionRGB(lvl, 0, 0, L.width, L.height, [255, 255, 255]);
    const pl = new Float32Array(3 * L.width * L.height);
    for (let i = 0; i < L.width * L.height; i++) {
      for (let c = 0; c < 3; c++) pl[c * L.width * L.height + i] = thumbRgb[i * 3 + c];
    }
    const tp = resizeBilinear(pl, 3, L.height, L.width, th, tw);
    const img = new Uint8Array(tw * th * 3);
    for (let i = 0; i < tw * th; i++) {
      for (let c = 0; c < 3; c++) img[i * 3 + c] = Math.round(tp[c * tw * th + i]);
    }
    const mapF = Float32Array.from({ length: tw * th }, (_, i) => {
      const x = Math.min(mw - 1, Math.floor(((i % tw) + 0.5) / tw * W)),
        y = Math.min(mh - 1, Math.floor((Math.floor(i / tw) + 0.5) / th * H));
      return map[y * mw + x] / 255;
    });
    const ov = heatmapOverlay({ data: img, width: tw, height: th, channels: 3 }, mapF, 0.45);
    const overlay = `${outDir}/probability_overlay.png`;
    await writeFileAtomic(overlay, encodePng(ov));
    return {
      tiff,
      overlay,
      xml,
      geojson,
      regions: polys.regions.length,
      width: W,
      height: H,
      downsample: ds,
      tiles: tiles.length,
      tumourTiles,
    };
  } finally {
    await slide.close();
  }
}
