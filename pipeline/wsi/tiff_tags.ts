/**
 * TIFF tag numbers and field types (TIFF 6.0, BigTIFF), shared by the slide reader
 * (`slide.ts`) and the pyramid writer (`tiff_writer.ts`).
 */

/** Tag numbers by their TIFF 6.0 names. */
export const TAG = {
  NewSubfileType: 254,
  ImageWidth: 256,
  ImageLength: 257,
  BitsPerSample: 258,
  Compression: 259,
  Photometric: 262,
  ImageDescription: 270,
  StripOffsets: 273,
  SamplesPerPixel: 277,
  XResolution: 282,
  YResolution: 283,
  PlanarConfiguration: 284,
  ResolutionUnit: 296,
  Predictor: 317,
  TileWidth: 322,
  TileLength: 323,
  TileOffsets: 324,
  TileByteCounts: 325,
  SubIFDs: 330,
  SampleFormat: 339,
  JPEGTables: 347,
  YCbCrSubSampling: 530,
} as const;

/** Field types used by the writer (BYTE, ASCII, SHORT, LONG, RATIONAL; BigTIFF's LONG8). */
export const TYPE = { BYTE: 1, ASCII: 2, SHORT: 3, LONG: 4, RATIONAL: 5, LONG8: 16 } as const;

/** Bytes per value of each field type (RATIONAL: the numerator/denominator pair). */
export const TYPE_SIZES: Record<number, number> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
  13: 4,
  16: 8,
  17: 8,
  18: 8,
};
