/**
 * Scopes: every tensor created inside `tidy(fn)` is disposed when it ends, except those reachable
 * from its result (which move to the enclosing scope). Autograd nodes created inside and no longer
 * reachable from the result let go of the tensors they saved, so an abandoned graph frees itself.
 */
import type { Tensor } from "./tensor.ts";
import type { Node } from "./autograd.ts";

const stack: Set<Tensor>[] = [];

/** Called by the Tensor constructor. */
export function trackTensor(t: Tensor): void {
  if (stack.length) stack[stack.length - 1].add(t);
}

function collect(x: unknown, out: Set<Tensor>, seen = new Set<unknown>()): void {
  if (x === null || typeof x !== "object" || seen.has(x)) return;
  seen.add(x);
  if ((x as { storage?: unknown; shape?: unknown }).storage && (x as Tensor).shape) {
    out.add(x as Tensor);
    return;
  }
  if (Array.isArray(x)) { for (const v of x) collect(v, out, seen); }
  else if (x instanceof Map) { for (const v of x.values()) collect(v, out, seen); }
  else if (Object.getPrototypeOf(x) === Object.prototype) {
    for (const v of Object.values(x)) collect(v, out, seen);
  }
}

function close(created: Set<Tensor>, result: unknown): void {
  const keep = new Set<Tensor>();
  collect(result, keep);
  // Tensors reachable through the kept tensors' graphs stay alive via node holds, not here.
  const parent = stack[stack.length - 1];
  let live: Set<Node> | null = null;
  for (const t of created) {
    if (keep.has(t)) {
      parent?.add(t);
      continue;
    }
    t.dispose();
    // A graph node that no kept tensor can reach will never run backward: free what it saved.
    if (t.node) {
      live ??= reachableNodes(keep);
      if (!live.has(t.node)) t.node.release();
    }
  }
}

function reachableNodes(keep: Set<Tensor>): Set<Node> {
  const seen = new Set<Node>();
  const todo: Node[] = [];
  for (const k of keep) if (k.node) todo.push(k.node);
  while (todo.length) {
    const n = todo.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    for (const i of n.inputs) if (i.node && !seen.has(i.node)) todo.push(i.node);
  }
  return seen;
}

/** Runs `fn`; disposes every tensor it created except those in its result. */
export function tidy<T>(fn: () => T): T {
  const created = new Set<Tensor>();
  stack.push(created);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    close(created, undefined);
    throw e;
  }
  stack.pop();
  close(created, result);
  return result;
}

/** Async variant of {@link tidy}; scopes must not interleave (await it before starting another). */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  const created = new Set<Tensor>();
  stack.push(created);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    stack.splice(stack.indexOf(created), 1);
    close(created, undefined);
    throw e;
  }
  stack.splice(stack.indexOf(created), 1);
  close(created, result);
  return result;
}

/** Removes a tensor from the current scope so it survives it (parameters, caches). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of stack) s.delete(t);
  return t;
}
