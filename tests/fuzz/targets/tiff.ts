/**
 * TIFF slides: `openSlide` (pipeline/wsi/slide.ts) directory parsing, then a read of every level,
 * on mutated small pyramids (JPEG, Deflate, raw, sparse) written by the project's TIFF writer.
 * Each input is written to one temporary file (the reader takes a path).
 */
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";
import { openSlide } from "../../../pipeline/wsi/slide.ts";
import { type TiffCompression, writePyramidTiff } from "../../../pipeline/wsi/tiff_writer.ts";
import { isInputErrorNaming } from "../wsi_refusal.ts";

const dir = Deno.makeTempDirSync({ prefix: "fuzz_tiff_" });
const PATH = `${dir}/fuzz.tif`;
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* already gone */ }
});

/** 80x48 RGB pyramids with 16-pixel tiles: small, yet several tiles and levels. */
async function buildSeeds(): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const kinds: [TiffCompression, boolean][] = [["jpeg", false], ["deflate", true], ["none", false]];
  for (const [compression, sparse] of kinds) {
    const p = `${dir}/seed_${compression}.tif`;
    await writePyramidTiff(
      p,
      { width: 80, height: 48, channels: 3, compression, tileSize: 16, mpp: 0.25 },
      (tx, ty) =>
        sparse && tx === 1 && ty === 1
          ? null
          : new Uint8Array(16 * 16 * 3).map((_, i) => (i * 7 + tx * 40 + ty * 90) & 255),
    );
    out.push(Deno.readFileSync(p));
  }
  return out;
}

const SEEDS = await buildSeeds();

const target: FuzzTarget = {
  name: "tiff",
  description: "tiled TIFF files through openSlide and readRegion of every level",
  input: () => fuzzBytes(SEEDS, 4096),
  async parse(input) {
    Deno.writeFileSync(PATH, input);
    const s = await openSlide(PATH);
    try {
      for (let l = 0; l < s.levels.length; l++) {
        const { width, height, downsample } = s.levels[l];
        // At most 128x128 from each level, around its middle: bounded per input.
        const w = Math.min(width, 128), h = Math.min(height, 128);
        const x = Math.floor(((width - w) / 2) * downsample);
        const y = Math.floor(((height - h) / 2) * downsample);
        await s.readRegion(l, x, y, w, h);
      }
    } finally {
      await s.close();
    }
  },
  isParserError: (e) => isInputErrorNaming(e, PATH),
};
export default target;
