/**
 * The static import graph of a source tree, read from the text of `import ... from` and
 * `export ... from` statements (a small parser: no type checker, no network). Type-only imports
 * are left out, since they are erased before load; dynamic `import()` is left out, since it runs
 * after load. Paths are relative to the root, with `/` separators.
 */

/** Module → the modules it loads at load time (only those under the given folders' root). */
export type ImportGraph = Map<string, string[]>;

// `import x from "m"`, `import {a, type B} from "m"`, `import * as m from "m"`, `import "m"`,
// `export {a} from "m"`, `export * from "m"`, across lines. `import type` / `export type` are
// matched too and dropped by the caller.
const STATEMENT = /^\s*(import|export)\s+(type\s+)?([^"';]*?\s+from\s+)?["']([^"']+)["']/gms;

/**
 * Parses the imports of one module's source text: those run at load time, or with `types` also
 * the type-only ones (for layering rules, where a type import still points one way).
 */
export function parseImports(source: string, opts: { types?: boolean } = {}): string[] {
  const deps: string[] = [];
  for (const m of source.matchAll(STATEMENT)) {
    const [, keyword, typeOnly, clause, spec] = m;
    if (typeOnly && !opts.types) continue;
    // `export const x = "..."` etc. never has `from`; a bare `export "m"` is not syntax.
    if (keyword === "export" && !clause) continue;
    deps.push(spec);
  }
  return deps;
}

/** Walks `folders` under `root` and returns each .ts module's relative imports, resolved. */
export async function importGraph(
  root: URL,
  folders: string[],
  opts: { types?: boolean } = {},
): Promise<ImportGraph> {
  const graph: ImportGraph = new Map();
  const walk = async (dir: string): Promise<void> => {
    for await (const e of Deno.readDir(new URL(dir, root))) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(rel);
      else if (e.isFile && e.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(new URL(rel, root));
        const deps = parseImports(text, opts)
          .filter((s) => s.startsWith("."))
          .map((s) => new URL(s, new URL(rel, root)).href.slice(root.href.length));
        graph.set(rel, [...new Set(deps)].sort());
      }
    }
  };
  for (const f of folders) await walk(f);
  return new Map([...graph].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * The cycles closed by the back edges of a depth-first search from each module in order: empty
 * exactly when the graph has no cycle (every cycle holds a back edge). Each is reported once,
 * rotated to start at its first module in sort order, ending where it began.
 */
export function loadCycles(graph: ImportGraph): string[][] {
  const cycles: string[][] = [];
  const seenKeys = new Set<string>();
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (m: string): void => {
    state.set(m, "open");
    path.push(m);
    for (const d of graph.get(m) ?? []) {
      if (state.get(d) === "open") {
        const cyc = path.slice(path.indexOf(d));
        const start = cyc.indexOf([...cyc].sort()[0]);
        const rotated = [...cyc.slice(start), ...cyc.slice(0, start)];
        const key = rotated.join("\n");
        if (!seenKeys.has(key)) {
          seenKeys.add(key);
          cycles.push([...rotated, rotated[0]]);
        }
      } else if (!state.has(d)) visit(d);
    }
    path.pop();
    state.set(m, "done");
  };
  for (const m of graph.keys()) if (!state.has(m)) visit(m);
  return cycles;
}
