/**
 * CPU time of this whole process in nanosecond resolution: the sum over its live threads of
 * `/proc/self/task/<tid>/schedstat`'s run time. On a software adapter (llvmpipe) the GPU's work
 * runs on the rasteriser's threads inside this process, so the CPU time a piece of work adds is
 * its cost with the other processes' share of the cores taken out — steadier than the wall clock
 * on a loaded machine (`/proc/self/stat` counts in 10 ms ticks, too coarse for one dispatch).
 * Threads that exit between two readings take their time with them: for spans in which the
 * thread set is stable (lavapipe's workers live as long as the device).
 */

/** Milliseconds of CPU run by this process's live threads; NaN where /proc is not readable. */
export function threadCpuMs(): number {
  let ns = 0;
  try {
    for (const e of Deno.readDirSync("/proc/self/task")) {
      try {
        ns += Number(Deno.readTextFileSync(`/proc/self/task/${e.name}/schedstat`).split(" ")[0]);
      } catch {
        // the thread exited since the directory was read
      }
    }
  } catch {
    return NaN;
  }
  return ns / 1e6;
}
