/**
 * The console as migrate-test reads it: every chunk is appended to console.log (raw, as the boot run
 * keeps it), and every line is kept in memory with its host arrival time, so that heartbeat lines carry
 * when they reached the host (clock offset, and the fallback downtime).
 */
import type { StampedLine } from './heartbeat.js';
import { CONSOLE_LOG_LIMIT, ConsoleLogFile } from '../run/console-log.js';

const MAX_LINES = 2_000_000;
/** Characters of one line kept (its tail: a heartbeat line is under 200): a guest may never end a line. */
export const MAX_CAPTURED_LINE = 4096;
/** Characters of all lines held; past it the oldest lines go, as past MAX_LINES. */
const MAX_LINE_CHARS_HELD = 128 * 1024 * 1024;

export class ConsoleCapture {
  readonly lines: StampedLine[] = [];
  private text = '';
  /** Characters received before the first one `text` still holds (its head is dropped on a chatty console). */
  private textStart = 0;
  /** Characters received so far, from every source: a position in the console that trimming never moves. */
  received = 0;
  private file: ConsoleLogFile | undefined;
  /** bumped on every chunk, so waiters can tell whether anything new arrived */
  version = 0;

  constructor(
    logPath: string | undefined,
    private readonly now: () => number = Date.now,
    /** Bytes of console.log kept on disk (its head, then a marker line: docs/boot-xl.md). */
    logLimit: number = CONSOLE_LOG_LIMIT,
  ) {
    if (logPath) this.file = new ConsoleLogFile(logPath, logLimit, (why) => (this.logStopped = why));
  }

  /** Why console.log stopped growing (its limit, a write error; said of the guest), or undefined. */
  logStopped: string | undefined;

  write(chunk: Buffer | string): void {
    this.writeFrom(this.main, chunk);
  }

  /**
   * A second console client on the same guest (the incoming domain during an xl migration) keeps its
   * own partial line, so the two streams never splice into one line.
   */
  source(): (chunk: Buffer | string) => void {
    const state = { partial: '', partialAt: undefined as number | undefined };
    return (chunk) => this.writeFrom(state, chunk);
  }

  private readonly main = { partial: '', partialAt: undefined as number | undefined };

  private writeFrom(state: { partial: string; partialAt: number | undefined }, chunk: Buffer | string): void {
    const s = typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    const at = this.now();
    // The bytes as received (a string chunk is latin1 here too), not re-encoded as UTF-8.
    this.file?.write(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
    this.text += s;
    this.received += s.length;
    // The text is only searched for frames; keep its tail bounded on a chatty console.
    if (this.text.length > 64 * 1024 * 1024) {
      const keep = 32 * 1024 * 1024;
      this.textStart += this.text.length - keep;
      this.text = this.text.slice(-keep);
    }
    this.version++;
    let rest = state.partial + s;
    // A line's arrival is when its first byte arrived: it was written then.
    let lineAt = state.partial ? (state.partialAt ?? at) : at;
    for (;;) {
      const nl = rest.indexOf('\n');
      if (nl < 0) break;
      // Only a line's tail is kept: a heartbeat line is short and at the end of what the console shows.
      const text = rest.slice(Math.max(0, nl - MAX_CAPTURED_LINE), nl).replace(/\r$/, '');
      this.lines.push({ hostMs: lineAt, text });
      this.lineChars += text.length;
      rest = rest.slice(nl + 1);
      lineAt = at;
    }
    // Oldest lines go in batches (a splice per chunk would cost the whole array each time).
    if (this.lines.length > MAX_LINES * 1.25 || this.lineChars > MAX_LINE_CHARS_HELD) this.dropOldLines();
    // A line that never ends: only its tail is kept, so memory and work stay bounded.
    state.partial = rest.length > MAX_CAPTURED_LINE ? rest.slice(-MAX_CAPTURED_LINE) : rest;
    state.partialAt = rest ? lineAt : undefined;
  }

  private lineChars = 0;

  private dropOldLines(): void {
    let drop = Math.max(0, this.lines.length - MAX_LINES);
    let chars = this.lineChars;
    for (let i = 0; i < drop; i++) chars -= this.lines[i]!.text.length;
    while (chars > (MAX_LINE_CHARS_HELD * 3) / 4 && drop < this.lines.length) chars -= this.lines[drop++]!.text.length;
    this.lines.splice(0, drop);
    this.lineChars = chars;
  }

  /** Everything received so far (for frame extraction). */
  allText(): string {
    return this.text;
  }

  /**
   * What arrived from position `pos` (a `received` value) on, so a reader can take only what is new. When
   * that text was already dropped, what is still held, after a newline (no line is spliced over the gap).
   */
  textSince(pos: number): string {
    if (pos >= this.received) return '';
    if (pos < this.textStart) return `\n${this.text}`;
    return this.text.slice(pos - this.textStart);
  }

  /** The last characters received: what the console shows now (a login prompt, a shell prompt). */
  tail(n = 200): string {
    return this.text.slice(-n);
  }

  async close(): Promise<void> {
    const f = this.file;
    this.file = undefined;
    if (f) await new Promise<void>((r) => f.end(() => r()));
  }
}
