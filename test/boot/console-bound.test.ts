/**
 * The console log on disk is bounded (issue 14): a guest printing forever must not fill the disk of the
 * host running fbxen. The head is kept up to the limit, then one marker line; the run that waits for a
 * frame ends with a message naming the limit instead of waiting out its timeout.
 */
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConsoleCapture } from '../../src/core/migrate/capture.js';
import { ConfigError } from '../../src/core/errors.js';
import { CONSOLE_LOG_LIMIT, ConsoleLogFile, consoleLogLimit, limitMarker } from '../../src/core/run/console-log.js';
import { domains, fbxen, makeHost, makeImage, writeGuest } from './harness.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fbxen-console-bound-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const closed = (c: ConsoleCapture) => c.close();

describe('ConsoleLogFile', () => {
  it('keeps the first `limit` bytes, then the marker line; the rest is counted, not written', async () => {
    const path = join(dir, 'console.log');
    const piece = Buffer.from(`${'x'.repeat(99)}\n`);
    const log = new ConsoleLogFile(path, 4096);
    await pipeline(Readable.from((function* () { for (let i = 0; i < 10_000; i++) yield piece; })()), log);
    const got = readFileSync(path);
    expect(got.length).toBe(4096 + Buffer.byteLength(limitMarker(4096)));
    expect(got.subarray(0, 4096).equals(Buffer.concat(Array.from({ length: 41 }, () => piece)).subarray(0, 4096))).toBe(true);
    expect(got.subarray(4096).toString()).toBe('\n[fbxen: console log limit of 4 KiB reached; the guest\'s further output is not kept (FBXEN_CONSOLE_LOG_LIMIT)]\n');
    expect(log.stopped).toBe('wrote more than the console log limit of 4 KiB (the rest of its output is not kept)');
    expect(log.dropped).toBe(10_000 * 100 - 4096);
  });

  it('property: any pieces, any limit: the file is the first min(limit, total) bytes, then the marker only if more came', async () => {
    let k = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 12 }), fc.integer({ min: 1, max: 8000 }), async (pieces, limit) => {
        const path = join(dir, `p-${++k}.log`);
        const log = new ConsoleLogFile(path, limit);
        await pipeline(Readable.from(pieces.map((p) => Buffer.from(p))), log);
        const all = Buffer.concat(pieces);
        const want = all.length > limit ? Buffer.concat([all.subarray(0, limit), Buffer.from(limitMarker(limit))]) : all;
        expect(readFileSync(path).equals(want)).toBe(true);
        expect(log.bytesKept + log.dropped).toBe(all.length);
        expect(log.stopped !== undefined).toBe(all.length > limit);
      }),
      { numRuns: 60 },
    );
  });

  it('FBXEN_CONSOLE_LOG_LIMIT: bytes or K/M/G, 256 MiB when unset, a clear error otherwise', () => {
    expect(consoleLogLimit({})).toBe(CONSOLE_LOG_LIMIT);
    expect(CONSOLE_LOG_LIMIT).toBe(256 * 1024 * 1024);
    expect(consoleLogLimit({ FBXEN_CONSOLE_LOG_LIMIT: '64K' })).toBe(65_536);
    expect(consoleLogLimit({ FBXEN_CONSOLE_LOG_LIMIT: '1G' })).toBe(1024 ** 3);
    expect(consoleLogLimit({ FBXEN_CONSOLE_LOG_LIMIT: '100000' })).toBe(100_000);
    for (const bad of ['lots', '-1', '1T', '100', '0x1000']) expect(() => consoleLogLimit({ FBXEN_CONSOLE_LOG_LIMIT: bad })).toThrow(ConfigError);
  });
});

describe("migrate-test's ConsoleCapture", () => {
  it('writes at most its limit of console.log (then the marker), the bytes as received', async () => {
    const path = join(dir, 'console.log');
    const c = new ConsoleCapture(path, Date.now, 4096);
    c.write(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a])); // "café\n" in latin1: one byte stays one byte
    for (let i = 0; i < 200; i++) c.write(`${'y'.repeat(8191)}\n`);
    await closed(c);
    const got = readFileSync(path);
    expect(got.length).toBe(4096 + Buffer.byteLength(limitMarker(4096)));
    expect([...got.subarray(0, 5)]).toEqual([0x63, 0x61, 0x66, 0xe9, 0x0a]);
    expect(c.logStopped).toMatch(/limit of 4 KiB/);
    // what it reads in memory goes on: the last line is still there
    expect(c.lines.at(-1)?.text).toBe('y'.repeat(4096));
  });

  it('a line that never ends is held only by its tail (8 MiB without a newline)', async () => {
    const c = new ConsoleCapture(undefined);
    const junk = 'z'.repeat(64 * 1024);
    for (let i = 0; i < 128; i++) c.write(junk);
    c.write('FBXEN1 HB r1 1 1700000000 12345 678\n');
    const last = c.lines.at(-1)!.text;
    expect(last.length).toBeLessThanOrEqual(4096);
    expect(last.endsWith('FBXEN1 HB r1 1 1700000000 12345 678')).toBe(true);
  });
});

describe('fbxen boot --toolstack xl with a guest that floods its console', () => {
  it('FBXEN_CONSOLE_LOG_LIMIT=64K: console.log stops at 64 KiB + the marker; the run fails at once naming the limit, domain destroyed', async () => {
    const h = makeHost();
    try {
      const image = makeImage(h, 'img.raw');
      const flood = Array.from({ length: 4000 }, (_, i) => `xn0: watchdog timeout ${i} ${'-'.repeat(60)}`);
      await writeGuest(h, { run: 'run-f', frame: false, before: flood, tail: ['@hang'] });
      h.env.FBXEN_CONSOLE_LOG_LIMIT = '64K';
      const started = Date.now();
      const r = await fbxen(['boot', '--image', image, '--name', 'fbxen-flood', '--artifacts', h.artifacts, '--run-id', 'run-f', '--timeout', '300'], h);
      expect(r.stderr).toMatch(/the guest wrote more than the console log limit of 64 KiB \(the rest of its output is not kept\) before the collector finished/);
      expect(r.code).toBe(5);
      // well before --timeout: the wait ended when the log stopped, not at 300 s
      expect(Date.now() - started).toBeLessThan(150_000);
      const log = join(h.artifacts, 'fbxen-flood', 'run-f', 'console.log');
      expect(statSync(log).size).toBe(65_536 + Buffer.byteLength(limitMarker(65_536)));
      const text = readFileSync(log, 'latin1');
      expect(text.startsWith('SeaBIOS')).toBe(true);
      expect(text.endsWith(limitMarker(65_536))).toBe(true);
      expect(domains(h)).toEqual([]);
      expect(JSON.parse(readFileSync(join(h.artifacts, 'fbxen-flood', 'run-f', 'run.json'), 'utf8'))).toMatchObject({ outcome: 'failed' });
    } finally {
      await rm(h.dir, { recursive: true, force: true });
    }
  });
});
