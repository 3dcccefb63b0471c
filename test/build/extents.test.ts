import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256Sparse, WrittenExtents } from '../../src/core/build/extents.js';
import { tmpDir } from '../support/samples.js';

describe('sha256 of a sparse image from its written extents', () => {
  it('equals the sha256 of the whole file for any writes', async () => {
    const dir = tmpDir('extents');
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 << 20 }),
        fc.array(fc.tuple(fc.nat(3 << 20), fc.integer({ min: 1, max: 70000 }), fc.integer({ min: 1, max: 255 })), { maxLength: 30 }),
        async (size, writes) => {
          const path = join(dir, `f${n++}`);
          const fd = openSync(path, 'w+');
          const extents = new WrittenExtents();
          for (const [at, len, byte] of writes) {
            const offset = at % size;
            const length = Math.min(len, size - offset);
            writeSync(fd, Buffer.alloc(length, byte), 0, length, offset);
            extents.add(offset, length);
          }
          const { ftruncateSync } = await import('node:fs');
          ftruncateSync(fd, size);
          closeSync(fd);
          const expected = createHash('sha256').update(readFileSync(path)).digest('hex');
          expect(await sha256Sparse(path, size, extents)).toBe(expected);
        },
      ),
      { numRuns: 40 },
    );
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
