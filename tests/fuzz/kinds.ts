/** Shared by the fuzz runner and its child: the line marker, per-input seeds, error kinds. */

/** Starts each result line of the child: whatever a parser itself prints to stdout is ignored. */
export const MARK = "\u0001fuzz ";

/** The seed input `i` is generated from: inputs are independent, so any index can be replayed. */
export function inputSeed(seed: number, i: number): number {
  return (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b)) | 0;
}

/**
 * An error message reduced to its kind, for counting: the file name, numbers, quoted strings and
 * bracketed lists are blanked (and what follows "got", "global" or "token"), so "x.pth: corrupt pickle at byte 12: truncated (needs 4 more
 * bytes)" and the same at byte 90 count as one kind.
 */
export function messageKind(message: string): string {
  return message
    .replace(/^(\w*Error: )?(\S*[/<][^:]*|\S+\.[A-Za-z0-9]{2,12}|--set .*?|--\S+( \S+)?): /, "$1")
    // Values echoed from the input say nothing about the kind of error.
    .replace(/\b(got|global|token) .*?(, which| is not valid JSON|\)|$)/, "$1 …$2")
    .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
    .replace(/\[[^\]]*\]/g, "[…]")
    .replace(/<[^<>]*>/g, "<…>")
    .replace(/\b0x[0-9a-f]+\b/gi, "N")
    .replace(/(?<![\w.-])-?\d+(\.\d+)?(e[+-]?\d+)?(?!\w)/gi, "N")
    .slice(0, 110);
}
