/**
 * Inference over a folder of slides, shardable: shard K of N does the slides the balanced
 * assignment (file size, ties by a stable hash of the name) gives it, each into `<out>/<slide>/`,
 * and records them in `<out>/shards/infer/shard_K_of_N.json`. Unsharded, a folder holding shards
 * is merged (every slide once, checksums intact) instead of recomputed; `<out>/slides.json` lists
 * every slide's outputs and tile counts.
 */
import { writeFileAtomic } from "../../engine/io/atomic.ts";
import { listSlideFiles } from "../wsi/extract.ts";
import { stem } from "../wsi/splits.ts";
import { assignBalanced, type Shard, shardLabel } from "../shard/shard.ts";
import { isSharded, mergeShards, relativeTo, ShardRecorder } from "../shard/manifest.ts";

/** What one slide's inference gives (see pipeline/infer/slide.ts). */
export interface SlideOutputs {
  tiff: string;
  overlay: string;
  tiles: number;
  tumourTiles: number;
}

const INFER_PASS = "infer";

/** One line of slides.json. */
export interface SlideIndexEntry {
  slide: string;
  tiff: string;
  overlay: string;
  tiles: number;
  tumourTiles: number;
}

/** Runs `infer` on the slides under `dir` (or this shard's share of them). */
export async function inferSlides(o: {
  dir: string;
  out: string;
  shard: Shard | null;
  infer: (path: string, outDir: string) => Promise<SlideOutputs>;
  log: (m: string) => void;
}): Promise<{ index: string | null; slides: number }> {
  const paths = await listSlideFiles(o.dir);
  if (!paths.length) throw new Error(`${o.dir}: no slides (*.tif, *.tiff, *.svs)`);
  const ids = paths.map(stem);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new Error(`${o.dir}: two slides are named ${dup}; their outputs would collide`);
  const sizes = await Promise.all(paths.map(async (p) => (await Deno.stat(p)).size));
  const owner = o.shard
    ? assignBalanced(ids.map((id, i) => ({ id, weight: sizes[i] })), o.shard.count)
    : null;
  const entry = (id: string, r: SlideOutputs): SlideIndexEntry => ({
    slide: id,
    tiff: relativeTo(o.out, r.tiff),
    overlay: relativeTo(o.out, r.overlay),
    tiles: r.tiles,
    tumourTiles: r.tumourTiles,
  });
  let entries: SlideIndexEntry[];
  if (!o.shard && await isSharded(o.out, INFER_PASS)) {
    const merged = await mergeShards(o.out, INFER_PASS, ids);
    entries = ids.map((id) => merged.get(id)!.record as SlideIndexEntry);
  } else {
    const rec = o.shard ? await ShardRecorder.start(o.out, INFER_PASS, o.shard) : null;
    entries = [];
    for (const [i, path] of paths.entries()) {
      if (owner && owner[i] !== o.shard!.index) continue;
      const r = await o.infer(path, `${o.out}/${ids[i]}`);
      const e = entry(ids[i], r);
      entries.push(e);
      await rec?.add(ids[i], [e.tiff, e.overlay], e);
      o.log(`slide ${path}: ${r.tumourTiles}/${r.tiles} tissue tiles tumour; ${r.tiff}`);
    }
    if (rec) {
      const m = await rec.finish();
      o.log(`infer: shard ${shardLabel(o.shard!)}: ${rec.size} slides; ${m}`);
      return { index: null, slides: rec.size };
    }
  }
  const index = `${o.out}/slides.json`;
  await writeFileAtomic(index, JSON.stringify(entries, null, 2) + "\n");
  return { index, slides: entries.length };
}
