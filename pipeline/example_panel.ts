/**
 * Example panels: a patch, its CAM, pseudo-label, prediction and ground truth side by side (PNG),
 * as evaluation writes to `examples/` and inference to `overlays/`.
 */
import { encodePng, type Image8 } from "../engine/io/png.ts";
import type { HostPatch } from "./data/host_patches.ts";
import { heatmapOverlay, maskImage, overlay, sideBySide } from "./plots.ts";

const rgbImage = (p: HostPatch): Image8 => ({
  data: p.rgb,
  width: p.size,
  height: p.size,
  channels: 3,
});

/** One example panel row. */
export function examplePanel(
  p: HostPatch,
  cam: { mask: Uint8Array; norm: Float32Array },
  pred: Uint8Array,
  pseudo: Uint8Array | null | undefined,
): Uint8Array {
  const S = p.size, img = rgbImage(p);
  const panels = [
    { title: "image", image: img },
    { title: "CAM", image: overlay(heatmapOverlay(img, cam.norm), cam.mask, [255, 255, 255], 0) },
  ];
  if (pseudo !== undefined) {
    panels.push({
      // A black panel titled "dropped": this patch's pseudo-label failed the IDS filter.
      title: pseudo ? "pseudo" : "dropped",
      image: pseudo ? overlay(img, pseudo, [255, 200, 0]) : maskImage(new Uint8Array(S * S), S, S),
    });
  }
  panels.push({ title: "pred", image: overlay(img, pred, [0, 255, 0]) });
  if (p.gt) panels.push({ title: "truth", image: overlay(img, p.gt, [255, 0, 0]) });
  return encodePng(sideBySide(panels, { scale: 1 }));
}
