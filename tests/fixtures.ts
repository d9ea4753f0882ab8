/** Locates the reference fixtures in `../shared/fixtures` (relative to the project root). */
const root = new URL("../", import.meta.url);

/** Absolute path of a file under `../shared/fixtures/`. */
export function fixturePath(...parts: string[]): string {
  return new URL(`../shared/fixtures/${parts.join("/")}`, root).pathname;
}

/** Whether the fixtures folder is present (tests that need it skip with a reason otherwise). */
export function haveFixtures(): boolean {
  try {
    return Deno.statSync(fixturePath("README.md")).isFile;
  } catch {
    return false;
  }
}
