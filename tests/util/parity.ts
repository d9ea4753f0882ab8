/**
 * Parity checks against a reference fixture's `case.safetensors` (outputs of the PyTorch code):
 * its f32 arrays by name, and comparisons of our results with them at stated tolerances.
 */
import type { Tensor } from "../../engine/mod.ts";
import { readSafetensors, toFloat32 } from "../../engine/io/safetensors.ts";
import { fixturePath } from "../fixtures.ts";
import { assertClose, maxAbs } from "./gpu.ts";

/** The F32 tensors of `../shared/fixtures/<fixture>/case.safetensors` by name. */
export async function readF32Case(fixture: string): Promise<Map<string, Float32Array>> {
  const raw = await readSafetensors(fixturePath(fixture, "case.safetensors"));
  const out = new Map<string, Float32Array>();
  for (const [k, v] of raw) if (v.dtype === "F32") out.set(k, toFloat32(v));
  return out;
}

/** One result, the case's array of the same name, and the tolerances it is held to. */
export type CaseCheck = [name: string, got: Tensor | ArrayLike<number>, atol: number, rtol: number];

const isTensor = (x: Tensor | ArrayLike<number>): x is Tensor =>
  typeof (x as Tensor).data === "function";

/**
 * Asserts each result close to the case's array of its name (see `assertClose`), in order; a
 * failure names `prefix` and the array. A name the case lacks fails.
 */
export async function assertMatchesCase(
  c: Map<string, Float32Array>,
  checks: CaseCheck[],
  prefix = "",
): Promise<void> {
  for (const [name, got, atol, rtol] of checks) {
    const want = c.get(name);
    if (!want) throw new Error(`the case has no ${name}`);
    const values = isTensor(got) ? await got.data() : got;
    assertClose(values, want, { atol, rtol, what: `${prefix}${name}` });
  }
}

/**
 * Asserts a gradient close to PyTorch's where the sums run in another order: within `rel` of the
 * reference tensor's largest magnitude (plus `floor`, for all-zero tensors) and `rel` relative.
 */
export function assertGradClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rel: number,
  floor: number,
  what: string,
): void {
  assertClose(got, want, { atol: rel * maxAbs(want) + floor, rtol: rel, what });
}
