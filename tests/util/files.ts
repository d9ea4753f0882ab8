/**
 * What a test sees of a folder it had written: the relative paths of its files, or their SHA-256
 * digests, for comparing two runs file by file.
 */
import { sha256Hex } from "../../pipeline/shard/manifest.ts";

/** Relative paths (`/`-separated) of every entry under `dir` that is not a folder, sorted. */
export async function listFiles(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await listFiles(dir, p));
    else out.push(p);
  }
  return out.sort();
}

/** Relative path → lowercase hex SHA-256 of each file under `dir`, in path order. */
export async function fileDigests(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const p of await listFiles(dir)) {
    out.set(p, await sha256Hex(await Deno.readFile(`${dir}/${p}`)));
  }
  return out;
}
