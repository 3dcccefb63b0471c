/**
 * The STAND-IN GUEST of real-xl test B (docs/lab.md, "The stand-in guest"): a TEST DOUBLE, a Linux PVH
 * guest that replays a recorded FreeBSD bundle. Its kernel is the lab dom0's own vmlinuz, its ramdisk the
 * lab image's standin-base.cpio.gz (busybox, dash, the PV disk and ISO 9660 modules: scripts/lab/customize.sh)
 * followed by a second gzip'd newc archive made here (Linux unpacks concatenated archives in order):
 * test/lab/standin-guest/init, fbxen's REAL guest/rc.d/fbxen, guest/fbxen-collect and guest/fbxen-heartbeat,
 * the FreeBSD stand-ins of test/support/verify/standins (rc.subr as /etc/rc.subr), in front of them a
 * sysctl and a vmstat backed by the guest's real clock and a collector wrapper that picks the bundle by
 * phase (test/lab/standin-guest/), and the bundle. `fbxen boot` boots it through FBXEN_TEST_STANDIN_GUEST (test-only).
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { REPO, STANDINS } from '../support/verify/collector-harness.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

export interface NewcEntry {
  /** relative, no leading slash */
  path: string;
  /** permission bits; the type comes from the kind */
  perm: number;
  kind: 'dir' | 'file' | 'symlink' | 'chardev';
  /** file content, or the symlink's target */
  data?: Buffer | string | undefined;
  /** chardev: major, minor */
  rdev?: [number, number] | undefined;
}

const hex8 = (n: number) => {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`newc: ${n} does not fit a header field`);
  return n.toString(16).padStart(8, '0');
};
const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);

/**
 * The "new ASCII" cpio format (070701) that Linux's initramfs unpacker reads: a 110-byte header of 13
 * hex fields, the name with its NUL, padded to 4 bytes, then the data padded to 4; "TRAILER!!!" ends it.
 * Owner root, mtime 0 (reproducible), one link each.
 */
export function newc(entries: readonly NewcEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const put = (name: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0], nlink = 1) => {
    const nameBuf = Buffer.from(`${name}\0`, 'utf8');
    const header = `070701${[ino++, mode, 0, 0, nlink, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0].map(hex8).join('')}`;
    parts.push(Buffer.from(header, 'ascii'), nameBuf, pad4(110 + nameBuf.length), data, pad4(data.length));
  };
  for (const e of entries) {
    if (e.path === '' || e.path.startsWith('/') || e.path.split('/').includes('..') || e.path.includes('\0')) throw new Error(`newc: bad path ${JSON.stringify(e.path)}`);
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data, 'utf8');
    const type = { dir: S_IFDIR, file: S_IFREG, symlink: S_IFLNK, chardev: S_IFCHR }[e.kind];
    put(e.path, type | (e.perm & 0o7777), e.kind === 'dir' || e.kind === 'chardev' ? Buffer.alloc(0) : data, e.rdev ?? [0, 0], e.kind === 'dir' ? 2 : 1);
  }
  put('TRAILER!!!', 0, Buffer.alloc(0), [0, 0], 1);
  return Buffer.concat(parts);
}

/** The stand-in's kernel command line: the PV console, and the kernel quiet on it (the frame's lines). */
export const STANDIN_CMDLINE = 'console=hvc0 quiet loglevel=1';

