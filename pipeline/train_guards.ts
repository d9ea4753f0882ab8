/** Guards of the training loops: a clear error for a NaN/diverged loss or an out-of-memory GPU. */

/** Throws a clear error when a loss is NaN/infinite or has diverged. */
export function checkFinite(stage: string, where: string, value: number, limit = 1e6): void {
  if (!Number.isFinite(value)) {
    throw new Error(
      `${stage}: the loss became ${value} at ${where} (NaN/Inf: lower the learning rate or check the data)`,
    );
  }
  if (Math.abs(value) > limit) {
    throw new Error(
      `${stage}: the loss diverged (${
        value.toExponential(2)
      }) at ${where}; lower the learning rate`,
    );
  }
}

/** Rewrites the engine's out-of-memory error with the batch-size flag to lower. */
export async function withOomHint<T>(
  stage: string,
  flag: string,
  batch: number,
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (/out of memory/i.test(msg)) {
      throw new Error(
        `${stage}: the GPU ran out of memory with batch size ${batch}; lower it (${flag} ${
          Math.max(1, Math.floor(batch / 2))
        }) and rerun the same command to resume.\n  (${msg.split("\n")[0]})`,
        { cause: e },
      );
    }
    throw e;
  }
}
