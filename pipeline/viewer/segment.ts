/**
 * Click-to-segment and the gallery's final masks, on the GPU, one job at a time.
 *
 * A request becomes a job the page polls (`/api/jobs/<id>`): queued → embedding (the encoder
 * pass: about a minute for ViT-B on a software adapter; the page shows the elapsed time against the
 * last pass's) → decoding → done. Image embeddings are cached per patch in an LRU bounded in bytes
 * (a `SamPredictor` each), so further clicks on the same patch only run the decoder. A job whose
 * page stopped polling (closed tab, new click) is dropped before it starts; one already on the GPU
 * finishes (a pass cannot be interrupted) and its embedding stays cached.
 */
import { initGpu, sync } from "../../engine/mod.ts";
import { SamPredictor } from "../../model/sam/predictor.ts";
import type { Sam } from "../../model/sam/sam.ts";
import { parseSamConfig, SAM_CONFIGS } from "../../model/sam/configs.ts";
import { loadSam } from "../../model/sam/checkpoint.ts";
import { dice } from "../metrics.ts";
import { resizeBilinear } from "../data/patches.ts";
import { positives } from "../data/patches.ts";
import { type HostPatch, loadPatches } from "../data/host_patches.ts";
import { readCam } from "../classifier/cam.ts";
import { finalTag, loadStageSam, samBest } from "../sam/build.ts";
import { segmentAndScore } from "../sam/score.ts";
import type { Catalog, RunEntry, Split } from "./catalog.ts";
import { confinedFile } from "./safe_path.ts";

/** A prompt point in the patch's pixels (model patch size), label 1 positive / 0 negative. */
export interface Point {
  x: number;
  y: number;
  label: 0 | 1;
}

export type JobState =
  | "queued"
  | "loading"
  | "embedding"
  | "decoding"
  | "done"
  | "error"
  | "dropped";

export interface Job {
  id: string;
  kind: "segment" | "final";
  state: JobState;
  /** What runs now, for the page. */
  message: string;
  created: number;
  started: number | null;
  /** Seconds the last encoder pass took (an estimate for this one), null before the first. */
  estimateSeconds: number | null;
  lastPoll: number;
  result?: unknown;
  error?: string;
}

/** The segmentation result: a size×size 0/1 mask and SAM's predicted IoU. */
export interface SegmentResult {
  size: number;
  mask: Uint8Array;
  iou: number;
  embeddingCached: boolean;
  /** Level-0 square the mask covers, for a click on a slide. */
  origin?: { x: number; y: number; side: number };
}

/** A final-mask result per patch of a split (the evaluate stage's CAM-prompted SAM). */
export interface FinalMasks {
  split: Split;
  masks: Map<string, Uint8Array>;
  dice: Map<string, number>;
}

export interface SegmentServiceOptions {
  /** `--sam-checkpoint`: a SAM checkpoint to use instead of the run's final SAM. */
  samCheckpoint?: string;
  /** SAM config of that checkpoint: vit_b (default), vit_l, vit_h, or a JSON file. */
  samModel?: string;
  /** Embedding cache budget in bytes (default 256 MiB). */
  embeddingBytes?: number;
  /** Milliseconds without a poll after which a queued job is dropped (default 20 s). */
  abandonMs?: number;
}

const MAX_JOBS = 256;

/** Byte-bounded LRU of predictors (their embeddings live on the GPU; evicted ones are freed). */
class EmbeddingCache {
  #map = new Map<string, { p: SamPredictor; bytes: number }>();
  #bytes = 0;
  constructor(readonly maxBytes: number) {}
  get bytes(): number {
    return this.#bytes;
  }
  get(key: string): SamPredictor | undefined {
    const e = this.#map.get(key);
    if (!e) return undefined;
    this.#map.delete(key);
    this.#map.set(key, e);
    return e.p;
  }
  set(key: string, p: SamPredictor): void {
    const bytes = p.imageEmbeddings.size * 4;
    this.#map.set(key, { p, bytes });
    this.#bytes += bytes;
    while (this.#bytes > this.maxBytes && this.#map.size > 1) {
      const [k, e] = this.#map.entries().next().value!;
      this.#map.delete(k);
      this.#bytes -= e.bytes;
      e.p.dispose();
    }
  }
}

