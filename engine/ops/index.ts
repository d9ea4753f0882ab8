/** Public op surface: import * as F from "engine/ops/index.ts". */
export * from "./elementwise.ts";
export * from "./view.ts";
export * from "./cast.ts";
export * from "./reduce.ts";
export * from "./softmax.ts";
export * from "./conv.ts";
export * from "./shape.ts";
export * from "./random.ts";
export * from "./matmul.ts";
export * from "./norm.ts";
export * from "./attention.ts";
export * from "./attention_texture.ts";
export * from "./pool.ts";
export * from "./fft.ts";
export * from "./resize.ts";
export * from "./loss.ts";
