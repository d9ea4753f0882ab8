/**
 * LZW / Deflate / PackBits / raw tiles: `decodeTileData` (pipeline/wsi/tile_codecs.ts). The first
 * input byte picks the codec and predictor, the rest is the tile's data; the tile is 24x24 RGB.
 */
import { zlibSync } from "fflate";
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";
import { decodeTileData, TILE_CODECS, TileDataError } from "../../../pipeline/wsi/tile_codecs.ts";

const W = 24, SPP = 3, BYTES = W * W * SPP;
const CODECS = [TILE_CODECS.lzw, TILE_CODECS.deflate, TILE_CODECS.packbits, TILE_CODECS.none];

/** TIFF LZW of `data` using literal codes only, with a clear code before the width would grow. */
function lzwLiterals(data: Uint8Array): Uint8Array {
  const codes: number[] = [256];
  let next = 258;
  for (let i = 0; i < data.length; i++) {
    if (next + 1 >= 511) {
      codes.push(256);
      next = 258;
    }
    codes.push(data[i]);
    if (i > 0 && codes[codes.length - 2] !== 256) next++;
  }
  codes.push(257);
  const out = new Uint8Array(Math.ceil((codes.length * 9) / 8) + 1);
  let bit = 0;
  for (const c of codes) {
    for (let k = 8; k >= 0; k--, bit++) if ((c >> k) & 1) out[bit >> 3] |= 0x80 >> (bit & 7);
  }
  return out;
}

function packbits(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < data.length; i += 128) {
    const run = data.subarray(i, i + 128);
    out.push(run.length - 1, ...run);
  }
  return new Uint8Array(out);
}

function seeds(): Uint8Array[] {
  const px = new Uint8Array(BYTES).map((_, i) =>
    ((i % (W * SPP)) * 3 + Math.floor(i / 72) * 11) & 255
  );
  const data = [lzwLiterals(px), zlibSync(px), packbits(px), px];
  return data.flatMap((d, k) => [0, 4].map((pred) => new Uint8Array([k | pred, ...d])));
}

const target: FuzzTarget = {
  name: "tile_codecs",
  description: "LZW/Deflate/PackBits/raw TIFF tile data (24x24 RGB) through decodeTileData",
  input: () => fuzzBytes(seeds(), 2048),
  parse(input) {
    if (input.length < 1) throw new TileDataError("empty input");
    const codec = CODECS[input[0] & 3], predictor = input[0] & 4 ? 2 : 1;
    decodeTileData(codec, input.subarray(1), BYTES, predictor, SPP, W * SPP);
  },
  isParserError: (e) => e instanceof TileDataError,
};
export default target;
