/**
 * Training state on disk: a module's weights with its Adam moments and a JSON `meta` in one
 * checksummed safetensors file, read back from the GPU with one readback. Every training stage
 * checkpoints through these (resume per epoch, selected weights).
 */
import { F, keep, noGrad, type Tensor, tensor, tidy } from "../engine/mod.ts";
import type { Module } from "../engine/nn/module.ts";
import type { Adam } from "../engine/optim/adam.ts";
import { type CheckpointTensor, readCheckpoint, writeCheckpoint } from "./run_dir.ts";

/** Reads many tensors back with one readback for the f32 ones. */
async function downloadTensors(
  entries: [string, Tensor][],
): Promise<Map<string, CheckpointTensor>> {
  const out = new Map<string, CheckpointTensor>();
  const f32 = entries.filter(([, t]) => t.dtype === "f32" && t.size > 0);
  if (f32.length) {
    const flat = tidy(() => noGrad(() => F.concat(f32.map(([, t]) => F.reshape(t, [t.size])), 0)));
    const all = await flat.data() as Float32Array;
    flat.dispose();
    let off = 0;
    for (const [k, t] of f32) {
      out.set(k, { shape: t.shape, data: all.slice(off, off + t.size) });
      off += t.size;
    }
  }
  for (const [k, t] of entries) {
    if (out.has(k)) continue;
    if (t.size === 0) out.set(k, { shape: t.shape, data: new Float32Array(0) });
    else {
      const d = await t.data();
      out.set(k, {
        shape: t.shape,
        data: d instanceof Uint32Array ? new Int32Array(d) : d as Float32Array | Int32Array,
      });
    }
  }
  return out;
}

/** State-dict entries of `model` whose names pass `keep` (all by default). */
function entriesOf(
  model: Module,
  keepKey: (k: string) => boolean = () => true,
): [string, Tensor][] {
  return [...model.stateDict()].filter(([k]) => keepKey(k));
}

/**
 * Writes model weights (`model.*`), Adam moments (`opt.m.*`, `opt.v.*`) and `meta` (JSON) to one
 * checksummed safetensors file, atomically.
 */
export async function saveTrainState(
  path: string,
  model: Module,
  opt: Adam | null,
  meta: Record<string, unknown>,
  keepKey: (k: string) => boolean = () => true,
): Promise<void> {
  const entries: [string, Tensor][] = entriesOf(model, keepKey).map(([k, t]) => [`model.${k}`, t]);
  const steps: Record<string, number> = {};
  if (opt) {
    const names = new Map(model.namedParameters().map(([k, t]) => [t, k]));
    for (const [p, st] of opt.state) {
      const k = names.get(p);
      if (!k) continue;
      entries.push([`opt.m.${k}`, st.expAvg], [`opt.v.${k}`, st.expAvgSq]);
      steps[k] = st.step;
    }
  }
  const tensors = await downloadTensors(entries);
  await writeCheckpoint(path, tensors, { meta: JSON.stringify({ ...meta, steps }) });
}

/**
 * Loads what {@link saveTrainState} wrote; returns its `meta`. Every model key must be in the
 * checkpoint except those `mayLack` accepts: a SAM stage checkpoints only the keys it trains
 * (`trainedKeys`), the rest being the base weights the caller's model already holds. Any other
 * absent key is an error (it would stay at its initial values without a word).
 */
export async function loadTrainState(
  path: string,
  model: Module,
  opt: Adam | null,
  mayLack: (key: string) => boolean = () => false,
): Promise<Record<string, unknown>> {
  const { tensors, metadata } = await readCheckpoint(path);
  const sd = new Map<string, { shape: readonly number[]; data: Float32Array | Int32Array }>();
  for (const [k, t] of tensors) {
    if (k.startsWith("model.")) sd.set(k.slice(6), t as never);
  }
  const own = model.stateDict();
  const unexpected = [...sd.keys()].filter((k) => !own.has(k));
  if (unexpected.length) {
    throw new Error(
      `checkpoint ${path} does not fit this model (e.g. ${
        unexpected.slice(0, 3).join(", ")
      }); was it written with another config?`,
    );
  }
  const absent = [...own.keys()].filter((k) => !sd.has(k) && !mayLack(k));
  if (absent.length) {
    throw new Error(
      `checkpoint ${path} lacks ${absent.length} of this model's weights (${
        absent.slice(0, 5).join(", ")
      }${absent.length > 5 ? ", ..." : ""}); was it written with another config or truncated?`,
    );
  }
  model.loadStateDict(sd as never, { strict: true, allowMissing: mayLack, file: path });
  let meta: Record<string, unknown> = {};
  try {
    meta = JSON.parse(metadata.meta ?? "{}");
  } catch {
    throw new Error(`checkpoint ${path}: unreadable metadata`);
  }
  if (opt) {
    const steps = (meta.steps ?? {}) as Record<string, number>;
    for (const [k, p] of model.namedParameters()) {
      const m = tensors.get(`opt.m.${k}`), v = tensors.get(`opt.v.${k}`);
      if (!m || !v) continue;
      const old = opt.state.get(p);
      old?.expAvg.dispose();
      old?.expAvgSq.dispose();
      opt.state.set(p, {
        step: steps[k] ?? 0,
        expAvg: keep(tensor(m.data as Float32Array, p.shape)),
        expAvgSq: keep(tensor(v.data as Float32Array, p.shape)),
      });
    }
  }
  return meta;
}
