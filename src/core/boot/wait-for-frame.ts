/**
 * Waits until the console log holds a complete FBXEN1 frame of this run (the collector writes it twice,
 * so an incomplete first copy is not final), the guest dies, the time runs out or the run is cancelled.
 * Shared by the xl and xapi drivers: both capture the serial console into a file first.
 */
import { readFile } from 'node:fs/promises';
import { EvidenceIncompleteError, TimeoutError, ToolstackError } from '../errors.js';
import { extractBundleFromConsole } from '../verify/index.js';
import { sleep } from '../util/sleep.js';

type Extracted = Awaited<ReturnType<typeof extractBundleFromConsole>>;
export type CompleteFrame = Extract<Extracted, { status: 'complete' }>;

export interface WaitForFrameOptions {
  phase?: string;
  pollMs?: number;
  /** Checked every poll: returns why the guest can no longer produce a frame (crashed, gone), or undefined. */
  guestGone?: () => Promise<string | undefined>;
  /** Called with a short status line while waiting (progress). */
  onStatus?: (line: string) => void;
}

/** `run` undefined: the newest frame of any run (a CD without fbxen's nonce, or none). */
export async function waitForFrame(consoleLogPath: string, run: string | undefined, timeoutMs: number, signal: AbortSignal | undefined, options: WaitForFrameOptions = {}): Promise<CompleteFrame> {
  const pollMs = options.pollMs ?? 500;
  const deadline = Date.now() + timeoutMs;
  let last: Extracted = { status: 'absent' };
  let lastSize = -1;
  for (;;) {
    signal?.throwIfAborted();
    const text = await readFile(consoleLogPath, 'utf8').catch(() => '');
    if (text.length !== lastSize) {
      lastSize = text.length;
      last = await extractBundleFromConsole(text, { run, ...(options.phase ? { phase: options.phase } : {}) });
      if (last.status === 'complete') return last;
      options.onStatus?.(
        last.status === 'incomplete'
          ? `frame of run ${run ?? last.run}: ${last.totalLines - last.missingLines}/${last.totalLines} lines`
          : `console: ${formatSize(text.length)}, no frame ${run ? `of run ${run} ` : ''}yet`,
      );
    }
    const gone = await options.guestGone?.();
    if (gone !== undefined) {
      // One last read: the guest may have finished writing just before it went away.
      const finalText = await readFile(consoleLogPath, 'utf8').catch(() => '');
      const final = await extractBundleFromConsole(finalText, { run, ...(options.phase ? { phase: options.phase } : {}) });
      if (final.status === 'complete') return final;
      throw new ToolstackError(`the guest ${gone} before the collector finished (${describe(final, run)})`, {
        hint: `read the console log ${consoleLogPath} to see how far the guest got`,
      });
    }
    if (Date.now() >= deadline) {
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

function describe(e: Extracted, run: string | undefined): string {
  if (e.status === 'incomplete') return `${e.missingLines} of ${e.totalLines} frame lines missing`;
  if (e.status === 'absent') return `no frame${run ? ` of run ${run}` : ''}`;
  return 'complete';
}

function formatSize(n: number): string {
  return n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KiB`;
}

