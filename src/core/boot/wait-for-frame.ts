/**
 * Waits until the console log holds a complete FBXEN1 frame of this run (the collector writes it twice,
 * so an incomplete first copy is not final), the guest dies, the time runs out or the run is cancelled.
 * Shared by the xl and xapi drivers: both capture the serial console into a file first.
 */
import { open } from 'node:fs/promises';
import { EvidenceIncompleteError, InputError, TimeoutError, ToolstackError } from '../errors.js';
import { ConsoleFrameReader, type ConsoleExtraction } from '../verify/console-frame.js';
import { sleep } from '../util/sleep.js';

type Extracted = ConsoleExtraction;
export type CompleteFrame = Extract<Extracted, { status: 'complete' }>;

export interface WaitForFrameOptions {
  phase?: string;
  pollMs?: number;
  /** Checked every poll: returns why the guest can no longer produce a frame (crashed, gone), or undefined. */
  guestGone?: () => Promise<string | undefined>;
  /** Called with a short status line while waiting (progress). */
  onStatus?: (line: string) => void;
}

const READ_CHUNK = 1024 * 1024;

/**
 * Hands the reader the bytes the log grew by since the last call (never the whole log again, so a
 * long wait costs time linear in the log). latin1: one byte per character, so a chunk boundary never
 * splits a character; frame lines are ASCII.
 */
async function readNew(path: string, from: number, reader: ConsoleFrameReader): Promise<number> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return from;
  try {
    const buf = Buffer.alloc(READ_CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, from);
      if (bytesRead === 0) return from;
      reader.push(buf.toString('latin1', 0, bytesRead));
      from += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

/** `run` undefined: the newest frame of any run (a CD without fbxen's nonce, or none). */
export async function waitForFrame(consoleLogPath: string, run: string | undefined, timeoutMs: number, signal: AbortSignal | undefined, options: WaitForFrameOptions = {}): Promise<CompleteFrame> {
  const pollMs = options.pollMs ?? 500;
  const deadline = Date.now() + timeoutMs;
  const reader = new ConsoleFrameReader(run);
  let last: Extracted = { status: 'absent' };
  let size = 0;
  let lastSize = -1;
  let seen = -1;
  for (;;) {
    signal?.throwIfAborted();
    size = await readNew(consoleLogPath, size, reader);
    if (size !== lastSize) {
      lastSize = size;
      if (reader.version !== seen) {
        seen = reader.version;
        last = await reader.result(options.phase);
        if (last.status === 'complete') return last;
      }
      options.onStatus?.(
        last.status === 'incomplete'
          ? `frame of run ${run ?? last.run}: ${last.totalLines - last.missingLines}/${last.totalLines} lines`
          : last.status === 'rejected'
            ? `${last.reason}; waiting for a good frame`
            : `console: ${formatSize(size)}, no frame ${run ? `of run ${run} ` : ''}yet`,
      );
    }
    const gone = await options.guestGone?.();
    if (gone !== undefined) {
      // One last read: the guest may have finished writing just before it went away.
      await readNew(consoleLogPath, size, reader);
      reader.end();
      const final = await reader.result(options.phase);
      if (final.status === 'complete') return final;
      if (final.status === 'rejected') throw rejected(final, consoleLogPath);
      throw new ToolstackError(`the guest ${gone} before the collector finished (${describe(final, run)})`, {
        hint: `read the console log ${consoleLogPath} to see how far the guest got`,
      });
    }
    if (Date.now() >= deadline) {
      // A last line without its newline counts too, as it does when the log is read whole.
      reader.end();
      last = await reader.result(options.phase);
      if (last.status === 'complete') return last;
      if (last.status === 'rejected') throw rejected(last, consoleLogPath);
      if (last.status === 'incomplete') {
        throw new EvidenceIncompleteError(`timed out after ${Math.round(timeoutMs / 1000)} s with an incomplete frame: ${describe(last, run)}`, {
          hint: `console bytes were lost; read ${consoleLogPath}, then boot again (a longer --timeout will not help if the lines are gone)`,
        });
      }
      throw new TimeoutError(`no collector frame${run ? ` of run ${run}` : ''} on the console within ${Math.round(timeoutMs / 1000)} s`, {
        hint: `read ${consoleLogPath}: if the guest is still booting, raise --timeout; if it stopped, fix the image (is fbxen-collect installed and the console on the serial port?)`,
      });
    }
    await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())), signal);
  }
}

/** The guest's newest frame is one no collector writes (over a limit, not a bundle): exit 3, not a timeout. */
function rejected(e: Extract<Extracted, { status: 'rejected' }>, consoleLogPath: string): InputError {
  return new InputError(e.reason, {
    hint: `the guest printed a frame fbxen-collect never writes (limits: docs/probe-protocol.md §5); read ${consoleLogPath}`,
  });
}

function describe(e: Extracted, run: string | undefined): string {
  if (e.status === 'incomplete') return `${e.missingLines} of ${e.totalLines} frame lines missing`;
  if (e.status === 'rejected') return e.reason;
  if (e.status === 'absent') return `no frame${run ? ` of run ${run}` : ''}`;
  return 'complete';
}

function formatSize(n: number): string {
  return n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`;
}

