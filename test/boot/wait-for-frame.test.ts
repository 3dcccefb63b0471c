/**
 * waitForFrame, the boot drivers' live reader of the console log: it reads only what the log grew by,
 * so a line cut between two polls must still count, and a rejected frame is reported as such (exit 3)
 * once the guest is gone or the time is up, never as a crash or a plain timeout.
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitForFrame } from '../../src/core/boot/wait-for-frame.js';
import { InputError } from '../../src/core/errors.js';
import { encodeConsoleFrame, packBundle } from '../../src/core/verify/index.js';
import { sampleBundle } from './harness.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const logFile = () => {
  const d = mkdtempSync(join(tmpdir(), 'fbxen-wff-'));
  dirs.push(d);
  const p = join(d, 'console.log');
  writeFileSync(p, '');
  return p;
};

describe('waitForFrame', () => {
  it('a frame written in pieces cut mid-line, one piece per poll, is collected', async () => {
    const log = logFile();
    const frame = encodeConsoleFrame(await packBundle(sampleBundle('r1')), 'r1', 'boot', 1).replace(/\n/g, '\r\n');
    const pieces: string[] = [];
    for (let at = 0; at < frame.length; at += 97) pieces.push(frame.slice(at, at + 97));
    let polls = 0;
    const got = await waitForFrame(log, 'r1', 60_000, undefined, {
      pollMs: 1,
      phase: 'boot',
      // Called once per poll: the next piece lands between two reads.
      guestGone: async () => {
        const next = pieces[polls++];
        if (next !== undefined) appendFileSync(log, next);
        return undefined;
      },
    });
    expect(got).toMatchObject({ status: 'complete', run: 'r1', phase: 'boot' });
    // Complete only once the last data line is in: every piece but the END line's was needed.
    expect(pieces.length).toBeGreaterThan(5);
    expect(polls).toBeGreaterThanOrEqual(pieces.length - 1);
  });

  it('a rejected frame and then the guest gone: InputError with the reason (exit 3)', async () => {
    const log = logFile();
    appendFileSync(log, `FBXEN1 BEGIN r1 boot 999999999 ${'ab'.repeat(32)}\n`);
    const err = await waitForFrame(log, 'r1', 60_000, undefined, { pollMs: 1, guestGone: async () => 'went away' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).exitCode).toBe(3);
    expect((err as InputError).message).toContain('claims 999999999 lines');
  });

  it('a rejected frame until the time is up: InputError, not a timeout', async () => {
    const log = logFile();
    appendFileSync(log, `FBXEN1 BEGIN r1 boot 999999999 ${'ab'.repeat(32)}`); // no newline: the last line counts at the end
    const err = await waitForFrame(log, 'r1', 50, undefined, { pollMs: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
  });
});
