/**
 * Loading SAM checkpoints (the official `.pth` files or safetensors) into a {@link Sam}, adapting
 * position parameters when the checkpoint was trained at another input size.
 */
import { loadCheckpoint } from "../../engine/io/state_dict.ts";
import { toFloat32 } from "../../engine/io/safetensors.ts";
import type { LoadPthOptions } from "../../engine/io/pth.ts";
import type { StateEntry } from "../../engine/nn/module.ts";
import type { SamConfig } from "./configs.ts";
import { Sam } from "./sam.ts";

/** Options for {@link loadSam}. */
export interface LoadSamOptions {
  /** Require every key to match (default true). Mis-shaped keys always throw. */
  strict?: boolean;
  /** Seed for the initial (overwritten) weights. */
  seed?: number;
  /** Where the state dict sits inside a larger `.pth` checkpoint, e.g. `"model"`. */
  pth?: LoadPthOptions;
}

/**
 * torch's linear interpolation weights (align_corners=False, source index clamped at 0):
 * for each output index, (i0, i1, λ).
 */
function linearTaps(inSize: number, outSize: number): [number, number, number][] {
  const scale = inSize / outSize;
  return Array.from({ length: outSize }, (_, o) => {
    const src = Math.max((o + 0.5) * scale - 0.5, 0);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    return [i0, i1, src - i0];
  });
}

/**
 * Resizes `[L, C]` along L by linear interpolation, as `get_rel_pos` does
 * (`F.interpolate(rel_pos.reshape(1, L, -1).permute(0, 2, 1), size=L', mode="linear")`).
 */
export function resizeRelPos(
  data: Float32Array,
  len: number,
  channels: number,
  newLen: number,
): Float32Array {
  const out = new Float32Array(newLen * channels);
  linearTaps(len, newLen).forEach(([i0, i1, l], o) => {
    for (let c = 0; c < channels; c++) {
      out[o * channels + c] = (1 - l) * data[i0 * channels + c] + l * data[i1 * channels + c];
    }
  });
  return out;
}

/**
 * Resizes an NHWC `[1, H, W, C]` position grid to `[1, H', W', C]` by bilinear interpolation
 * (`F.interpolate(pos.permute(0, 3, 1, 2), (H', W'), mode="bilinear", align_corners=False)`, the
 * usual way of running a 1024-trained encoder at another img_size).
 */
export function resizePosEmbed(
  data: Float32Array,
  h: number,
  w: number,
  c: number,
  nh: number,
  nw: number,
): Float32Array {
  const ty = linearTaps(h, nh), tx = linearTaps(w, nw);
  const out = new Float32Array(nh * nw * c);
  for (let y = 0; y < nh; y++) {
    const [y0, y1, ly] = ty[y];
    for (let x = 0; x < nw; x++) {
      const [x0, x1, lx] = tx[x];
      const o = (y * nw + x) * c;
      const a = (y0 * w + x0) * c,
        b = (y0 * w + x1) * c,
        d = (y1 * w + x0) * c,
        e = (y1 * w + x1) * c;
      for (let k = 0; k < c; k++) {
        out[o + k] = (1 - ly) * ((1 - lx) * data[a + k] + lx * data[b + k]) +
          ly * ((1 - lx) * data[d + k] + lx * data[e + k]);
      }
    }
  }
  return out;
}

/**
 * Replaces `image_encoder.pos_embed` and `image_encoder.blocks.*.attn.rel_pos_{h,w}` whose size
 * differs from the model's by resized copies. Other keys, and keys of another rank or channel
 * count, are left for the state-dict check to report.
 */
function adaptPositionParams(
  sd: Map<string, StateEntry>,
  expected: Map<string, readonly number[]>,
): string[] {
  const notes: string[] = [];
  for (const [k, e] of sd) {
    const want = expected.get(k);
    if (!want) continue;
    const got = e.shape;
    const same = got.length === want.length && got.every((d, i) => d === want[i]);
    if (same) continue;
    const f32 =
      () => (e.dtype !== undefined ? toFloat32(e) : Float32Array.from(e.data as ArrayLike<number>));
    if (
      k === "image_encoder.pos_embed" && got.length === 4 && got[0] === 1 && want[0] === 1 &&
      got[3] === want[3]
    ) {
      sd.set(k, {
        shape: [...want],
        data: resizePosEmbed(f32(), got[1], got[2], got[3], want[1], want[2]),
      });
      notes.push(`${k}: [${got}] → [${want}] (bilinear)`);
    } else if (
      /^image_encoder\.blocks\.\d+\.attn\.rel_pos_[hw]$/.test(k) && got.length === 2 &&
      got[1] === want[1]
    ) {
      sd.set(k, { shape: [...want], data: resizeRelPos(f32(), got[0], got[1], want[0]) });
      notes.push(`${k}: [${got}] → [${want}] (linear)`);
    }
  }
  return notes;
}

/**
 * Reads a `.pth` or `.safetensors` SAM checkpoint (recognised by content), builds the model for
 * `config` and loads the weights; errors name the file and list every mismatching key. The model
 * is returned in eval mode.
 */
export async function loadSam(
  path: string,
  config: SamConfig,
  opts: LoadSamOptions = {},
): Promise<Sam> {
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) throw new Error(`${path}: not a file`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${path}: checkpoint file not found`);
    throw e;
  }
  const sd: Map<string, StateEntry> = await loadCheckpoint(path, opts.pth);
  const sam = new Sam(config, opts.seed ?? 0);
  try {
    const expected = new Map<string, readonly number[]>();
    for (const [k, t] of sam.stateDict()) expected.set(k, t.shape);
    adaptPositionParams(sd, expected);
    sam.loadStateDict(sd, { strict: opts.strict ?? true, file: path });
  } catch (e) {
    sam.dispose();
    throw e;
  }
  return sam.eval();
}
