/**
 * What fbxen build wrote into the UFS2 root equals the tar headers and data of the sets, entry by entry:
 * owner, group, mode, file flags, link targets, hard-link counts and content. The sets are listed by
 * bsdtar (libarchive), the image is read by the test tree's own UFS2 reader, and the consistency
 * checker (fsck_ffs's passes) runs on every image.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseFflags } from '../../src/core/build/entries.js';
import { fbxen } from '../support/cli.js';
import { sampleDist, tmpDir } from '../support/samples.js';
import { fsckUfs2 } from '../support/ufs2/fsck.js';
import { openUfs2, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../support/ufs2/reader.js';
import { flsAll, ilsAll } from '../support/ufs2/sleuthkit.js';

interface MtreeEntry {
  type: string;
  uid: number;
  gid: number;
  mode: number;
  flags: number;
  link?: string;
  sha256?: string;
}

/** bsdtar's mtree listing of a set: the tar headers as libarchive reads them. */
function listSet(txz: string): Map<string, MtreeEntry> {
  const text = execFileSync('bsdtar', ['-cf', '-', '--format=mtree', '--options=!all,type,uid,gid,mode,flags,link,sha256', `@${txz}`], { maxBuffer: 1 << 28 }).toString();
  const out = new Map<string, MtreeEntry>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const [rawName, ...kv] = line.split(' ');
    const rec: Record<string, string> = {};
    for (const p of kv) rec[p.slice(0, p.indexOf('='))] = p.slice(p.indexOf('=') + 1);
    const name = (rawName === '/.' ? '.' : rawName!).replace(/^\.\/?/, '').replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.set(name, {
      type: rec.type!,
      uid: Number(rec.uid),
      gid: Number(rec.gid),
      mode: parseInt(rec.mode!, 8),
      flags: rec.flags && rec.flags !== 'none' ? parseFflags(rec.flags, name) : 0,
      ...(rec.link !== undefined ? { link: rec.link } : {}),
      ...(rec.sha256digest !== undefined ? { sha256: rec.sha256digest } : {}),
    });
  }
  return out;
}

/** Hard links in the sets: bsdtar -tv shows "link to". */
function hardLinks(txz: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of execFileSync('bsdtar', ['-tvf', txz], { maxBuffer: 1 << 28 }).toString().split('\n')) {
    const m = / (\.\/\S+) link to (\.\/\S+)$/.exec(line);
    if (m) out.set(m[1]!.slice(2), m[2]!.slice(2));
  }
  return out;
}

const REPLACED = new Set(['boot/loader.conf', 'etc/rc.conf', 'etc/fstab', 'usr/local/libexec/fbxen-collect', 'usr/local/libexec/fbxen-heartbeat', 'usr/local/etc/rc.d/fbxen']);

for (const arch of ['amd64', 'i386'] as const) {
  describe(`image content equals the sets (${arch})`, () => {
    it('matches every entry, passes the consistency checker, and carries the customisation', () => {
      const dist = sampleDist({ arch });
      const out = tmpDir('content');
      const r = fbxen(['build', '--dist', dist, '--arch', arch, '--out', out, '--cache-dir', join(out, 'cache'), '--disk-size', '256M', '--swap', '32M', '--format', 'raw', '--name', 'c', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const record = JSON.parse(r.stdout) as { partitions: { label: string; firstLba: number }[]; timestamp: number };
      const rootfs = record.partitions.find((p) => p.label === 'rootfs')!;
      const img = openUfs2(join(out, 'c.raw'), rootfs.firstLba * 512);
      try {
        expect(fsckUfs2(img, { requireSortedDirs: true })).toEqual([]);

        const expected = new Map([...listSet(join(dist, 'base.txz')), ...listSet(join(dist, 'kernel.txz'))]);
        const links = new Map([...hardLinks(join(dist, 'base.txz')), ...hardLinks(join(dist, 'kernel.txz'))]);
        const walked = img.walk();
        const byPath = new Map(walked.map((w) => [w.path, w.inode]));
        const namesPerInode = new Map<number, number>();
        for (const w of walked) if ((w.inode.mode & S_IFMT) !== S_IFDIR) namesPerInode.set(w.inode.ino, (namesPerInode.get(w.inode.ino) ?? 0) + 1);

        let checked = 0;
        for (const [path, e] of expected) {
          if (REPLACED.has(path)) continue;
          const ino = byPath.get(path);
          expect(ino, path).toBeDefined();
          const i = ino!;
          const type = { dir: S_IFDIR, file: S_IFREG, link: S_IFLNK }[e.type];
          expect(i.mode & S_IFMT, path).toBe(type);
          expect([i.mode & 0o7777, i.uid, i.gid, i.flags], path).toEqual([e.mode, e.uid, e.gid, e.flags]);
          if (e.type === 'link') expect(img.symlinkTarget(i), path).toBe(e.link);
          if (e.type === 'file') {
            const target = links.get(path);
            if (target) expect(i.ino, `${path} is a hard link to ${target}`).toBe(byPath.get(target)!.ino);
            else expect(createHash('sha256').update(img.readAll(i)).digest('hex'), path).toBe(e.sha256);
            expect(i.nlink, `${path} link count`).toBe(namesPerInode.get(i.ino));
          }
          expect(i.mtime, path).toBeLessThanOrEqual(record.timestamp);
          checked++;
        }
        expect(checked).toBeGreaterThan(300);
        // Nothing but the sets, the customisation and the directories it needs.
        const extra = walked.map((w) => w.path).filter((p) => !expected.has(p) && !REPLACED.has(p));
        expect(extra.sort()).toEqual(['usr/local/etc', 'usr/local/etc/rc.d', 'usr/local/libexec']);

        // The customisation: files, owners and modes from templates/files.yaml.
        const collector = byPath.get('usr/local/libexec/fbxen-collect')!;
        expect([collector.mode & 0o7777, collector.uid, collector.gid]).toEqual([0o555, 0, 0]);
        expect(img.readAll(collector)).toEqual(readFileSync(join(__dirname, '../../guest/fbxen-collect')));
        const heartbeat = byPath.get('usr/local/libexec/fbxen-heartbeat')!;
        expect([heartbeat.mode & 0o7777, heartbeat.uid, heartbeat.gid]).toEqual([0o555, 0, 0]);
        expect(img.readAll(heartbeat)).toEqual(readFileSync(join(__dirname, '../../guest/fbxen-heartbeat')));
        expect(img.readAll(byPath.get('etc/rc.conf')!).toString()).toContain('hostname="c"');
        // Flags survived: schg on the files FreeBSD marks so.
        expect(byPath.get('usr/bin/su')!.flags).toBe(parseFflags('schg', 'su'));
        expect(byPath.get('var/empty')!.flags).toBe(parseFflags('schg', 'var/empty'));
        expect(byPath.get('usr/bin/su')!.mode & 0o7777).toBe(0o4555);
        expect(byPath.get('tmp')!.mode & 0o7777).toBe(0o1777);
        expect(byPath.get('rescue/rescue')!.nlink).toBe(13);
      } finally {
        img.close();
      }
    });
  });
}

/** bsdtar's view of the sets' mtimes (whole seconds), by path. */
function setTimes(txz: string): Map<string, number> {
  const text = execFileSync('bsdtar', ['-cf', '-', '--format=mtree', '--options=!all,time', `@${txz}`], { maxBuffer: 1 << 28 }).toString();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\S+) time=(\d+)/.exec(line);
    if (!m) continue;
    const name = (m[1] === '/.' ? '.' : m[1]!).replace(/^\.\/?/, '').replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.set(name, Number(m[2]));
  }
  return out;
}

