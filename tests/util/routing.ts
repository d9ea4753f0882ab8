/**
 * Forcing the engine's routing hooks for one block of a test (engine/routing.ts's `set...` force
 * hooks: conv path, tiles, texture rows, binding limit, ...): each hook is called with its
 * arguments, the block runs, and every hook is reset to null (the rules) whatever the block does.
 */

/** A force hook and what to call it with; it is called with null afterwards. */
// deno-lint-ignore no-explicit-any
export type Force = [(value: any, ...rest: any[]) => unknown, ...unknown[]];

/** Runs `fn` with every hook of `forces` set, then resets them (last set, first reset). */
export async function forcing<T>(forces: Force[], fn: () => T | Promise<T>): Promise<T> {
  const done: Force[] = [];
  try {
    for (const f of forces) {
      const [set, ...args] = f;
      set(args[0], ...args.slice(1));
      done.push(f);
    }
    return await fn();
  } finally {
    for (const [set] of done.reverse()) set(null);
  }
}
