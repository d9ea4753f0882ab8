/**
 * A tiny trained run for the viewer's tests and benchmark: the `tiny` profile cut down (3 synthetic
 * 1024² slides, few epochs, no re-training iteration), `infer --slide` on its test slide (the
 * heat map found in `<run>/infer/<stem>/`), and a `--predictions` folder for another slide holding
 * a probability map and QuPath GeoJSON made from that slide's ground truth, so a test knows
 * exactly which pixels are tumour. Also a slides folder with an unreadable slide and a symlink out
 * of the folder. `VIEWER_TEST_DIR` reuses a fixture built before (for iterating on the tests).
 */
import { rasterize, readAsapXml } from "../../pipeline/wsi/annotations.ts";
import { openSlide } from "../../pipeline/wsi/slide.ts";
import { writePyramidTiff } from "../../pipeline/wsi/tiff_writer.ts";

const root = new URL("../../", import.meta.url).pathname;
const env = { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", NO_COLOR: "1" };
const dec = new TextDecoder();

export interface ViewerFixture {
  dir: string;
  run: string;
  /** The run's slides folder. */
  slides: string;
  /** A folder with `broken.tif` (not a TIFF) and `escape.tif` (a symlink out of the folder). */
  extraSlides: string;
  /** `--predictions` folder: `<predSlide>/probability.tif` and `tumour.geojson`. */
  predictions: string;
  /** Slide with the ground-truth probability map (stem). */
  predSlide: string;
  /** Its probability map (0 / PROB_VALUE) at downsample PRED_DS. */
  predMap: { data: Uint8Array; width: number; height: number; downsample: number };
  /** Slide `infer --slide` ran on (stem). */
  inferSlide: string;
  /** Seconds the steps took. */
  seconds: { train: number; infer: number; predictions: number };
}

export const PROB_VALUE = 230;
export const PRED_DS = 2;

async function run(args: string[]): Promise<void> {
  const r = await new Deno.Command(Deno.execPath(), {
    args,
    env,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (r.code !== 0) {
    throw new Error(
      `deno ${args.join(" ")} failed:\n${
        (dec.decode(r.stdout) + dec.decode(r.stderr)).slice(-3000)
      }`,
    );
  }
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

/** QuPath GeoJSON of ASAP polygons (closed rings, counter-clockwise outer rings as RFC 7946). */
function geoJsonOf(polys: { points: Float64Array }[]): string {
  const features = polys.map((p) => {
    const ring: number[][] = [];
    for (let i = 0; i < p.points.length; i += 2) ring.push([p.points[i], p.points[i + 1]]);
    let area = 0;
    for (let i = 0; i < ring.length; i++) {
      const [x0, y0] = ring[i], [x1, y1] = ring[(i + 1) % ring.length];
      area += x0 * y1 - x1 * y0;
    }
    if (area < 0) ring.reverse();
    ring.push([...ring[0]]);
    return {
      type: "Feature",
      geometry: { type: "Polygon", coordinates: [ring] },
      properties: {
        objectType: "annotation",
        classification: { name: "Tumor", color: [200, 0, 0] },
      },
    };
  });
  return JSON.stringify({ type: "FeatureCollection", features });
}

/** Builds (or reuses) the fixture. */
export async function viewerFixture(): Promise<ViewerFixture> {
  const reuse = Deno.env.get("VIEWER_TEST_DIR");
  const dir = reuse ?? await Deno.makeTempDir({ prefix: "viewer_test_" });
  const runDir = `${dir}/run`;
  const seconds = { train: 0, infer: 0, predictions: 0 };
  let t0 = performance.now();
  if (!(await exists(`${runDir}/summary.json`))) {
    await run([
      "run",
      "-A",
      "pipeline/cli/train.ts",
      "--profile",
      "tiny",
      "--out",
      runDir,
      "--quiet",
      "--iterations",
      "0",
      "--set",
      "data.synthetic.count=3",
      "--set",
      "data.synthetic.size=1024",
      "--set",
      "classifier.epochs=2",
      "--set",
      "sam.epochs=1",
    ]); // deno-fmt-ignore
  }
  seconds.train = (performance.now() - t0) / 1000;
  const slides = `${runDir}/data/slides`;
  const inferSlide = "synthetic_002", predSlide = "synthetic_001";
  t0 = performance.now();
  if (!(await exists(`${runDir}/infer/${inferSlide}/probability.tif`))) {
    await run([
      "run",
      "-A",
      "pipeline/cli/infer.ts",
      "--run",
      runDir,
      "--quiet",
      "--slide",
      `${slides}/${inferSlide}.tif`,
      "--out",
      `${runDir}/infer/${inferSlide}`,
    ]); // deno-fmt-ignore
  }
  seconds.infer = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const predictions = `${dir}/predictions`;
  const ann = await readAsapXml(`${slides}/${predSlide}.xml`);
  const s = await openSlide(`${slides}/${predSlide}.tif`);
  const W0 = s.levels[0].width, H0 = s.levels[0].height;
  await s.close();
  const width = Math.ceil(W0 / PRED_DS), height = Math.ceil(H0 / PRED_DS);
  const data = rasterize(ann, width, height, PRED_DS).map((v) => (v ? PROB_VALUE : 0));
  if (!(await exists(`${predictions}/${predSlide}/tumour.geojson`))) {
    await Deno.mkdir(`${predictions}/${predSlide}`, { recursive: true });
    await writePyramidTiff(`${predictions}/${predSlide}/probability.tif`, {
      width,
      height,
      channels: 1,
      compression: "deflate",
      tileSize: 256,
      fill: 0,
      description: `test probability map, downsample ${PRED_DS}`,
    }, (qx, qy) => {
      const t = new Uint8Array(256 * 256);
      for (let y = 0; y < 256 && qy * 256 + y < height; y++) {
        const n = Math.max(0, Math.min(256, width - qx * 256));
        const o = (qy * 256 + y) * width + qx * 256;
        t.set(data.subarray(o, o + n), y * 256);
      }
      return t;
    });
    await Deno.writeTextFile(`${predictions}/${predSlide}/tumour.geojson`, geoJsonOf(ann.positive));
  }
  const extraSlides = `${dir}/extra`;
  if (!(await exists(`${extraSlides}/broken.tif`))) {
    await Deno.mkdir(extraSlides, { recursive: true });
    // A TIFF header whose first directory points past the end of the file.
    await Deno.writeFile(
      `${extraSlides}/broken.tif`,
      new Uint8Array([0x49, 0x49, 42, 0, 0xff, 0xff, 0, 0, 1, 2, 3, 4]),
    );
    await Deno.symlink(`${slides}/synthetic_000.tif`, `${extraSlides}/escape.tif`);
  }
  seconds.predictions = (performance.now() - t0) / 1000;
  return {
    dir,
    run: runDir,
    slides,
    extraSlides,
    predictions,
    predSlide,
    predMap: { data, width, height, downsample: PRED_DS },
    inferSlide,
    seconds,
  };
}
