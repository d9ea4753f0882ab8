/**
 * The error every input reader throws when it refuses a file: its message names the file, the
 * field and the cause, so the user can act on it. Anything else thrown while reading (a RangeError,
 * a failed allocation, a stack overflow) is a bug in the reader; the fuzz harness
 * (`tests/fuzz/`) tells the two apart by this class.
 */
export class InputError extends Error {
  /** The file (or `--set`, `<pickle>` ...) the input came from, when known. */
  readonly file?: string;
  /** The field at fault (`data_offsets`, `stages`, `encoder.num_heads` ...), when known. */
  readonly field?: string;

  constructor(message: string, opts: { file?: string; field?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "InputError";
    this.file = opts.file;
    this.field = opts.field;
  }
}

/** Whether `e` is a reader's own refusal ({@link InputError}). */
export function isInputError(e: unknown): e is InputError {
  return e instanceof InputError;
}
