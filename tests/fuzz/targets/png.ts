/** PNG: `decodePng` (engine/io/png.ts) on mutated small PNGs and random bytes. */
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";
import { decodePng, encodePng } from "../../../engine/io/png.ts";
import { isInputErrorNaming } from "../wsi_refusal.ts";

const NAME = "fuzz.png";

/** Small valid PNGs: gray, RGB and RGBA, with content so filters and deflate have work. */
function seeds(): Uint8Array[] {
  return ([1, 3, 4] as const).map((channels, k) => {
    const width = 13 + k, height = 9;
    const data = new Uint8Array(width * height * channels).map((_, i) => (i * 37 + k) & 255);
    return encodePng({ data, width, height, channels });
  });
}

const target: FuzzTarget = {
  name: "png",
  description: "PNG files (signature, IHDR limits, IDAT inflation bound) through decodePng",
  input: () => fuzzBytes(seeds(), 512),
  parse(input) {
    // A limit like the default's, scaled down so a mutated header cannot make one run slow.
    decodePng(input, NAME, { maxPixels: 1 << 20 });
  },
  isParserError: (e) => isInputErrorNaming(e, NAME),
};
export default target;
