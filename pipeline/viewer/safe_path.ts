/**
 * Confinement of file reads to the folders named at start. Request parameters never become paths:
 * the server looks names up in what it listed at start; these helpers add the last guard, that a
 * listed path (or a file found inside a named folder) really lies inside its folder once symlinks
 * are resolved.
 */

/** Real path of `p`, or null when it does not exist. */
export async function realPathOrNull(p: string): Promise<string | null> {
  try {
    return await Deno.realPath(p);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

/** Whether real path `p` is `root` or lies below it. */
export function isInside(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith("/") ? root : root + "/");
}

/**
 * Real path of the regular file `p` when it lies inside one of `roots` (real paths), else null: a
 * symlink out of the folders, a missing file and a directory all give null.
 */
export async function confinedFile(p: string, roots: readonly string[]): Promise<string | null> {
  const real = await realPathOrNull(p);
  if (!real || !roots.some((r) => isInside(real, r))) return null;
  try {
    return (await Deno.stat(real)).isFile ? real : null;
  } catch {
    return null;
  }
}

/** Reads a file confined to `roots`; null when it is absent or outside them. */
export async function readConfined(
  p: string,
  roots: readonly string[],
): Promise<Uint8Array | null> {
  const real = await confinedFile(p, roots);
  if (!real) return null;
  try {
    return await Deno.readFile(real);
  } catch {
    return null;
  }
}
