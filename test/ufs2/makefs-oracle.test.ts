/**
 * Debian's makefs as an oracle: the same entries are staged on disk (as root, so owners and modes
 * stick), makefs builds a UFS2 image from them, and our independent reader lists both images.
 * Contents, owners, modes, link counts, symlink targets and times must agree; file flags are the
 * one known difference (Debian's makefs drops them, imaging.md §1.2).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, lchownSync, linkSync, lutimesSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fsckUfs2 } from '../support/ufs2/fsck.js';
import { S_IFDIR, S_IFMT, openUfs2, type Ufs2Image } from '../support/ufs2/reader.js';
import { featureEntries } from './fixtures.js';
import { buildImage, checkClean, MiB, sha256, tempDir, TS, type Entry } from './helpers.js';

const tmp = tempDir('fbxen-ufs2-makefs-');
afterAll(() => tmp.cleanup());

const isRoot = process.getuid?.() === 0;

function stage(root: string, entries: readonly Entry[]): void {
  mkdirSync(root);
  const dirs: Array<[string, Entry & { kind: 'dir' }]> = [];
  const mkParents = (p: string): void => {
    mkdirSync(join(root, p, '..'), { recursive: true });
  };
  for (const e of entries) {
    const at = join(root, e.path);
    if (e.kind === 'dir') {
      mkdirSync(at, { recursive: true });
      dirs.push([at, e]);
    } else if (e.kind === 'file') {
      mkParents(e.path);
      const d = e.data as Buffer;
      writeFileSync(at, d);
      lchownSync(at, e.meta.uid, e.meta.gid); // before chmod: chown clears setuid/setgid
      chmodSync(at, e.meta.mode);
      utimesSync(at, Math.min(e.meta.mtime, TS), Math.min(e.meta.mtime, TS));
    } else if (e.kind === 'symlink') {
      mkParents(e.path);
      symlinkSync(e.target, at);
      lchownSync(at, e.meta.uid, e.meta.gid);
      lutimesSync(at, e.meta.mtime, e.meta.mtime);
    } else {
      mkParents(e.path);
      linkSync(join(root, e.target), at);
    }
  }
  // implicit parents as the writer makes them; explicit directories last (0555 ones would block writes)
  const implicitTime = TS;
  const walkDirs = (p: string): void => {
    for (const name of execFileSync('find', [p, '-mindepth', '1', '-type', 'd'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
      chmodSync(name, 0o755);
      utimesSync(name, implicitTime, implicitTime);
    }
  };
  walkDirs(root);
  for (const [at, e] of dirs) {
    lchownSync(at, e.meta.uid, e.meta.gid);
    chmodSync(at, e.meta.mode);
    utimesSync(at, e.meta.mtime, e.meta.mtime);
  }
}

function listing(img: Ufs2Image): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { path, inode: i } of img.walk()) {
    const type = i.mode & S_IFMT;
    const content = type === S_IFDIR ? '' : type === 0o120000 ? img.symlinkTarget(i) : sha256(img.readAll(i));
    out[path] = [i.mode.toString(8), i.uid, i.gid, type === S_IFDIR ? '-' : i.size, i.nlink, path === '' ? '-' : i.mtime, content].join(' ');
  }
  return out;
}

describe.runIf(isRoot)('UFS2 writer against Debian makefs', () => {
  it('builds the same tree as makefs from the same entries', async () => {
    // Linux symlinks are always 0777, so that is the only symlink mode a staging tree can carry.
    const entries = featureEntries
      .filter((e) => e.path !== '')
      .map((e): Entry => (e.kind === 'symlink' ? { ...e, meta: { ...e.meta, mode: 0o777 } } : e));
    const stageDir = join(tmp.dir, 'stage');
    stage(stageDir, entries);
    const theirs = join(tmp.dir, 'makefs.img');
    execFileSync('makefs', ['-t', 'ffs', '-B', 'little', '-o', 'version=2,bsize=32768,fsize=4096', '-s', '64m', theirs, stageDir], { stdio: 'pipe' });
    const ours = join(tmp.dir, 'ours.img');
    await buildImage(ours, entries, { sizeBytes: 64 * MiB });
    const a = checkClean(ours);
    const b = openUfs2(theirs);
    expect(b.sb.location).toBe(8192); // makefs's superblock position: our reader found it independently
    // the checker's passes accept an image from an independent writer (only the location differs)
    expect(fsckUfs2(b, { anySuperblockLocation: true })).toEqual([]);
    const mine = listing(a);
    const theirsList = listing(b);
    delete mine[''];
    delete theirsList[''];
    expect(mine).toEqual(theirsList);
    // flags: ours keep them, Debian's makefs loses them
    const flagsOf = (img: Ufs2Image): number[] => img.walk().map((e) => e.inode.flags);
    expect(flagsOf(b).every((f) => f === 0)).toBe(true);
    expect(flagsOf(a).some((f) => f !== 0)).toBe(true);
    a.close();
    b.close();
  });
});
