/**
 * Progress reporting for long pipeline stages: `stage i/n (pct) rate/s ETA` on stderr,
 * throttled so hot loops can call {@link Progress.tick} freely. On a terminal the line is
 * redrawn in place; otherwise (logs, CI) one line per interval is appended.
 */

/** Options of {@link Progress}. */
export interface ProgressOptions {
  /** Minimum milliseconds between two printed lines (default 1000, 200 on a terminal). */
  intervalMs?: number;
  /** Set false to silence (tests); default: on unless `EPSAM_QUIET` is set. */
  enabled?: boolean;
  /** Where lines go (default stderr). */
  write?: (line: string) => void;
  /** Unit shown with the rate (default "it"). */
  unit?: string;
}

const enc = new TextEncoder();

function quietByEnv(): boolean {
  try {
    return !!Deno.env.get("EPSAM_QUIET");
  } catch {
    return false;
  }
}

function isTty(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** `h:mm:ss` or `m:ss`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? h + ":" : ""}${mm}:${String(r).padStart(2, "0")}`;
}

/** A throttled progress line for one stage of known (or unknown, `total` 0) length. */
export class Progress {
  readonly stage: string;
  total: number;
  done = 0;
  private readonly start = performance.now();
  private last = -Infinity;
  private readonly interval: number;
  private readonly enabled: boolean;
  private readonly tty: boolean;
  private readonly write: (line: string) => void;
  private readonly unit: string;

  constructor(stage: string, total = 0, opts: ProgressOptions = {}) {
    this.stage = stage;
    this.total = total;
    this.tty = !opts.write && isTty();
    this.interval = opts.intervalMs ?? (this.tty ? 200 : 1000);
    this.enabled = opts.enabled ?? !quietByEnv();
    this.unit = opts.unit ?? "it";
    this.write = opts.write ??
      ((line) => Deno.stderr.writeSync(enc.encode(this.tty ? `\r\x1b[K${line}` : `${line}\n`)));
  }

  /** Advances by `n` (default 1) and prints if the interval has passed. */
  tick(n = 1): void {
    this.set(this.done + n);
  }

  /** Sets the absolute count and prints if the interval has passed. */
  set(done: number): void {
    this.done = done;
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < this.interval) return;
    this.last = now;
    this.write(this.line(now));
  }

  /** The current line (without printing). */
  line(now = performance.now()): string {
    const el = (now - this.start) / 1000;
    const rate = el > 0 ? this.done / el : 0;
    const r = rate >= 100 ? rate.toFixed(0) : rate >= 10 ? rate.toFixed(1) : rate.toFixed(2);
    let s = `${this.stage} ${this.done}`;
    if (this.total > 0) {
      const pct = (100 * this.done / this.total).toFixed(1);
      const eta = rate > 0 ? (this.total - this.done) / rate : NaN;
      s += `/${this.total} (${pct}%) ${r} ${this.unit}/s ETA ${formatDuration(eta)}`;
    } else {
      s += ` ${r} ${this.unit}/s`;
    }
    return `${s} elapsed ${formatDuration(el)}`;
  }

  /** Prints the final line (always, if enabled) and ends the terminal line. */
  finish(note = ""): void {
    if (!this.enabled) return;
    const line = this.line() + (note ? ` ${note}` : "");
    if (this.tty) Deno.stderr.writeSync(enc.encode(`\r\x1b[K${line}\n`));
    else this.write(line);
  }
}
