/**
 * The engine's layering, checked on the source text: no module of engine/ or kernels/ takes part
 * in a load-time import cycle, and kernels/ (the floor) never imports from anything above it.
 * A cycle makes load order matter (a binding read before its module body ran throws a
 * temporal-dead-zone error), which once needed a hoisted `var` and a registration hook.
 *
 * Only static `import ... from` / `export ... from` statements count; `import type` and
 * `export type` are erased at load time and dynamic `import()` runs later, so neither does.
 */
import assert from "node:assert/strict";
import { importGraph, loadCycles, parseImports } from "../util/import_graph.ts";

const root = new URL("../../", import.meta.url);

Deno.test("import graph: no load-time cycle among engine/ and kernels/ modules", async () => {
  const graph = await importGraph(root, ["engine", "kernels"]);
  assert.deepEqual(loadCycles(graph).map((c) => c.join(" → ")), []);
});

Deno.test("import graph: kernels/ imports nothing from above, not even types", async () => {
  const graph = await importGraph(root, ["kernels"], { types: true });
  const upward: string[] = [];
  for (const [from, deps] of graph) {
    for (const dep of deps) if (!dep.startsWith("kernels/")) upward.push(`${from} → ${dep}`);
  }
  assert.deepEqual(upward, []);
});

Deno.test("import graph: the parser skips type-only imports unless asked for them", () => {
  const source = [
    'import { a, type B } from "./a.ts";',
    'import type { C } from "./c.ts";',
    "import {",
    "  d,",
    '} from "./d.ts";',
    'export * from "./e.ts";',
    'export type { F } from "./f.ts";',
    'export const g = "./g.ts";',
    'const h = await import("./h.ts");',
  ].join("\n");
  assert.deepEqual(parseImports(source), ["./a.ts", "./d.ts", "./e.ts"]);
  assert.deepEqual(parseImports(source, { types: true }), [
    "./a.ts",
    "./c.ts",
    "./d.ts",
    "./e.ts",
    "./f.ts",
  ]);
});

Deno.test("import graph: the cycle finder reports a cycle once, and none in a tree", () => {
  const graph = new Map([
    ["a.ts", ["b.ts"]],
    ["b.ts", ["c.ts"]],
    ["c.ts", ["a.ts"]],
    ["d.ts", ["a.ts"]],
  ]);
  assert.deepEqual(loadCycles(graph), [["a.ts", "b.ts", "c.ts", "a.ts"]]);
  graph.set("c.ts", []);
  assert.deepEqual(loadCycles(graph), []);
});
