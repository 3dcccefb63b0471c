import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WrittenExtents } from '../../src/core/imaging/extents.js';
import { Sha256Worker, sha256File } from '../../src/core/util/sha256.js';
import { tmpDir } from '../support/samples.js';

describe('sha256 of a sparse image from its written extents, on a worker thread', () => {
  it('equals the sha256 of the whole file for any writes, hashed in one go or in two steps', async () => {
    const dir = tmpDir('extents');
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 << 20 }),
        fc.array(fc.tuple(fc.nat(3 << 20), fc.integer({ min: 1, max: 70000 }), fc.integer({ min: 1, max: 255 })), { maxLength: 30 }),
        fc.option(fc.double({ min: 0, max: 1, noNaN: true })),
        async (size, writes, splitAt) => {
          const path = join(dir, `f${n++}`);
          const fd = openSync(path, 'w+');
          const extents = new WrittenExtents();
          for (const [at, len, byte] of writes) {
            const offset = at % size;
            const length = Math.min(len, size - offset);
            writeSync(fd, Buffer.alloc(length, byte), 0, length, offset);
            extents.add(offset, length);
          }
          ftruncateSync(fd, size);
          closeSync(fd);
          const expected = createHash('sha256').update(readFileSync(path)).digest('hex');
          const hasher = new Sha256Worker(path);
          if (splitAt !== null) hasher.hashTo(Math.floor(size * splitAt), extents.ranges());
          expect(await hasher.digest(size, extents.ranges())).toBe(expected);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('reads long extents in several chunks, hashed in steps that end mid-chunk', async () => {
    const path = join(tmpDir('sha256-long'), 'long');
    const size = 21 * 1024 * 1024 + 4608;
    const data = Buffer.from(Array.from({ length: 17 * 1024 * 1024 + 123 }, (_, i) => (i * 7919) % 251));
    const fd = openSync(path, 'w');
    ftruncateSync(fd, size);
    writeSync(fd, data, 0, data.length, 3 * 1024 * 1024 + 7);
    closeSync(fd);
    const extents = new WrittenExtents();
    extents.add(3 * 1024 * 1024 + 7, data.length);
    const hasher = new Sha256Worker(path);
    for (const step of [5_000_001, 9_437_184, 13_000_000]) hasher.hashTo(step, extents.ranges());
    expect(await hasher.digest(size, extents.ranges())).toBe(createHash('sha256').update(readFileSync(path)).digest('hex'));
  });

  it('agrees with sha256sum on a whole file', async () => {
    const path = join(tmpDir('sha256-file'), 'data');
    writeFileSync(path, Buffer.from(Array.from({ length: 5_000_000 }, (_, i) => (i * 7919) % 251)));
    expect(await sha256File(path)).toBe(execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0]);
  });

  it('names the file when it is shorter than the extents say', async () => {
    const path = join(tmpDir('sha256-short'), 'short');
    writeFileSync(path, Buffer.alloc(1000, 1));
    await expect(new Sha256Worker(path).digest(4096, [[0, 4096]])).rejects.toThrow(/short ended at byte 1000, before 4096/);
  });

  it('stops when its signal aborts, and digest() says so', async () => {
    const path = join(tmpDir('sha256-abort'), 'big');
    const fd = openSync(path, 'w');
    ftruncateSync(fd, 2 ** 33);
    closeSync(fd);
    const controller = new AbortController();
    const hasher = new Sha256Worker(path, { signal: controller.signal });
    const digest = hasher.digest(2 ** 33, [[0, 2 ** 33]]);
    setTimeout(() => controller.abort(), 50);
    await expect(digest).rejects.toThrow(/worker exited/);
  });

  it('merges overlapping and adjacent ranges', () => {
    const e = new WrittenExtents();
    e.add(100, 10);
    e.add(110, 5);
    e.add(0, 20);
    e.add(15, 90);
    e.add(500, 1);
    expect(e.ranges()).toEqual([
      [0, 115],
      [500, 501],
    ]);
  });
});
