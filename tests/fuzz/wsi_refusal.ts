/**
 * What counts as a clear refusal for the WSI/image fuzz targets. The readers throw the project's
 * `InputError` (engine/io/errors.ts) naming the file; anything else (a TypeError, a RangeError
 * from an allocation that should have been bounded) is a crash. The ASAP XML parser (another
 * helper's) throws plain Errors naming the file: there a message naming it, with no TypeError or
 * RangeError in its cause chain, is the refusal.
 */
import { isInputError } from "../../engine/io/errors.ts";

/** An InputError whose message names `name`. */
export function isInputErrorNaming(e: unknown, name: string): boolean {
  return isInputError(e) && e.message.includes(name);
}

/** An Error naming `name` with no TypeError/RangeError/SyntaxError in its cause chain. */
export function namesFileWithoutCrash(e: unknown, name: string): boolean {
  if (!(e instanceof Error) || !e.message.includes(name)) return false;
  for (let c: unknown = e; c; c = (c as Error).cause) {
    if (c instanceof TypeError || c instanceof RangeError || c instanceof SyntaxError) return false;
  }
  return true;
}
