/**
 * An in-memory slide for dataset-preparation tests: a pink tissue disc on white glass, with a
 * level-0 and a 16× downsampled level, read pixel by pixel from a closed form, so a test needs no
 * TIFF on disk and every read is deterministic.
 */
import type { ExtractSlide } from "../../pipeline/wsi/extract.ts";

/**
 * The RGBA level-0 pixel at (x, y) of {@link tissueDiscSlide}: transparent off the slide, glass
 * outside the disc of radius `size`·25/64 at the centre, textured pink inside. `salt` shifts the
 * red channel's texture so that slides of one test hash differently.
 */
export function tissueDiscPixel(
  size: number,
  x: number,
  y: number,
  salt = 0,
): [number, number, number, number] {
  if (x < 0 || y < 0 || x >= size || y >= size) return [0, 0, 0, 0];
  const centre = size / 2, radius = (size * 25) / 64;
  const inside = (x - centre) ** 2 + (y - centre) ** 2 < radius ** 2;
  return inside ? [200 - ((x + salt) & 15), 100 + (y & 7), 170, 255] : [240, 240, 238, 255];
}

/** A `size`×`size` slide of {@link tissueDiscPixel}s with levels at downsamples 1 and 16. */
export function tissueDiscSlide(size: number, salt = 0): ExtractSlide {
  return {
    levels: [
      { width: size, height: size, downsample: 1 },
      { width: size / 16, height: size / 16, downsample: 16 },
    ],
    readRegion(level: number, x0: number, y0: number, w: number, h: number) {
      const ds = level === 0 ? 1 : 16;
      const out = new Uint8Array(w * h * 4);
      for (let j = 0; j < h; j++) {
        for (let i = 0; i < w; i++) {
          out.set(tissueDiscPixel(size, x0 + i * ds, y0 + j * ds, salt), (j * w + i) * 4);
        }
      }
      return Promise.resolve(out);
    },
    close: () => Promise.resolve(),
  };
}

/**
 * ASAP XML of one tumour quadrilateral ("metastases") inside the tissue disc of a `size` slide,
 * its corners scaling with the size, then the `extra` annotation elements as given.
 */
export function tumourQuadXml(size: number, extra = ""): string {
  const corners = [[700, 760], [1350, 700], [1300, 1400], [760, 1300]];
  const coords = corners.map(([x, y], i) =>
    `<Coordinate Order="${i}" X="${(x * size) / 2048}" Y="${(y * size) / 2048}"/>`
  );
  return `<?xml version="1.0"?><ASAP_Annotations><Annotations>
<Annotation Name="t" Type="Polygon" PartOfGroup="metastases"><Coordinates>
${coords.join("")}
</Coordinates></Annotation>${extra}</Annotations></ASAP_Annotations>`;
}
