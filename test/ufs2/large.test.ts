/**
 * Sizes that break 32-bit arithmetic: an 8 GiB file system with a sparse file over 4 GiB, and a
 * file deep enough for triple indirect blocks (4 KiB blocks keep that to ~1 GiB of mostly holes).
 * Also the shape that makes Debian's makefs lose inodes: 300 directories with two files each.
 */
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildImage, checkClean, expectImageMatches, GiB, meta, MiB, noise, sparseFile, tempDir, type Entry } from './helpers.js';

const tmp = tempDir('fbxen-ufs2-large-');
afterAll(() => tmp.cleanup());

function grubRange(img: string, path: string, skip: number, length: number): Buffer {
  return execFileSync('grub-fstest', [`--skip=${skip}`, `--length=${length}`, img, 'cat', path], { maxBuffer: 16 * MiB });
}

describe('UFS2 writer: large and deep files', () => {
  it('writes an 8 GiB file system with a sparse file over 4 GiB', async () => {
    const size = 5 * GiB + 1234;
    const marks: Array<[number, Buffer]> = [
      [0, noise(5000, 1)],
      [4 * GiB - 10, noise(40, 2)], // straddles the 4 GiB boundary
      [size - 700, noise(700, 3)],
    ];
    const entries: Entry[] = [
      { kind: 'dir', path: 'data', meta: meta(0o755) },
      { kind: 'file', path: 'data/huge', meta: meta(0o644), data: sparseFile(size, marks) },
      { kind: 'file', path: 'data/after', meta: meta(0o644), data: Buffer.from('after the huge one\n') },
    ];
    const path = join(tmp.dir, 'big.img');
    const rssBefore = process.memoryUsage().rss;
    const { stats } = await buildImage(path, entries, { sizeBytes: 8 * GiB });
    // 5 GiB went through the writer; memory must not follow the data
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(256 * MiB);
    expect(stats.sizeBytes).toBe(8 * GiB);
    // only metadata and the few data blocks were written: the image stays sparse
    expect(statSync(path).blocks * 512).toBeLessThan(64 * MiB);
    const img = checkClean(path);
    expectImageMatches(img, entries, { contents: false });
    const huge = img.walk().find((e) => e.path === 'data/huge')!.inode;
    expect(huge.size).toBe(size);
    for (const [off, bytes] of marks) expect(img.readRange(huge, off, bytes.length).equals(bytes)).toBe(true);
    expect(img.readRange(huge, 2 * GiB, 4096).equals(Buffer.alloc(4096))).toBe(true);
    expect(huge.ib[1]).not.toBe(0); // double indirect reached at 32K blocks
    // cylinder groups, their maps and superblock copies lie past 4 GiB, and the checker read them there
    expect((img.sb.ncg - 1) * img.sb.fpg * img.sb.fsize).toBeGreaterThan(4 * GiB);
    img.close();
    // independent readers: sleuthkit and GRUB read the ranges past 4 GiB
    const st = execFileSync('istat', ['-f', 'ufs2', path, String(huge.ino)], { encoding: 'utf8', maxBuffer: 256 * MiB });
    expect(st).toContain(`size: ${size}\n`);
    expect(grubRange(path, '/data/huge', 4 * GiB - 10, 40).equals(marks[1]![1])).toBe(true);
    expect(grubRange(path, '/data/huge', size - 700, 700).equals(marks[2]![1])).toBe(true);
    expect(execFileSync('grub-fstest', [path, 'cat', '/data/after'], { encoding: 'utf8' })).toBe('after the huge one\n');
  });

  it('reaches triple indirect blocks (4 KiB blocks, 512-byte fragments)', async () => {
    const bsize = 4096;
    const nindir = bsize / 8;
    const tripleStart = (12 + nindir + nindir * nindir) * bsize;
    const size = tripleStart + 3 * bsize + 100;
    const marks: Array<[number, Buffer]> = [
      [5 * bsize, noise(100, 4)], // direct
      [(12 + 7) * bsize, noise(bsize, 5)], // single indirect
      [(12 + nindir + 1000) * bsize + 1, noise(200, 6)], // double indirect
      [tripleStart + bsize, noise(300, 7)], // triple indirect
      [size - 50, noise(50, 8)],
    ];
    const entries: Entry[] = [{ kind: 'file', path: 'deep', meta: meta(0o600), data: sparseFile(size, marks) }];
    const path = join(tmp.dir, 'deep.img');
    await buildImage(path, entries, { sizeBytes: 2 * GiB, blockSize: bsize, fragmentSize: 512 });
    const img = checkClean(path);
    expectImageMatches(img, entries, { contents: false });
    const deep = img.walk().find((e) => e.path === 'deep')!.inode;
    expect(deep.ib.every((a) => a !== 0)).toBe(true);
    for (const [off, bytes] of marks) expect(img.readRange(deep, off, bytes.length).equals(bytes)).toBe(true);
    // indirect blocks: 1 single, 2 on the double path, 3 on the triple path
    const extents = img.extents(deep);
    expect(extents.filter((e) => e.kind === 'indirect').length).toBe(6);
    img.close();
    for (const [off, bytes] of marks) expect(grubRange(path, '/deep', off, bytes.length).equals(bytes), `offset ${off}`).toBe(true);
  });

  it('keeps every inode in a tree of 300 directories with two files each (the makefs bug shape)', async () => {
    const entries: Entry[] = [];
    for (let d = 0; d < 300; d++) {
      entries.push({ kind: 'dir', path: `usr/share/locale/loc${String(d).padStart(3, '0')}.UTF-8`, meta: meta(0o755) });
      for (const f of ['LC_COLLATE', 'LC_CTYPE']) entries.push({ kind: 'file', path: `usr/share/locale/loc${String(d).padStart(3, '0')}.UTF-8/${f}`, meta: meta(0o444), data: noise(100 + d, d) });
    }
    const path = join(tmp.dir, 'dirs.img');
    await buildImage(path, entries, { sizeBytes: 64 * MiB });
    const img = checkClean(path);
    expectImageMatches(img, entries);
    img.close();
    const fls = execFileSync('fls', ['-r', '-p', '-f', 'ufs2', path], { encoding: 'utf8' });
    expect(fls.split('\n').filter((l) => l.startsWith('r/r')).length).toBe(600);
  });
});