export class SegmentService {
  readonly jobs = new Map<string, Job>();
  readonly finals = new Map<Split, FinalMasks>();
  #queue: Promise<void> = Promise.resolve();
  #sam: Promise<Sam> | null = null;
  #cache: EmbeddingCache;
  #lastEmbedSeconds: number | null = null;
  #nextId = 1;
  #abandonMs: number;
  #finalJobs = new Map<Split, Job>();

  constructor(readonly catalog: Catalog, readonly opts: SegmentServiceOptions = {}) {
    this.#cache = new EmbeddingCache(opts.embeddingBytes ?? 256 * 2 ** 20);
    this.#abandonMs = opts.abandonMs ?? 20_000;
  }

  /** Where the SAM comes from, or null when there is none (no run, no checkpoint). */
  samSource(): string | null {
    if (this.opts.samCheckpoint) return this.opts.samCheckpoint;
    const r = this.catalog.run;
    return r ? `${r.dir}/${samBest(finalTag(r.cfg.iterations))}` : null;
  }

  /** Model patch side (what masks and patch points are measured in). */
  patchSize(): number {
    return this.catalog.run?.cfg.patchSize ?? 512;
  }

  /** Level-0 side of the patch a click on a slide cuts. */
  slidePatchSide(): number {
    return this.catalog.run?.patchLevel0 ?? 512;
  }

  /** Bytes of embeddings cached now. */
  get embeddingBytes(): number {
    return this.#cache.bytes;
  }

