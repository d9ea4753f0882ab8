/** The engine's public entry point. */
export * from "./device.ts";
export {
  dispatch,
  dispatchStats,
  flush,
  grid1d,
  Params,
  profileGpu,
  sync,
  timeGpu,
  timestampProbe,
} from "./dispatch.ts";
export type {
  Binding,
  GpuProfile,
  GpuTime,
  Kernel,
  KernelTime,
  TimestampProbe,
} from "./dispatch.ts";
export { fmtBytes, type MemoryStats, memoryStats, pool, trimPool } from "./pool.ts";
export {
  bindingLimit,
  rangeBinding,
  setBindingLimitForTests,
  splitBatch,
  splitViews,
  viewOf,
} from "./split.ts";
export * from "./tensor.ts";
export { keep, tidy, tidyAsync } from "./scope.ts";
export {
  backward,
  isGradEnabled,
  isRecomputing,
  noGrad,
  noGradAsync,
  recompute,
  record,
  requireGrad,
} from "./autograd.ts";
export { checkpoint } from "./ops/checkpoint.ts";
export * as F from "./ops/index.ts";
export { philox4x32, Rng, type RngState } from "./rng.ts";
