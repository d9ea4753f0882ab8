/**
 * JPEG tiles: `decodeJpegTile` (pipeline/wsi/jpeg_decoder.ts) on mutated baseline JPEGs, with
 * the tile size the slide reader passes (a frame claiming another size is refused up front).
 */
import { encode } from "jpeg-js";
import type { FuzzTarget } from "../target.ts";
import { fuzzBytes } from "../mutate.ts";
import { decodeJpegTile } from "../../../pipeline/wsi/jpeg_decoder.ts";
import { isInputError } from "../../../engine/io/errors.ts";

const SIZE = 32;

/** Small baseline JPEGs at a few qualities (jpeg-js writes 4:4:4 YCbCr with its own tables). */
function seeds(): Uint8Array[] {
  const rgba = new Uint8Array(SIZE * SIZE * 4).map((_, i) =>
    (i & 3) === 3
      ? 255
      : (((i >> 2) % SIZE) * 7 + Math.floor(i / (4 * SIZE)) * 5 + (i & 3) * 60) & 255
  );
  return [30, 75, 95].map((q) => {
    const j = encode({ data: rgba, width: SIZE, height: SIZE }, q).data;
    return new Uint8Array(j.buffer, j.byteOffset, j.byteLength);
  });
}

const target: FuzzTarget = {
  name: "jpeg",
  description: `baseline JPEG tiles (${SIZE}x${SIZE}) through decodeJpegTile`,
  input: () => fuzzBytes(seeds(), 1024),
  parse(input) {
    decodeJpegTile(input, undefined, "ycbcr", { width: SIZE, height: SIZE });
  },
  // The decoder is given bytes, not a file: its refusals are InputErrors saying what is wrong
  // (the slide reader prefixes the file and tile).
  isParserError: isInputError,
};
export default target;
