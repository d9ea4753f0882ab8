/**
 * What counts as a clear refusal for the WSI/image fuzz targets: an `Error` whose message names
 * the name the parser was given (the file), with no engine-level failure (TypeError,
 * RangeError: a bug or an allocation that should have been bounded) anywhere in its cause chain.
 */
export function namesFileWithoutCrash(e: unknown, name: string): boolean {
  if (!(e instanceof Error) || !e.message.includes(name)) return false;
  for (let c: unknown = e; c; c = (c as Error).cause) {
    if (c instanceof TypeError || c instanceof RangeError || c instanceof SyntaxError) return false;
  }
  return true;
}

/** A plain `Error` (the decoders' own refusals), not a TypeError/RangeError from a bug. */
export function isPlainError(e: unknown): boolean {
  return e instanceof Error && e.constructor === Error;
}
