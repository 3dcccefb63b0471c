/**
 * migrate-test's console channel reads the guest's frames from the capture: a frame over a limit ends as
 * "evidence rejected" (exit 3, as verify says it), and each poll reads only what the capture grew by.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { ConsoleCapture } from '../../src/core/migrate/capture.js';
import { waitForCapturedFrame } from '../../src/core/migrate/channel.js';
import { InputError, TimeoutError } from '../../src/core/errors.js';
import { encodeConsoleFrame, packBundle, readBundle } from '../../src/core/verify/index.js';
import { FIXTURES } from '../support/verify/fixtures.js';

const HEALTHY = join(FIXTURES, '13.2-healthy-derived');

describe('waitForCapturedFrame', () => {
  it('a frame claiming more lines than any bundle has is "evidence rejected" (exit 3), not a timeout', async () => {
    const c = new ConsoleCapture(undefined);
    const header = `FBXEN1 BEGIN mt-1 pre-migrate 999999999 ${'ab'.repeat(32)}\n`;
    c.write(`${header}FBXEN1 END mt-1 pre-migrate\n${header}FBXEN1 END mt-1 pre-migrate\n`);
    const err = await waitForCapturedFrame(c, 'mt-1', 'pre-migrate', 300, { pollMs: 10 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err).not.toBeInstanceOf(TimeoutError);
    expect((err as InputError).exitCode).toBe(3);
    expect((err as Error).message).toMatch(/^evidence rejected: the frame of run mt-1, phase pre-migrate claims 999999999 lines.*on the console/);
  });

  it('property: however the console arrives in pieces, and from whatever position before the frame, the same bundle is found', async () => {
    const b = await readBundle(HEALTHY);
    const text = `noise\r\nlogin: root\n${encodeConsoleFrame(await packBundle({ ...b, meta: { ...b.meta, run: 'mt-1' } }), 'mt-1', 'pre-migrate')}# `;
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: text.length - 1 }), { maxLength: 40 }), fc.integer({ min: 0, max: 19 }), async (cuts, from) => {
        const c = new ConsoleCapture(undefined);
        const at = [0, ...cuts.sort((x, y) => x - y), text.length];
        let i = 0;
        // one piece per poll: the reader sees every split
        const feed = setInterval(() => {
          if (i + 1 < at.length) c.write(text.slice(at[i]!, at[++i]!));
        }, 1);
        try {
          const got = await waitForCapturedFrame(c, 'mt-1', 'pre-migrate', 60_000, { pollMs: 1, from });
          expect(got.meta.run).toBe('mt-1');
          expect([...got.sections.keys()]).toEqual([...b.sections.keys()]);
        } finally {
          clearInterval(feed);
        }
      }),
      { numRuns: 25 },
    );
  });

  it('reads only what the capture grew by on each poll (40 pieces: the bytes read stay about the log size)', async () => {
    const b = await readBundle(HEALTHY);
    const payload = await packBundle({ ...b, meta: { ...b.meta, run: 'mt-1' } });
    const noise = `${'kernel: some console noise of a busy guest '.repeat(3)}\n`.repeat(256); // ~33 KiB
    const pieces = [...Array.from({ length: 40 }, () => noise), encodeConsoleFrame(payload, 'mt-1', 'pre-migrate')];
    const total = pieces.reduce((n, p) => n + p.length, 0);
    // Every read of the capture is counted, and hands the guest's next piece in after it: one piece per poll,
    // whatever the machine's load, so the count does not depend on timing.
    class CountingCapture extends ConsoleCapture {
      read = 0;
      reads = 0;
      private next = 0;
      private feed(): void {
        if (this.next < pieces.length) {
          const p = pieces[this.next++]!;
          queueMicrotask(() => this.write(p));
        }
      }
      override allText(): string {
        const t = super.allText();
        this.read += t.length;
        this.reads++;
        this.feed();
        return t;
      }
      override textSince(pos: number): string {
        const t = super.textSince(pos);
        this.read += t.length;
        this.reads++;
        this.feed();
        return t;
      }
    }
    const c = new CountingCapture(undefined);
    c.write('login: root\n# ');
    const bundle = await waitForCapturedFrame(c, 'mt-1', 'pre-migrate', 60_000, { pollMs: 1 });
    expect(bundle.sections.size).toBeGreaterThan(0);
    expect(c.reads).toBeGreaterThanOrEqual(pieces.length);
    // Re-reading the whole capture on every poll would read about 21 times the log (40 x 41 / 2 pieces).
    expect(c.read).toBeLessThanOrEqual(total + 64);
  });
});
