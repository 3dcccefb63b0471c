/**
 * The guest's console as fbxen keeps it on disk (console.log of a run). A guest can print forever, so the
 * file is bounded: the first `limit` bytes are kept, then one marker line says the limit was reached, and
 * the rest is counted and dropped (docs/boot-xl.md, "Console log limit"). The head is what is kept because
 * it is what explains a flood (the messages that start it) and it is where the boot and the collector's
 * frame are written on a well-behaved guest; a rolling tail would have to rewrite a file that the frame
 * reader reads incrementally by offset.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { Writable } from 'node:stream';
import { ConfigError } from '../errors.js';

/** Default limit of one console log: a FreeBSD boot plus its frames is about 200 KiB. */
export const CONSOLE_LOG_LIMIT = 256 * 1024 * 1024;

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** FBXEN_CONSOLE_LOG_LIMIT: bytes, or K/M/G (binary units); unset → 256M. */
export function consoleLogLimit(env: NodeJS.ProcessEnv): number {
  const raw = env['FBXEN_CONSOLE_LOG_LIMIT'];
  if (raw === undefined || raw === '') return CONSOLE_LOG_LIMIT;
  const m = /^([1-9][0-9]{0,12})([KMG]?)i?B?$/i.exec(raw.trim());
  const n = m ? Number(m[1]) * UNITS[m[2]!.toUpperCase()]! : NaN;
  if (!Number.isSafeInteger(n) || n < 4096) {
    throw new ConfigError(`FBXEN_CONSOLE_LOG_LIMIT=${JSON.stringify(raw)} is not a size of at least 4K`, [], {
      hint: 'give bytes or K/M/G, e.g. FBXEN_CONSOLE_LOG_LIMIT=1G, or unset it for 256M',
    });
  }
  return n;
}

export function formatLimit(n: number): string {
  for (const [u, f] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (n % f === 0) return `${n / f} ${u}`;
  return `${n} bytes`;
}

/** The line written where the log stops; it starts with a newline so that it never joins a guest's line. */
export function limitMarker(limit: number): string {
  return `\n[fbxen: console log limit of ${formatLimit(limit)} reached; the guest's further output is not kept (FBXEN_CONSOLE_LOG_LIMIT)]\n`;
}

/**
 * A console log file that keeps at most `limit` bytes of the guest's output (plus the marker line). It is
 * a Writable, so a console process's stdout can be piped into it with backpressure; `write` never fails
 * because of the guest: past the limit, or after the disk refused a write, bytes are counted and dropped
 * and `stopped` says why (once, also to `onStop`).
 */
export class ConsoleLogFile extends Writable {
  private readonly file: WriteStream;
  private kept = 0;
  /** Bytes received and not written (past the limit or after a write error). */
  dropped = 0;
  /** Why the log stopped growing, said of the guest ("wrote more than ..."), or undefined while it is complete. */
  stopped: string | undefined;

  constructor(
    readonly path: string,
    readonly limit: number = CONSOLE_LOG_LIMIT,
    private readonly onStop?: (reason: string) => void,
  ) {
    super();
    this.file = createWriteStream(path, { flags: 'a' });
    this.file.on('error', (err: NodeJS.ErrnoException) => this.stop(`could not be captured any more: ${path} could not be written (${err.code ?? err.message})`));
  }

  /** Bytes of the guest's output in the file. */
  get bytesKept(): number {
    return this.kept;
  }

  private stop(reason: string): void {
    if (this.stopped !== undefined) return;
    this.stopped = reason;
    this.onStop?.(reason);
    // For a reader that did not make this file (the XAPI listener given it as its sink).
    this.emit('stop', reason);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.stopped !== undefined) {
      this.dropped += chunk.length;
      return done();
    }
    const room = this.limit - this.kept;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.kept += part.length;
    // A write error is reported through `stopped`, not to the console's pipe (that would stop reading the guest).
    const next = () => done();
    if (part.length < chunk.length) {
      this.dropped += chunk.length - part.length;
      this.file.write(part);
      this.file.write(limitMarker(this.limit), next);
      this.stop(`wrote more than the console log limit of ${formatLimit(this.limit)} (the rest of its output is not kept)`);
    } else this.file.write(part, next);
  }

  override _final(done: (err?: Error | null) => void): void {
    if (this.file.destroyed) return done();
    this.file.end(() => done());
  }
}
