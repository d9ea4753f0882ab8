/**
 * `--max-image-pixels N`, shared by the CLIs that read one `--image`: the largest image decoded
 * (a PNG's header is checked against it before any pixel is inflated).
 */
import { maxImagePixels } from "../../engine/io/png.ts";
import { type Flags, numberFlag } from "./args.ts";

/** The pixel limit for `--image`: the flag, else `EPSAM_MAX_IMAGE_PIXELS`, else the default. */
export function maxImagePixelsFlag(flags: Flags): number {
  return numberFlag(flags, "max-image-pixels", { def: maxImagePixels(), min: 1, integer: true })!;
}