/** The overlay archive's entries for a bundle directory (a fixture case: sections/*.out). */
export function standinOverlay(bundleDir: string): NewcEntry[] {
  const dirs = ['dev', 'sbin', 'etc', 'etc/rc.d', 'usr', 'usr/local', 'usr/local/libexec', 'var', 'var/tmp', 'tmp', 'root', 'cdrom', 'proc', 'sys', 'standin', 'standin/bin', 'standin/clock', 'standin/net', 'standin/bundle'];
  const e: NewcEntry[] = dirs.map((path) => ({ path, perm: path === 'tmp' || path === 'var/tmp' ? 0o1777 : 0o755, kind: 'dir' as const }));
  // The init's stdout before devtmpfs is mounted (the kernel opens /dev/console for it).
  e.push({ path: 'dev/console', perm: 0o600, kind: 'chardev', rdev: [5, 1] });
  const file = (path: string, from: string, perm = 0o755) => e.push({ path, perm, kind: 'file', data: readFileSync(from) });
  file('init', join(REPO, 'test/lab/standin-guest/init'));
  file('standin/clock/sysctl', join(REPO, 'test/lab/standin-guest/sysctl'));
  file('standin/clock/vmstat', join(REPO, 'test/lab/standin-guest/vmstat'));
  // the round trip's nc and route through the real PV NIC (used only when the init brought xn0 up)
  file('standin/net/nc', join(REPO, 'test/lab/standin-guest/nc'));
  file('standin/net/route', join(REPO, 'test/lab/standin-guest/route'));
  file('sbin/poweroff', join(REPO, 'test/lab/standin-guest/poweroff'));
  for (const f of readdirSync(STANDINS).sort()) file(`standin/bin/${f}`, join(STANDINS, f));
  file('etc/rc.subr', join(STANDINS, 'rc.subr'), 0o644);
  file('etc/rc.d/fbxen', join(REPO, 'guest/rc.d/fbxen'));
  file('standin/fbxen-collect', join(REPO, 'guest/fbxen-collect'));
  file('usr/local/libexec/fbxen-collect', join(REPO, 'test/lab/standin-guest/fbxen-collect'));
  file('usr/local/libexec/fbxen-heartbeat', join(REPO, 'guest/fbxen-heartbeat'));
  const walk = (from: string, to: string) => {
    for (const name of readdirSync(from).sort()) {
      const p = join(from, name);
      if (statSync(p).isDirectory()) {
        e.push({ path: `${to}/${name}`, perm: 0o755, kind: 'dir' });
        walk(p, `${to}/${name}`);
      } else file(`${to}/${name}`, p, 0o644);
    }
  };
  walk(bundleDir, 'standin/bundle');
  const env = [
    `FBXEN_STANDIN_NAME=${basename(bundleDir)}`,
    // a migration fixture (before/, after/) starts with before/; the collector's stand-in switches by phase
    `FBXEN_STANDIN_BUNDLE=/standin/bundle${existsSync(join(bundleDir, 'before')) ? '/before' : ''}`,
    'FBXEN_STANDIN_STATE=/var/tmp/standin-state',
    'FBXEN_STANDIN_CD=/cdrom',
    'FBXEN_STANDIN_LABEL_DEV=/dev/xvdb',
    'fbxen_label_dev=/dev/xvdb',
    'fbxen_enable=YES',
    'fbxen_collector=/usr/local/libexec/fbxen-collect',
    'HOME=/root',
    "PS1='# '",
    '',
  ].join('\n');
  e.push({ path: 'standin/env', perm: 0o644, kind: 'file', data: env });
  return e;
}

/**
 * Writes the stand-in into `out`: standin-initrd.gz (the image's base, then the overlay) and standin.json
 * for FBXEN_TEST_STANDIN_GUEST; returns the JSON's path.
 */
export function buildStandinGuest(opts: { imageDir: string; bundleDir: string; out: string; vif?: { ip: string; beatTo?: string | undefined } | undefined }): string {
  const base = readFileSync(join(opts.imageDir, 'standin-base.cpio.gz'));
  const ramdisk = join(opts.out, 'standin-initrd.gz');
  writeFileSync(ramdisk, Buffer.concat([base, gzipSync(newc(standinOverlay(opts.bundleDir)))]));
  const spec = join(opts.out, 'standin.json');
  // with a vif: fbxen gives it the PV NIC, the init names it xn0 and gives it this address, and its
  // heartbeat sends network beats to beatTo (init)
  const vif = opts.vif ? { cmdline: `${STANDIN_CMDLINE} fbxen.standin.ip=${opts.vif.ip}${opts.vif.beatTo ? ` fbxen.standin.beat=${opts.vif.beatTo}` : ''}`, vif: true } : { cmdline: STANDIN_CMDLINE };
  writeFileSync(spec, JSON.stringify({ kernel: join(opts.imageDir, 'vmlinuz'), ramdisk: 'standin-initrd.gz', ...vif }));
  return spec;
}
