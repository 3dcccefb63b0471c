/**
 * UFS names are byte strings. With nameEncoding 'bytes' (what the build uses) every byte of a name or
 * a symlink target other than NUL and '/' reaches the disk as given: checked by the test reader's raw
 * directory entries, the fsck-like checker, and sleuthkit's fls (which prints names as raw bytes).
 */
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { createFileBlockTarget } from '../../src/core/ufs2/target.js';
import { createUfs2Writer } from '../../src/core/ufs2/writer.js';
import { flsAll } from '../support/ufs2/sleuthkit.js';
import { checkClean, meta, MiB, tempDir, TS } from './helpers.js';

const tmp = tempDir('fbxen-ufs2-names-');
afterAll(() => tmp.cleanup());

/** Writes `names` as files (content: their index) and symlinks (target: the bytes given) under 'd'. */
async function writeBytes(path: string, files: Buffer[], links: [Buffer, Buffer][]): Promise<void> {
  const fd = openSync(path, 'w+');
  try {
    ftruncateSync(fd, 16 * MiB);
    const w = createUfs2Writer(createFileBlockTarget(fd, 0), { sizeBytes: 16 * MiB, timestamp: TS, seed: 'names', nameEncoding: 'bytes' });
    const s = (b: Buffer) => b.toString('latin1');
    for (const [i, n] of files.entries()) await w.file(`d/${s(n)}`, meta(0o644), 1, [Buffer.from([i])]);
    for (const [n, target] of links) w.symlink(`l/${s(n)}`, s(target), meta(0o755));
    await w.finish();
  } finally {
    closeSync(fd);
  }
}

const byteName = fc
  .uint8Array({ minLength: 1, maxLength: 255 })
  .map((u) => Buffer.from(u.map((x) => (x === 0 || x === 0x2f ? 0x80 : x))))
  .filter((b) => b.toString('latin1') !== '.' && b.toString('latin1') !== '..');
const uniqueNames = (max: number) => fc.uniqueArray(byteName, { minLength: 1, maxLength: max, selector: (b) => b.toString('hex') });

describe('UFS2 names as bytes', () => {
  it('property: file names and symlink targets of any bytes are stored exactly and pass the checker', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(uniqueNames(12), uniqueNames(6), fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { minLength: 6, maxLength: 6 }), async (files, linkNames, targets) => {
        const path = join(tmp.dir, `p${run++}.img`);
        const links = linkNames.map((n, i): [Buffer, Buffer] => [n, Buffer.from(targets[i]!.map((x) => x || 1))]);
        await writeBytes(path, files, links);
        const img = checkClean(path);
        try {
          const byPath = new Map(img.walk().map((e) => [e.path, e.inode]));
          const dir = (p: string) => img.readDir(byPath.get(p)!).filter((e) => e.name !== '.' && e.name !== '..');
          // Directory entries in byte order of the names, each with its own inode.
          const sorted = [...files].sort(Buffer.compare);
          expect(dir('d').map((e) => e.nameBytes.toString('hex'))).toEqual(sorted.map((n) => n.toString('hex')));
          for (const e of dir('d')) expect(img.readAll(img.readInode(e.ino))[0]).toBe(files.findIndex((n) => n.equals(e.nameBytes)));
          for (const e of dir('l')) {
            const inode = img.readInode(e.ino);
            const want = links.find(([n]) => n.equals(e.nameBytes))![1];
            const stored = inode.size < 120 ? inode.raw.subarray(112, 112 + inode.size) : img.readAll(inode);
            expect(stored.toString('hex')).toBe(want.toString('hex'));
          }
        } finally {
          img.close();
        }
      }),
      { numRuns: 25 },
    );
  });

  it('sleuthkit fls lists the raw bytes; two names that differ in a non-UTF-8 byte stay two', async () => {
    const path = join(tmp.dir, 'fls.img');
    const a = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
    const b = Buffer.from([0x63, 0x61, 0x66, 0xff]);
    await writeBytes(path, [a, b, Buffer.from('café')], [[Buffer.from('t'), Buffer.from([0x74, 0xfe])]]);
    const listed = [...flsAll(path, 0).keys()].filter((p) => p.startsWith('d/')).sort();
    expect(listed.map((p) => Buffer.from(p, 'latin1').toString('hex'))).toEqual(['d/café', a, b].map((x) => (typeof x === 'string' ? Buffer.from(x) : Buffer.concat([Buffer.from('d/'), x])).toString('hex')).sort());
  });

  it('refuses a character above 0xFF in bytes mode instead of truncating it', async () => {
    const fd = openSync(join(tmp.dir, 'wide.img'), 'w+');
    try {
      ftruncateSync(fd, 16 * MiB);
      const w = createUfs2Writer(createFileBlockTarget(fd, 0), { sizeBytes: 16 * MiB, timestamp: TS, seed: 'n', nameEncoding: 'bytes' });
      expect(() => w.directory('caf\u0100', meta(0o755))).toThrow(InputError);
      expect(() => w.symlink('x', 'to\u20ac', meta(0o755))).toThrow(/not a byte string/);
    } finally {
      closeSync(fd);
    }
  });
});
