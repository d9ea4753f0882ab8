/** Public op surface: import * as F from "engine/ops/index.ts". */
export * from "./elementwise.ts";
export * from "./view.ts";
export * from "./reduce.ts";
