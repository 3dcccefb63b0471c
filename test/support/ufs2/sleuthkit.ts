/**
 * sleuthkit as an independent reader of the images fbxen writes (`-f ufs2`, at the rootfs partition's
 * sector offset). Names are kept as bytes: fls prints them raw, so paths are returned as latin1 strings
 * (one character per byte) and compared with the archive's bytes.
 */
import { execFileSync } from 'node:child_process';

export interface IlsInode {
  ino: number;
  uid: number;
  gid: number;
  mtime: number;
  atime: number;
  ctime: number;
  crtime: number;
  mode: number;
  nlink: number;
  size: number;
}

const run = (tool: string, args: string[]): Buffer => execFileSync(tool, args, { maxBuffer: 1 << 28 });

/** Every allocated inode as `ils -a` lists it (st_ino|st_alloc|uid|gid|mtime|atime|ctime|crtime|mode|nlink|size). */
export function ilsAll(image: string, sectorOffset: number): Map<number, IlsInode> {
  const out = new Map<number, IlsInode>();
  for (const line of run('ils', ['-f', 'ufs2', '-o', String(sectorOffset), '-a', image]).toString().split('\n')) {
    const f = line.split('|');
    if (f.length !== 11 || !/^\d+$/.test(f[0]!)) continue;
    const n = f.map(Number);
    out.set(n[0]!, { ino: n[0]!, uid: n[2]!, gid: n[3]!, mtime: n[4]!, atime: n[5]!, ctime: n[6]!, crtime: n[7]!, mode: n[8]!, nlink: n[9]!, size: n[10]! });
  }
  return out;
}

/** `fls -r -p`: path (latin1 bytes) -> { inode, type letter }. */
export function flsAll(image: string, sectorOffset: number): Map<string, { ino: number; type: string }> {
  const out = new Map<string, { ino: number; type: string }>();
  const text = run('fls', ['-f', 'ufs2', '-o', String(sectorOffset), '-r', '-p', image]).toString('latin1');
  for (const line of text.split('\n')) {
    const m = /^(\S)\/(\S) (\d+):\t(.*)$/.exec(line);
    if (m) out.set(m[4]!, { ino: Number(m[3]), type: m[2]! }); // V/V: sleuthkit's own $OrphanFiles, not on disk
  }
  return out;
}

/** `istat`'s block list and size of one inode (the allocated data blocks, for hole checks). */
export function istatBlocks(image: string, sectorOffset: number, ino: number): { size: number; blocks: number[] } {
  const text = run('istat', ['-f', 'ufs2', '-o', String(sectorOffset), image, String(ino)]).toString();
  const size = Number(/^size: (\d+)$/m.exec(text)?.[1]);
  const list = text.split(/^Direct Blocks:$/m)[1] ?? '';
  const blocks = [...list.split(/^Indirect Blocks:$/m)[0]!.matchAll(/\d+/g)].map((m) => Number(m[0]));
  return { size, blocks };
}

/** `icat` of one inode: its data as sleuthkit reads it (holes read as zeros). */
export function icat(image: string, sectorOffset: number, ino: number): Buffer {
  return run('icat', ['-f', 'ufs2', '-o', String(sectorOffset), image, String(ino)]);
}
