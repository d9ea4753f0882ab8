/** Small file-system helpers shared by the pipeline. */

/** Whether `path` exists; errors other than "not found" (permissions, I/O) are rethrown. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
