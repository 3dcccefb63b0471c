/**
 * The file block target: writes land at the partition offset of a bigger disk image, adjacent small
 * writes are gathered, all-zero buffers are skipped (the image stays sparse), and both a numeric fd
 * and a FileHandle work. sleuthkit reads the file system inside the image at its sector offset.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createFileBlockTarget } from '../../src/core/ufs2/target.js';
import { createUfs2Writer } from '../../src/core/ufs2/writer.js';
import { fsckUfs2 } from '../support/ufs2/fsck.js';
import { openUfs2 } from '../support/ufs2/reader.js';
import { meta, MiB, noise, tempDir, TS } from './helpers.js';

const tmp = tempDir('fbxen-ufs2-target-');
afterAll(() => tmp.cleanup());

describe('file block target', () => {
  it('gathers adjacent writes, skips zeros and writes at the base offset', async () => {
    const p = join(tmp.dir, 't.bin');
    const fd = openSync(p, 'w+');
    ftruncateSync(fd, 64 * MiB);
    const t = createFileBlockTarget(fd, 1 * MiB);
    for (let i = 0; i < 100; i++) await t.write(noise(4096, i + 1), i * 4096);
    await t.write(Buffer.alloc(32 * MiB), 16 * MiB); // zeros: not written
    await t.write(noise(6 * MiB, 99), 50 * MiB); // big: written directly
    await t.flush();
    closeSync(fd);
    expect(t.stats.writeCalls).toBe(2);
    expect(t.stats.bytesWritten).toBe(100 * 4096 + 6 * MiB);
    const data = readFileSync(p);
    expect(data.subarray(MiB + 4096 * 7, MiB + 4096 * 8).equals(noise(4096, 8))).toBe(true);
    expect(data.subarray(0, MiB).equals(Buffer.alloc(MiB))).toBe(true);
    expect(data.subarray(51 * MiB, 57 * MiB).equals(noise(6 * MiB, 99))).toBe(true);
    expect(statSync(p).blocks * 512).toBeLessThan(16 * MiB);
  });

  it('writes a file system into a partition of a disk image through a FileHandle', async () => {
    const p = join(tmp.dir, 'disk.img');
    const partOffset = 2048 * 512;
    const fsSize = 32 * MiB;
    const fh = await open(p, 'w+');
    await fh.truncate(partOffset + fsSize + MiB);
    const w = createUfs2Writer(createFileBlockTarget(fh, partOffset), { sizeBytes: fsSize, timestamp: TS, seed: 'p' });
    w.directory('boot', meta(0o755));
    await w.file('boot/loader.conf', meta(0o644), 17, [Buffer.from('autoboot_delay=1\n')]);
    await w.finish();
    await fh.close();
    const img = openUfs2(p, partOffset);
    expect(fsckUfs2(img)).toEqual([]);
    img.close();
    const fls = execFileSync('fls', ['-r', '-p', '-f', 'ufs2', '-o', '2048', p], { encoding: 'utf8' });
    expect(fls).toContain('boot/loader.conf');
  });
});
