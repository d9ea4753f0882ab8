/**
 * What one fuzz target is: a parser, the inputs to throw at it, and how to tell the parser's own
 * clear refusal from a crash. Each file in `tests/fuzz/targets/` default-exports one `FuzzTarget`;
 * the runner (`deno task fuzz`) and the short CI fuzz discover them by listing that folder, so
 * adding a parser is adding a file.
 */
import type fc from "fast-check";

export interface FuzzTarget {
  /** The name `--parser` selects (e.g. "pth", "tiff", "asap_xml"). */
  name: string;
  /** One line: what the input is and which function parses it. */
  description: string;
  /** Inputs: generated ones and mutations of valid seeds (see `mutate.ts`). */
  input: () => fc.Arbitrary<Uint8Array>;
  /** Parses one input: resolves when the input is accepted, throws when it is refused. */
  parse(input: Uint8Array): Promise<void> | void;
  /**
   * True when `e` is the parser's own clear refusal (an error naming the file/field and the cause);
   * anything else thrown counts as a crash.
   */
  isParserError(e: unknown): boolean;
}
