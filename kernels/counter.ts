/**
 * An i32 counter incremented in place by one invocation (BatchNorm's num_batches_tracked): one
 * dispatch instead of cast → add → cast → strided write, with no temporaries.
 */
import type { Kernel } from "./kernel.ts";
import { uniforms } from "./uniforms.ts";

/** The amount added. */
export const COUNTER_UNIFORMS = uniforms({ step: "i32" });

/** Bindings: 1 the counter (one i32, read-write). Grid: 1. */
export function counterAddKernel(): Kernel {
  return {
    key: "counter/add/i32",
    wgsl: () =>
      /* wgsl */ `${COUNTER_UNIFORMS.wgsl("P")}
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read_write> c: array<i32>;

@compute @workgroup_size(1)
fn main() {
  c[0] = c[0] + u.step;
}`,
  };
}