describe('inode times (read back by sleuthkit: fls and ils on every inode)', () => {
  const dist = sampleDist();
  const mtimes = new Map([...setTimes(join(dist, 'base.txz')), ...setTimes(join(dist, 'kernel.txz'))]);
  // The sample's entries all carry 1717200000; an epoch below it clamps them, one above it does not.
  for (const epoch of [undefined, '1717100000', '1717300000']) {
    it(`SOURCE_DATE_EPOCH=${epoch ?? '(unset)'}: mtime/atime from the sets clamped to the build timestamp, ctime/birthtime the build timestamp`, () => {
      const out = tmpDir('times');
      const r = fbxen(['build', '--dist', dist, '--out', out, '--cache-dir', join(out, 'cache'), '--disk-size', '256M', '--swap', '32M', '--format', 'raw', '--name', 't', '--json'], { env: { SOURCE_DATE_EPOCH: epoch } });
      expect(r.code, r.stderr).toBe(0);
      const record = JSON.parse(r.stdout) as { partitions: { label: string; firstLba: number }[]; timestamp: number };
      const T = record.timestamp;
      expect(T).toBe(epoch ? Number(epoch) : 1717200000);
      const image = join(out, 't.raw');
      const at = record.partitions.find((p) => p.label === 'rootfs')!.firstLba;
      const inodes = ilsAll(image, at);
      const paths = flsAll(image, at);
      paths.set('', { ino: 2, type: 'd' });
      const virtual = paths.get('$OrphanFiles');
      expect(virtual?.type).toBe('V'); // sleuthkit's virtual directory, numbered after the last inode
      paths.delete('$OrphanFiles');
      const expectedMtime = new Map<number, number>();
      for (const [path, { ino }] of paths) {
        const fromSet = REPLACED.has(path) ? undefined : mtimes.get(path);
        // Files of fbxen's customisation and directories tar left implicit carry the build timestamp.
        expectedMtime.set(ino, fromSet === undefined ? T : Math.min(fromSet, T));
      }
      // sleuthkit does not read UFS2's di_birthtime (ils prints 0, istat has no line for it): the
      // birthtime comes from the test tree's own reader, written from FreeBSD's dinode.h.
      const img = openUfs2(image, at * 512);
      let checked = 0;
      try {
        for (const [ino, i] of inodes) {
          if (ino < 2 || ino === virtual!.ino) continue; // reserved inodes 0 and 1; sleuthkit's own
          expect(expectedMtime.has(ino), `inode ${ino} is reachable`).toBe(true);
          const birthtime = img.readInode(ino).birthtime;
          expect({ ino, mtime: i.mtime, atime: i.atime, ctime: i.ctime, birthtime }).toEqual({ ino, mtime: expectedMtime.get(ino), atime: expectedMtime.get(ino), ctime: T, birthtime: T });
          checked++;
        }
      } finally {
        img.close();
        rmSync(out, { recursive: true, force: true });
      }
      expect(checked).toBe(new Set([...paths.values()].map((p) => p.ino)).size);
      expect(checked).toBeGreaterThan(300);
    });
  }
});