  async #loadSam(): Promise<Sam> {
    this.#sam ??= (async () => {
      await initGpu();
      const ck = this.opts.samCheckpoint;
      if (ck) {
        const name = this.opts.samModel ?? "vit_b";
        // A named config, or a JSON file holding one (encoder, prompt_encoder, mask_decoder).
        const cfg = name.endsWith(".json")
          ? parseSamConfig(JSON.parse(await Deno.readTextFile(name)), name)
          : SAM_CONFIGS[name];
        if (!cfg) {
          throw new Error(
            `--sam-model: unknown SAM config "${name}" (vit_b, vit_l, vit_h or a .json file)`,
          );
        }
        return (await loadSam(ck, cfg)).eval();
      }
      const run = this.catalog.run;
      if (!run) throw new Error("no SAM: start the viewer with --run or --sam-checkpoint");
      const path = await confinedFile(this.samSource()!, run.roots);
      if (!path) {
        throw new Error(`${run.dir}: no final SAM (${samBest(finalTag(run.cfg.iterations))})`);
      }
      return await loadStageSam(run.cfg, path);
    })();
    // A failed load is reported to this job and retried by the next.
    this.#sam.catch(() => (this.#sam = null));
    return await this.#sam;
  }

  #newJob(kind: Job["kind"]): Job {
    if (this.jobs.size >= MAX_JOBS) {
      for (const [id, j] of this.jobs) {
        if (j.state === "done" || j.state === "error" || j.state === "dropped") {
          this.jobs.delete(id);
        }
        if (this.jobs.size < MAX_JOBS / 2) break;
      }
    }
    const now = Date.now();
    const job: Job = {
      id: `j${this.#nextId++}`,
      kind,
      state: "queued",
      message: "queued",
      created: now,
      started: null,
      estimateSeconds: this.#lastEmbedSeconds,
      lastPoll: now,
    };
    this.jobs.set(job.id, job);
    return job;
  }

  /** Runs `fn` after every earlier GPU job (the engine has one device and one queue). */
  #enqueue(job: Job, fn: () => Promise<unknown>): void {
    this.#queue = this.#queue.then(async () => {
      if (Date.now() - job.lastPoll > this.#abandonMs || job.state === "dropped") {
        job.state = "dropped";
        job.message = "dropped: nobody is waiting for it";
        return;
      }
      job.started = Date.now();
      try {
        job.result = await fn();
        job.state = "done";
        job.message = "done";
      } catch (e) {
        job.state = "error";
        job.error = (e as Error).message;
        job.message = job.error;
      }
    });
  }

  /** Marks a job as polled (keeps it alive) and returns it. */
  poll(id: string): Job | undefined {
    const j = this.jobs.get(id);
    if (j) j.lastPoll = Date.now();
    return j;
  }

  /** Cancels a queued job (a started GPU pass finishes; its embedding stays cached). */
  cancel(id: string): boolean {
    const j = this.jobs.get(id);
    if (!j) return false;
    if (j.state === "queued") {
      j.state = "dropped";
      j.message = "cancelled";
    }
    return true;
  }

  /**
   * Segments one patch: `key` names it in the embedding cache, `image` loads its RGB at the model
   * patch size when the embedding is not cached.
   */
  segment(
    key: string,
    image: () => Promise<Uint8Array>,
    points: Point[],
    extra: { origin?: { x: number; y: number; side: number } } = {},
  ): Job {
    const job = this.#newJob("segment");
    this.#enqueue(job, async (): Promise<SegmentResult> => {
      job.state = "loading";
      job.message = "loading SAM";
      const sam = await this.#loadSam();
      const S = this.patchSize();
      let pred = this.#cache.get(key);
      const cached = !!pred;
      if (!pred) {
        const rgb = await image();
        job.state = "embedding";
        job.message = "computing the image embedding";
        const t0 = performance.now();
        pred = new SamPredictor(sam);
        pred.setImage(rgb, S, S);
        await sync();
        this.#lastEmbedSeconds = (performance.now() - t0) / 1000;
        this.#cache.set(key, pred);
      }
      job.state = "decoding";
      job.message = "decoding the mask";
      const out = pred.predict({
        pointCoords: points.flatMap((p) => [p.x, p.y]),
        pointLabels: points.map((p) => p.label),
        multimask: false,
      });
      try {
        const logits = await out.masksLogits.data() as Float32Array;
        const iou = await out.iou.data() as Float32Array;
        return {
          size: S,
          mask: Uint8Array.from(logits.subarray(0, S * S), (v) => (v > 0 ? 1 : 0)),
          iou: iou[0],
          embeddingCached: cached,
          ...extra,
        };
      } finally {
        out.lowResLogits.dispose();
        out.masksLogits.dispose();
        out.iou.dispose();
      }
    });
    return job;
  }

  /**
   * The final SAM's masks of a split's positives, prompted from their stored CAMs exactly as the
   * evaluate stage does (same seeds), with each patch's Dice against its ground truth. One job per
   * split; later calls return it.
   */
  finalMasks(split: Split): Job {
    const have = this.#finalJobs.get(split);
    if (have && have.state !== "error" && have.state !== "dropped") {
      have.lastPoll = Date.now();
      return have;
    }
    const job = this.#newJob("final");
    this.#finalJobs.set(split, job);
    const run = this.catalog.run;
    this.#enqueue(job, async () => {
      if (!run) throw new Error("no run (--run) to compute final masks for");
      job.state = "loading";
      job.message = "loading SAM";
      const sam = await this.#loadSam();
      const S = run.cfg.patchSize;
      const items = positives(run.splits[split]);
      const withCam: HostPatch[] = [], cams = [];
      for (const it of items) {
        try {
          const cam = await readCam(runPaths(run), split, it, S);
          const [p] = await loadPatches([it], S);
          withCam.push(p);
          cams.push(cam);
        } catch { /* no CAM yet (run still training): no final mask for this patch */ }
      }
      job.state = "decoding";
      job.message = `segmenting ${withCam.length} patches`;
      const masks = new Map<string, Uint8Array>(), dices = new Map<string, number>();
      if (withCam.length) {
        const r = await segmentAndScore(sam, run.cfg, withCam, cams, "viewer", true);
        withCam.forEach((p, i) => {
          masks.set(p.item.id, r.preds[i]);
          if (p.gt) dices.set(p.item.id, dice(r.logits[i], p.gt));
        });
      }
      const f: FinalMasks = { split, masks, dice: dices };
      this.finals.set(split, f);
      return { split, patches: masks.size };
    });
    return job;
  }
}

/** The run-folder path helper the stage functions take. */
function runPaths(run: RunEntry): { path(...p: string[]): string } {
  return { path: (...p: string[]) => [run.dir, ...p].join("/") };
}

/** RGB of a level-0 square of a slide resized to the model patch size (as `infer --slide`). */
export function slidePatchRgb(rgb: Uint8Array, side: number, size: number): Uint8Array {
  if (side === size) return rgb;
  const planar = new Float32Array(3 * side * side);
  for (let i = 0; i < side * side; i++) {
    for (let c = 0; c < 3; c++) planar[c * side * side + i] = rgb[i * 3 + c];
  }
  const small = resizeBilinear(planar, 3, side, side, size, size);
  const out = new Uint8Array(size * size * 3);
  for (let i = 0; i < size * size; i++) {
    for (let c = 0; c < 3; c++) {
      out[i * 3 + c] = Math.max(0, Math.min(255, Math.round(small[c * size * size + i])));
    }
  }
  return out;
}
