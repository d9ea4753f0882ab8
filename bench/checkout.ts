/**
 * Loading a module of another checkout of this repository (a `--base DIR` "before" side of an A/B
 * bench), so that each side runs its own engine and device in one process.
 */

/** Imports `path` (relative to the repository root, e.g. "engine/mod.ts") from the checkout at `root`. */
// deno-lint-ignore no-explicit-any
export function importFromCheckout(root: string, path: string): Promise<any> {
  return import(new URL(path, `file://${root.replace(/\/?$/, "/")}`).href);
}
