/** What every stage of `deno task train` is given: the config, the run folder and the splits. */
import type { PatchItem } from "./data/patches.ts";
import type { PipelineConfig } from "./config.ts";
import type { RunDir } from "./run_dir.ts";

export type SplitName = "train" | "val" | "test";

/** Everything a stage needs. */
export interface StageContext {
  cfg: PipelineConfig;
  run: RunDir;
  /** Root of the prepared dataset. */
  dataDir: string;
  splits: Record<SplitName, PatchItem[]>;
  log: (msg: string) => void;
  quiet: boolean;
}
