/** Checkpoint loading by content (not extension) and state-dict validation against a model. */
import { InputError } from "./errors.ts";
import { type HostTensor, readSafetensors } from "./safetensors.ts";
import { loadPth, type LoadPthOptions } from "./pth.ts";

/** Options for {@link checkStateDict}. */
export interface CheckStateDictOptions {
  /** Expected keys that may be absent (e.g. buffers the model recomputes). */
  allowMissing?: (key: string) => boolean;
  /** Extra keys in the file that are fine to ignore (e.g. `num_batches_tracked`). */
  allowUnexpected?: (key: string) => boolean;
}

const MAX_LISTED = 40;

/** Shape equality, accepting a `[1]` tensor for a 0-d one as torch's load_state_dict does. */
function sameShape(got: readonly number[], want: readonly number[]): boolean {
  if (want.length === 0 && got.length === 1 && got[0] === 1) return true;
  return got.length === want.length && got.every((d, i) => d === want[i]);
}

function list(title: string, items: string[]): string {
  const shown = items.slice(0, MAX_LISTED).map((s) => `  ${s}`);
  if (items.length > MAX_LISTED) shown.push(`  ... and ${items.length - MAX_LISTED} more`);
  return `${title} (${items.length}):\n${shown.join("\n")}`;
}

/**
 * Checks a loaded state dict against the model's expected `key -> shape` and throws one error
 * listing every missing, unexpected and mis-shaped key, so a wrong checkpoint is diagnosed in one
 * go rather than one key at a time.
 */
export function checkStateDict(
  file: string,
  loaded: Map<string, HostTensor>,
  expected: Map<string, readonly number[]>,
  opts: CheckStateDictOptions = {},
): void {
  const missing: string[] = [];
  const misshaped: string[] = [];
  const unexpected: string[] = [];
  for (const [k, shape] of expected) {
    const t = loaded.get(k);
    if (!t) {
      if (!opts.allowMissing?.(k)) missing.push(k);
    } else if (!sameShape(t.shape, shape)) {
      misshaped.push(`${k}: got [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
    }
  }
  for (const k of loaded.keys()) {
    if (!expected.has(k) && !opts.allowUnexpected?.(k)) unexpected.push(k);
  }
  if (missing.length + misshaped.length + unexpected.length === 0) return;
  const parts = [`${file}: checkpoint does not match the model`];
  if (missing.length) parts.push(list("missing keys", missing));
  if (unexpected.length) parts.push(list("unexpected keys", unexpected));
  if (misshaped.length) parts.push(list("mis-shaped keys", misshaped));
  throw new InputError(parts.join("\n"));
}

/** Checkpoint container, recognised by its first bytes. */
export type CheckpointFormat = "pth" | "safetensors";

/** Identifies a checkpoint by magic bytes; throws a clear error for anything else. */
export async function detectCheckpointFormat(path: string): Promise<CheckpointFormat> {
  const f = await Deno.open(path, { read: true });
  let head: Uint8Array;
  try {
    const buf = new Uint8Array(16);
    let n = 0;
    while (n < buf.length) {
      const got = await f.read(buf.subarray(n));
      if (got === null) break;
      n += got;
    }
    head = buf.subarray(0, n);
  } finally {
    f.close();
  }
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4) {
    return "pth";
  }
  if (head.length >= 9 && head[8] === 0x7b && head[6] === 0 && head[7] === 0) return "safetensors";
  const hex = [...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
  if (head[0] === 0x80 && head[1] <= 5) {
    throw new InputError(
      `${path}: this is a legacy (pre-1.6, non-zip) PyTorch file, which is not supported; ` +
        `re-save it with a recent torch.save or convert it to safetensors`,
    );
  }
  throw new InputError(
    `${path}: not a checkpoint: expected a PyTorch .pth zip (starts with "PK\\x03\\x04") or a ` +
      `safetensors file (8-byte header length, then "{"); first bytes are ${hex || "(empty file)"}`,
  );
}

/** Loads a `.pth` or `.safetensors` state dict, whichever the file's content says it is. */
export async function loadCheckpoint(
  path: string,
  opts: LoadPthOptions = {},
): Promise<Map<string, HostTensor>> {
  return (await detectCheckpointFormat(path)) === "pth"
    ? await loadPth(path, opts)
    : await readSafetensors(path);
}
