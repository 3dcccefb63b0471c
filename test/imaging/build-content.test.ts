/**
 * What fbxen build wrote into the UFS2 root equals the tar headers and data of the sets, entry by entry:
 * owner, group, mode, file flags, link targets, hard-link counts and content. The sets are listed by
 * bsdtar (libarchive), the image is read by the test tree's own UFS2 reader, and the consistency
 * checker (fsck_ffs's passes) runs on every image.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseFflags } from '../../src/core/imaging/entries.js';
import { fbxen } from '../support/cli.js';
import { sampleDist, tmpDir } from '../support/samples.js';
import { fsckUfs2 } from '../support/ufs2/fsck.js';
import { openUfs2, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../support/ufs2/reader.js';
import { flsAll, icat, ilsAll, istatBlocks } from '../support/ufs2/sleuthkit.js';

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

/**
 * A --dist whose base.txz is the sample's base with GNU tar archives appended (`tar -A`): sparse files in
 * each pax format GNU tar writes, names and a symlink target that are not UTF-8. fbxen must write
 * exactly that tree, read back by sleuthkit (fls names as raw bytes, icat contents, istat blocks).
 */
describe('the image holds exactly what the archive holds: sparse files and byte names', () => {
  const MiB = 1024 * 1024;
  const sh = (cmd: string, args: string[], cwd?: string) => execFileSync(cmd, args, { cwd, maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'pipe'] });

  it('GNU sparse 0.0, 0.1 and 1.0 become their real names and sizes with holes; non-UTF-8 names and targets stay bytes', () => {
    const work = tmpDir('exact');
    try {
      const dist = join(work, 'dist');
      const src = join(work, 'src');
      mkdirSync(dist);
      mkdirSync(join(src, 'sparse'), { recursive: true });
      copyFileSync(join(sampleDist(), 'kernel.txz'), join(dist, 'kernel.txz'));
      // 100 MiB files with three 5-byte islands: the archive stores a few KiB of each.
      const islands = [[100_000, 'hello'], [70 * MiB + 3, 'world'], [100 * MiB - 5, 'tail!']] as const;
      for (const v of ['0.0', '0.1', '1.0']) {
        const f = join(src, 'sparse', `v${v}`);
        writeFileSync(f, '');
        truncateSync(f, 100 * MiB);
        const fd = openSync(f, 'r+');
        for (const [at, text] of islands) writeSync(fd, text, at);
        closeSync(fd);
      }
      // Names as bytes: two that differ only in a byte that is not UTF-8 (they collided as U+FFFD before).
      const bytesDir = Buffer.from(join(src, 'bytes'));
      mkdirSync(bytesDir);
      const nameA = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "caf" + latin-1 e-acute: not UTF-8
      const nameB = Buffer.from([0x63, 0x61, 0x66, 0xff]);
      const nameU = Buffer.from('café', 'utf8');
      const slash = Buffer.from('/');
      writeFileSync(Buffer.concat([bytesDir, slash, nameA]), 'A');
      writeFileSync(Buffer.concat([bytesDir, slash, nameB]), 'B');
      writeFileSync(Buffer.concat([bytesDir, slash, nameU]), 'U');
      const target = Buffer.from([0x74, 0x6f, 0xfe, 0x2f, 0x78]); // "to\xfe/x"
      symlinkSync(target, Buffer.concat([bytesDir, slash, Buffer.from('link')]));

      const tar = join(work, 'base.tar');
      writeFileSync(tar, sh('xz', ['-dc', join(sampleDist(), 'base.txz')]));
      for (const v of ['0.0', '0.1', '1.0']) {
        sh('tar', ['--sparse', `--sparse-version=${v}`, '--format=posix', '-cf', join(work, `s${v}.tar`), `./sparse/v${v}`], src);
        sh('tar', ['-A', '-f', tar, join(work, `s${v}.tar`)]);
      }
      sh('bsdtar', ['--format=pax', '-cf', join(work, 'bytes.tar'), './bytes'], src);
      sh('tar', ['-A', '-f', tar, join(work, 'bytes.tar')]);
      writeFileSync(join(dist, 'base.txz'), sh('xz', ['-0', '-T1', '-c', tar]));
      const sha = createHash('sha256').update(readFileSync(join(dist, 'base.txz'))).digest('hex');
      const manifest = readFileSync(join(sampleDist(), 'MANIFEST'), 'utf8').replace(/^base\.txz\t[0-9a-f]{64}\t(\d+)/m, (_m, n: string) => `base.txz\t${sha}\t${Number(n) + 10}`);
      writeFileSync(join(dist, 'MANIFEST'), manifest);

      const out = join(work, 'out');
      // --size: sleuthkit refuses a hole longer than the whole file system ("Invalid address in run
      // (too large)"), which UFS2 allows and fbxen's default size for these sets would give.
      const r = fbxen(['build', '--dist', dist, '--out', out, '--cache-dir', join(work, 'cache'), '--disk-size', '512M', '--size', '256M', '--swap', '32M', '--format', 'raw', '--name', 'x', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const record = JSON.parse(r.stdout) as { partitions: { label: string; firstLba: number }[] };
      const image = join(out, 'x.raw');
      const at = record.partitions.find((p) => p.label === 'rootfs')!.firstLba;
      const paths = flsAll(image, at);
      const listed = [...paths.keys()];
      expect(listed.filter((p) => p.startsWith('sparse/')).sort()).toEqual(['sparse/v0.0', 'sparse/v0.1', 'sparse/v1.0']);
      expect(listed.filter((p) => p.includes('GNUSparseFile'))).toEqual([]);
      const want = createHash('sha256').update(readFileSync(join(src, 'sparse', 'v0.0'))).digest('hex');
      for (const v of ['0.0', '0.1', '1.0']) {
        const ino = paths.get(`sparse/v${v}`)!.ino;
        const data = icat(image, at, ino);
        expect([v, data.length, createHash('sha256').update(data).digest('hex')]).toEqual([v, 100 * MiB, want]);
        // Holes stay holes: three islands and the last block, not 3,200 blocks of 32 KiB.
        const { size, blocks } = istatBlocks(image, at, ino);
        expect(size).toBe(100 * MiB);
        // 3 data blocks of 8 fragments (istat lists holes as 0); 25,600 if the holes had been written.
        expect(blocks.filter((b) => b !== 0).length, `v${v} allocated fragments`).toBe(24);
      }
      const asBytes = (b: Buffer) => `bytes/${b.toString('latin1')}`;
      for (const [name, content] of [[nameA, 'A'], [nameB, 'B'], [nameU, 'U']] as const) {
        const hit = paths.get(asBytes(name));
        expect(hit, `fls lists ${name.toString('hex')}`).toBeDefined();
        expect(icat(image, at, hit!.ino).toString()).toBe(content);
      }
      // The symlink target's bytes, from the inode (a fast symlink), by the test tree's reader.
      const img = openUfs2(image, at * 512);
      try {
        const link = img.readInode(paths.get('bytes/link')!.ino);
        expect(link.raw.subarray(112, 112 + link.size)).toEqual(target);
      } finally {
        img.close();
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
