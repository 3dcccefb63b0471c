/**
 * The console as migrate-test reads it: every chunk is appended to console.log (raw, as the boot run
 * keeps it), and every line is kept in memory with its host arrival time, so that heartbeat lines carry
 * when they reached the host (clock offset, and the fallback downtime).
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { StampedLine } from './heartbeat.js';

const MAX_LINES = 2_000_000;

export class ConsoleCapture {
  readonly lines: StampedLine[] = [];
  private text = '';
  /** Characters received before the first one `text` still holds (its head is dropped on a chatty console). */
  private textStart = 0;
  /** Characters received so far, from every source: a position in the console that trimming never moves. */
  received = 0;
  private file: WriteStream | undefined;
  /** bumped on every chunk, so waiters can tell whether anything new arrived */
  version = 0;

  constructor(
    logPath: string | undefined,
    private readonly now: () => number = Date.now,
  ) {
    if (logPath) {
      this.file = createWriteStream(logPath, { flags: 'a' });
      this.file.on('error', () => undefined);
    }
  }

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
    this.file?.write(s);
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
      this.lines.push({ hostMs: lineAt, text: rest.slice(0, nl).replace(/\r$/, '') });
      rest = rest.slice(nl + 1);
      lineAt = at;
    }
    if (this.lines.length > MAX_LINES) this.lines.splice(0, this.lines.length - MAX_LINES);
    state.partial = rest;
    state.partialAt = rest ? lineAt : undefined;
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
