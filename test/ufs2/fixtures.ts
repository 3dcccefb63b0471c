/** The feature tree shared by the writer and determinism tests. */
import { FileFlags } from '../../src/core/ufs2/types.js';
import { meta, noise, TS, type Entry } from './helpers.js';

const B = 32768;
export const longName = 'n'.repeat(251) + '.txt'; // 255 bytes
export const fastTarget = 't'.repeat(119); // longest target that lives in the inode
export const slowTarget = 's'.repeat(120); // shortest that needs a block
const toHello = './'.repeat(70) + 'hello.txt'; // a slow symlink GRUB can follow

export const featureEntries: Entry[] = [
  { kind: 'dir', path: '', meta: meta(0o755) },
  { kind: 'dir', path: 'etc', meta: meta(0o755) },
  { kind: 'dir', path: 'tmp', meta: meta(0o1777) },
  { kind: 'dir', path: 'root', meta: meta(0o750) },
  { kind: 'dir', path: 'var/empty', meta: meta(0o555, { flags: FileFlags.SF_IMMUTABLE }) },
  { kind: 'file', path: 'etc/hello.txt', meta: meta(0o644), data: Buffer.from('hello\n') },
  { kind: 'file', path: 'etc/empty', meta: meta(0o644), data: Buffer.alloc(0) },
  { kind: 'file', path: 'etc/one', meta: meta(0o600, { uid: 1001, gid: 1001 }), data: Buffer.from('x') },
  { kind: 'file', path: 'etc/f4095', meta: meta(0o644), data: noise(4095, 1) },
  { kind: 'file', path: 'etc/f4096', meta: meta(0o644), data: noise(4096, 2) },
  { kind: 'file', path: 'etc/f4097', meta: meta(0o644), data: noise(4097, 3) },
  { kind: 'file', path: 'etc/f32767', meta: meta(0o644), data: noise(B - 1, 4) },
  { kind: 'file', path: 'etc/f32768', meta: meta(0o644), data: noise(B, 5) },
  { kind: 'file', path: 'etc/f32769', meta: meta(0o644), data: noise(B + 1, 6) },
  { kind: 'file', path: 'etc/direct-only', meta: meta(0o644), data: noise(12 * B, 7) },
  { kind: 'file', path: 'etc/first-indirect', meta: meta(0o644), data: noise(12 * B + 1, 8) },
  { kind: 'file', path: 'usr/bin/su', meta: meta(0o4555, { gid: 5, flags: FileFlags.SF_IMMUTABLE }), data: noise(70_000, 9) },
  { kind: 'file', path: 'usr/bin/wall', meta: meta(0o2555, { gid: 4 }), data: noise(9000, 10) },
  { kind: 'file', path: 'usr/bin/both', meta: meta(0o6555), data: noise(100, 11) },
  { kind: 'file', path: 'usr/bin/nodump', meta: meta(0o644, { flags: FileFlags.UF_NODUMP | FileFlags.SF_APPEND }), data: noise(10, 12) },
  { kind: 'file', path: `etc/${longName}`, meta: meta(0o644), data: Buffer.from('long\n') },
  { kind: 'file', path: 'etc/ütf-8 näme', meta: meta(0o644), data: Buffer.from('utf\n') },
  { kind: 'file', path: 'etc/future', meta: meta(0o644, { mtime: TS + 10_000, mtimeNsec: 5 }), data: Buffer.from('clamped\n') },
  {
    kind: 'file',
    path: 'etc/holey',
    meta: meta(0o644),
    data: Buffer.concat([noise(B, 13), Buffer.alloc(3 * B), noise(B, 14), Buffer.alloc(B)]),
  },
  { kind: 'symlink', path: 'etc/fast', target: fastTarget, meta: meta(0o755) },
  { kind: 'symlink', path: 'etc/slow', target: slowTarget, meta: meta(0o755) },
  { kind: 'symlink', path: 'etc/short', target: 'hello.txt', meta: meta(0o777) },
  { kind: 'symlink', path: 'etc/long-to-hello', target: toHello, meta: meta(0o777) },
  { kind: 'file', path: 'rescue/rescue', meta: meta(0o555), data: noise(150_000, 15) },
  ...Array.from({ length: 10 }, (_, i): Entry => ({ kind: 'hardlink', path: `rescue/r${i}`, target: 'rescue/rescue' })),
  { kind: 'hardlink', path: 'usr/bin/su-link', target: 'usr/bin/su' },
];

