/**
 * A per-output-channel epilogue for kernels that store one output element at a time (the conv
 * forward kernel, the texture GEMM's store): what a BatchNorm in eval mode folded into the conv,
 * the residual add of a bottleneck and a ReLU cost there — a few flops per output instead of
 * extra passes over the activation (engine/ops/conv_fused.ts).
 *
 *   y = relu(acc·scale[c] + shift[c] + residual[i])
 *
 * with each term present only when its flag is set, `c` the output channel and `i` the output
 * element's index in the output's binding (the residual is bound over the same range, so the
 * same index). Bindings, in this order after the kernel's own inputs: scale, shift, residual.
 * `acc·scale + shift` is one fma: the BN fold w' = w·scale, b' = shift applied to the sum rather
 * than to every weight, so no folded copy of the weights exists to go stale.
 *
 * An epilogue with no flag set generates no code and no key suffix: kernels without one are the
 * same WGSL, bit for bit, as before epilogues existed. {@link channelEpilogueKernel} applies the
 * same epilogue as a pass of its own, for conv paths whose store does not take it yet.
 */
import type { Kernel } from "../kernel.ts";
import { FLAT_INDEX } from "../common.ts";
import { uniforms } from "../uniforms.ts";

export interface ChannelEpilogue {
  /** Multiply by scale[c] (a folded BatchNorm's γ/√(var+eps)). */
  scale: boolean;
  /** Add shift[c] (a conv bias, or a folded BatchNorm's β − mean·scale). */
  shift: boolean;
  /** Add residual[i], the same layout as the output. */
  residual: boolean;
  /** max(·, 0) last. */
  relu: boolean;
}

export const NO_EPILOGUE: ChannelEpilogue = {
  scale: false,
  shift: false,
  residual: false,
  relu: false,
};

/** Whether the epilogue does nothing. */
export function isIdentityEpilogue(e: ChannelEpilogue): boolean {
  return !e.scale && !e.shift && !e.residual && !e.relu;
}

/** The kernel-key suffix ("" for none). */
export function epilogueKey(e: ChannelEpilogue): string {
  if (isIdentityEpilogue(e)) return "";
  return `/ep-${e.scale ? "s" : ""}${e.shift ? "b" : ""}${e.residual ? "r" : ""}${
    e.relu ? "relu" : ""
  }`;
}

/** Storage bindings the epilogue takes. */
export function epilogueBindingCount(e: ChannelEpilogue): number {
  return (e.scale ? 1 : 0) + (e.shift ? 1 : 0) + (e.residual ? 1 : 0);
}

/** WGSL declarations of the epilogue's bindings from binding number `first` on. */
export function epilogueDecls(e: ChannelEpilogue, first: number): string {
  let n = first;
  const d: string[] = [];
  if (e.scale) d.push(`@group(0) @binding(${n++}) var<storage, read> ep_scale: array<f32>;`);
  if (e.shift) d.push(`@group(0) @binding(${n++}) var<storage, read> ep_shift: array<f32>;`);
  if (e.residual) d.push(`@group(0) @binding(${n++}) var<storage, read> ep_res: array<f32>;`);
  return d.length ? d.join("\n") + "\n" : "";
}

/**
 * WGSL `let` statements loading channel `ch`'s scale and shift once into `<name>_s` and
 * `<name>_b`, for {@link epilogueExpr}'s `pre` (a kernel storing several outputs of one channel
 * loads them once: on CPU rasterisers each storage load is a per-lane loop). "" when none.
 */
export function epilogueChannel(e: ChannelEpilogue, ch: string, name: string): string {
  const d: string[] = [];
  if (e.scale) d.push(`let ${name}_s = ep_scale[${ch}];`);
  if (e.shift) d.push(`let ${name}_b = ep_shift[${ch}];`);
  return d.join(" ");
}

/**
 * WGSL expression of the epilogue applied to `v` (an f32 expression) for channel `ch` and output
 * index `idx` (u32 expressions); `v` itself when the epilogue is the identity. With `pre`, the
 * scale and shift come from {@link epilogueChannel}'s `let`s of that name instead of loads.
 */
export function epilogueExpr(
  e: ChannelEpilogue,
  v: string,
  ch: string,
  idx: string,
  pre?: string,
): string {
  const sc = pre ? `${pre}_s` : `ep_scale[${ch}]`;
  const sh = pre ? `${pre}_b` : `ep_shift[${ch}]`;
  let x = v;
  if (e.scale && e.shift) x = `fma(${x}, ${sc}, ${sh})`;
  else if (e.scale) x = `(${x}) * ${sc}`;
  else if (e.shift) x = `(${x}) + ${sh}`;
  if (e.residual) x = `${x} + ep_res[${idx}]`;
  if (e.relu) x = `max(${x}, 0.0)`;
  return x;
}

export const EPILOGUE_WG = 256;

/** Elements of this dispatch, channels, pixels per channel plane, y's and the residual's offsets. */
export const EPILOGUE_UNIFORMS = uniforms({ n: "u32", C: "u32", HW: "u32", oy: "u32", or: "u32" });

/**
 * The epilogue as its own pass, in place over an NCHW conv output y (for a conv path whose store
 * does not apply it yet): y[i] = epilogue(y[i]), channel (i / HW) % C. Bindings: scale, shift,
 * residual (as flagged), then y (read-write). Grid: grid1d(n, EPILOGUE_WG).
 */
export function channelEpilogueKernel(e: ChannelEpilogue): Kernel {
  const n = 1 + epilogueBindingCount(e);
  return {
    key: `conv2d/epilogue-pass${epilogueKey(e)}`,
    wgsl: () =>
      /* wgsl */ `${EPILOGUE_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
${epilogueDecls(e, 1)}@group(0) @binding(${n}) var<storage, read_write> y: array<f32>;
${FLAT_INDEX}
@compute @workgroup_size(${EPILOGUE_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat_index(gid, nwg, ${EPILOGUE_WG}u);
  if (i >= u.n) { return; }
  let c = (i / u.HW) % u.C;
  let ri = u.or + i;
  y[u.oy + i] = ${epilogueExpr(e, "y[u.oy + i]", "c", "ri")};
}`,
  };
}
