/**
 * The stand-in guest's archive writer (test/lab/standin-guest.ts) against a real consumer: GNU cpio
 * extracts what newc() wrote, byte for byte, modes and symlinks included (property test); and the overlay
 * carries fbxen's real guest scripts, the FreeBSD stand-ins and the bundle where the stand-in's init
 * expects them. Needs no lab.
 */
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REPO } from '../support/verify/collector-harness.js';
import { newc, standinOverlay, type NewcEntry } from './standin-guest.js';

function extract(archive: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'fbxen-newc-'));
  execFileSync('cpio', ['-idm', '--quiet', '--no-absolute-filenames'], { cwd: dir, input: archive });
  return dir;
}

const name = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/).filter((s) => s !== '.' && s !== '..');

describe('newc archives (the stand-in guest overlay)', () => {
  it('GNU cpio extracts every file, directory and symlink as written (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { minLength: 1, maxLength: 6 }),
        fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 6, maxLength: 6 }),
        fc.array(fc.constantFrom(0o644, 0o755, 0o600, 0o700), { minLength: 6, maxLength: 6 }),
        (names, datas, perms) => {
          const entries: NewcEntry[] = [{ path: 'd', perm: 0o755, kind: 'dir' }];
          names.forEach((n, i) => entries.push({ path: `d/${n}`, perm: perms[i]!, kind: 'file', data: Buffer.from(datas[i]!) }));
          entries.push({ path: 'link', perm: 0o777, kind: 'symlink', data: `d/${names[0]}` });
          const dir = extract(newc(entries));
          try {
            names.forEach((n, i) => {
              const p = join(dir, 'd', n);
              expect(readFileSync(p)).toEqual(Buffer.from(datas[i]!));
              expect(lstatSync(p).mode & 0o777).toBe(perms[i]);
            });
            expect(readlinkSync(join(dir, 'link'))).toBe(`d/${names[0]}`);
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('refuses paths that would leave the archive root', () => {
    for (const path of ['/etc/passwd', '../x', 'a/../../x', '']) expect(() => newc([{ path, perm: 0o644, kind: 'file', data: 'x' }])).toThrow(/bad path/);
  });

  it("the overlay: the init, fbxen's real guest scripts, the stand-ins, the clock-backed sysctl and vmstat, the bundle and its env", () => {
    const overlay = standinOverlay(join(REPO, 'fixtures/probes/migration-14.1-ok-derived'));
    // A device node needs root to extract: checked as an entry instead.
    expect(overlay.filter((e) => e.kind === 'chardev')).toEqual([{ path: 'dev/console', perm: 0o600, kind: 'chardev', rdev: [5, 1] }]);
    const dir = extract(newc(overlay.filter((e) => e.kind !== 'chardev')));
    try {
      const same = (inArchive: string, repoPath: string) => expect(readFileSync(join(dir, inArchive)).equals(readFileSync(join(REPO, repoPath))), inArchive).toBe(true);
      same('init', 'test/lab/standin-guest/init');
      same('etc/rc.d/fbxen', 'guest/rc.d/fbxen');
      same('etc/rc.subr', 'test/support/verify/standins/rc.subr');
      same('standin/fbxen-collect', 'guest/fbxen-collect');
      same('usr/local/libexec/fbxen-collect', 'test/lab/standin-guest/fbxen-collect');
      same('usr/local/libexec/fbxen-heartbeat', 'guest/fbxen-heartbeat');
      same('standin/bin/sysctl', 'test/support/verify/standins/sysctl');
      same('standin/clock/sysctl', 'test/lab/standin-guest/sysctl');
      same('standin/clock/vmstat', 'test/lab/standin-guest/vmstat');
      same('standin/bundle/after/sections/dmesg.out', 'fixtures/probes/migration-14.1-ok-derived/after/sections/dmesg.out');
      expect(lstatSync(join(dir, 'init')).mode & 0o777).toBe(0o755);
      const env = readFileSync(join(dir, 'standin/env'), 'utf8');
      expect(env).toContain('FBXEN_STANDIN_NAME=migration-14.1-ok-derived\n');
      expect(env).toContain('FBXEN_STANDIN_BUNDLE=/standin/bundle/before\n');
      expect(env).toContain('FBXEN_STANDIN_CD=/cdrom\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
