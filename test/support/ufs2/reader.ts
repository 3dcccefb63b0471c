/**
 * An independent UFS2 reader for tests, written from FreeBSD's headers (sys/ufs/ffs/fs.h,
 * sys/ufs/ufs/dinode.h, sys/ufs/ufs/dir.h), not from the writer's encoders. Reads with positioned
 * reads, so multi-GiB sparse images are fine. It finds the superblock where FreeBSD looks for it
 * (64K, 8K, 0, 256K), so it also reads makefs images.
 */
import { closeSync, openSync, readSync } from 'node:fs';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

export interface Superblock {
  location: number;
  sblkno: number;
  cblkno: number;
  iblkno: number;
  dblkno: number;
  ncg: number;
  bsize: number;
  fsize: number;
  frag: number;
  minfree: number;
  bmask: number;
  fmask: number;
  bshift: number;
  fshift: number;
  maxcontig: number;
  maxbpg: number;
  fragshift: number;
  fsbtodb: number;
  sbsize: number;
  nindir: number;
  inopb: number;
  cssize: number;
  cgsize: number;
  ipg: number;
  fpg: number;
  clean: number;
  oldFlags: number;
  volname: string;
  maxbsize: number;
  metaspace: number;
  sblockactualloc: number;
  sblockloc: number;
  cstotal: { ndir: number; nbfree: number; nifree: number; nffree: number; numclusters: number };
  time: number;
  size: number;
  dsize: number;
  csaddr: number;
  flags: number;
  contigsumsize: number;
  maxsymlinklen: number;
  maxfilesize: bigint;
  qbmask: bigint;
  qfmask: bigint;
  magic: number;
  metackhash: number;
  raw: Buffer;
}

export interface Inode {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocks: number;
  atime: number;
  mtime: number;
  ctime: number;
  birthtime: number;
  mtimensec: number;
  gen: number;
  flags: number;
  db: number[];
  ib: number[];
  raw: Buffer;
}

export interface DirEntry {
  ino: number;
  reclen: number;
  type: number;
  name: string;
  nameBytes: Buffer;
  offset: number;
}

export interface CylinderGroup {
  magic: number;
  cgx: number;
  ndblk: number;
  cs: { ndir: number; nbfree: number; nifree: number; nffree: number };
  frsum: number[];
  iusedoff: number;
  freeoff: number;
  nextfreeoff: number;
  clustersumoff: number;
  clusteroff: number;
  nclusterblks: number;
  niblk: number;
  initediblk: number;
  raw: Buffer;
}

/** A run of fragments an inode owns: data blocks (with their logical number) or indirect blocks. */
export interface Extent {
  kind: 'data' | 'indirect';
  addr: number;
  frags: number;
  lbn: number;
}

const FS_UFS2_MAGIC = 0x19540119;

export class Ufs2Image {
  readonly sb: Superblock;
  private readonly fd: number;
  constructor(
    readonly path: string,
    readonly baseOffset = 0,
  ) {
    this.fd = openSync(path, 'r');
    let found: Superblock | undefined;
    for (const loc of [65536, 8192, 0, 262144]) {
      const sb = this.parseSuperblock(this.read(loc, 8192), loc);
      if (sb.magic === FS_UFS2_MAGIC) {
        found = sb;
        break;
      }
    }
    if (!found) {
      closeSync(this.fd);
      throw new Error(`${path}: no UFS2 superblock`);
    }
    this.sb = found;
  }

  close(): void {
    closeSync(this.fd);
  }

  read(offset: number, length: number): Buffer {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, this.baseOffset + offset + done);
      if (n === 0) break;
      done += n;
    }
    return buf;
  }

  parseSuperblock(b: Buffer, location: number): Superblock {
    const i32 = (o: number): number => b.readInt32LE(o);
    const i64 = (o: number): number => Number(b.readBigInt64LE(o));
    return {
      location,
      sblkno: i32(8),
      cblkno: i32(12),
      iblkno: i32(16),
      dblkno: i32(20),
      ncg: b.readUInt32LE(44),
      bsize: i32(48),
      fsize: i32(52),
      frag: i32(56),
      minfree: i32(60),
      bmask: i32(72),
      fmask: i32(76),
      bshift: i32(80),
      fshift: i32(84),
      maxcontig: i32(88),
      maxbpg: i32(92),
      fragshift: i32(96),
      fsbtodb: i32(100),
      sbsize: i32(104),
      nindir: i32(116),
      inopb: b.readUInt32LE(120),
      cssize: i32(156),
      cgsize: i32(160),
      ipg: b.readUInt32LE(184),
      fpg: i32(188),
      clean: b[209]!,
      oldFlags: b[211]!,
      volname: b.subarray(680, 712).toString('latin1').replace(/\0.*$/s, ''),
      maxbsize: i32(860),
      metaspace: i64(880),
      sblockactualloc: i64(992),
      sblockloc: i64(1000),
      cstotal: { ndir: i64(1008), nbfree: i64(1016), nifree: i64(1024), nffree: i64(1032), numclusters: i64(1040) },
      time: i64(1072),
      size: i64(1080),
      dsize: i64(1088),
      csaddr: i64(1096),
      flags: i32(1312),
      contigsumsize: i32(1316),
      maxsymlinklen: i32(1320),
      maxfilesize: b.readBigUInt64LE(1328),
      qbmask: b.readBigInt64LE(1336),
      qfmask: b.readBigInt64LE(1344),
      magic: i32(1372),
      metackhash: b.readUInt32LE(1308),
      raw: b.subarray(0, 1376),
    };
  }

  cgBase(cg: number): number {
    return cg * this.sb.fpg;
  }

  readCg(cg: number): CylinderGroup {
    const b = this.read((this.cgBase(cg) + this.sb.cblkno) * this.sb.fsize, this.sb.cgsize);
    const u = (o: number): number => b.readUInt32LE(o);
    return {
      magic: u(4),
      cgx: u(12),
      ndblk: u(20),
      cs: { ndir: u(24), nbfree: u(28), nifree: u(32), nffree: u(36) },
      frsum: Array.from({ length: 8 }, (_, i) => u(52 + 4 * i)),
      iusedoff: u(92),
      freeoff: u(96),
      nextfreeoff: u(100),
      clustersumoff: u(104),
      clusteroff: u(108),
      nclusterblks: u(112),
      niblk: u(116),
      initediblk: u(120),
      raw: b,
    };
  }

  /** Byte offset of inode `ino` (ino_to_fsba / ino_to_fsbo in fs.h). */
  inodeOffset(ino: number): number {
    const { ipg, inopb, iblkno, fsize, frag } = this.sb;
    const cg = Math.floor(ino / ipg);
    const blockFrag = this.cgBase(cg) + iblkno + Math.floor((ino % ipg) / inopb) * frag;
    return blockFrag * fsize + (ino % inopb) * 256;
  }

  /** The first `count` inodes of group `cg`, read in one go (inode tables are contiguous). */
  readInodesOfCg(cg: number, count: number): Inode[] {
    const first = cg * this.sb.ipg;
    const table = this.read(this.inodeOffset(first), count * 256);
    return Array.from({ length: count }, (_, i) => this.parseInode(first + i, table.subarray(i * 256, i * 256 + 256)));
  }

  readInode(ino: number): Inode {
    return this.parseInode(ino, this.read(this.inodeOffset(ino), 256));
  }

  parseInode(ino: number, b: Buffer): Inode {
    const i64 = (o: number): number => Number(b.readBigInt64LE(o));
    return {
      ino,
      mode: b.readUInt16LE(0),
      nlink: b.readInt16LE(2),
      uid: b.readUInt32LE(4),
      gid: b.readUInt32LE(8),
      size: Number(b.readBigUInt64LE(16)),
      blocks: Number(b.readBigUInt64LE(24)),
      atime: i64(32),
      mtime: i64(40),
      ctime: i64(48),
      birthtime: i64(56),
      mtimensec: b.readInt32LE(64),
      gen: b.readUInt32LE(80),
      flags: b.readUInt32LE(88),
      db: Array.from({ length: 12 }, (_, i) => i64(112 + 8 * i)),
      ib: Array.from({ length: 3 }, (_, i) => i64(208 + 8 * i)),
      raw: b,
    };
  }

  isFastSymlink(ino: Inode): boolean {
    return (ino.mode & S_IFMT) === S_IFLNK && ino.size < this.sb.maxsymlinklen && ino.blocks === 0;
  }

  /** Size in bytes of logical block `lbn` of a file of `size` bytes (sblksize in fs.h). */
  blockSize(size: number, lbn: number): number {
    const { bsize, fsize } = this.sb;
    if (lbn >= 12 || size >= (lbn + 1) * bsize) return bsize;
    return Math.ceil((size % bsize) / fsize) * fsize;
  }

  /** Every block the inode owns, walking the indirect tree (holes are skipped). */
  extents(ino: Inode): Extent[] {
    const out: Extent[] = [];
    if ((ino.mode & S_IFMT) === S_IFLNK && this.isFastSymlink(ino)) return out;
    const { bsize, fsize, frag, nindir } = this.sb;
    const nblocks = Math.ceil(ino.size / bsize);
    for (let lbn = 0; lbn < 12 && lbn < nblocks; lbn++) {
      const a = ino.db[lbn]!;
      if (a !== 0) out.push({ kind: 'data', addr: a, frags: this.blockSize(ino.size, lbn) / fsize, lbn });
    }
    let first = 12;
    let span = nindir;
    for (let level = 0; level < 3; level++) {
      const top = ino.ib[level]!;
      if (top !== 0) this.walkIndirect(top, level, first, nblocks, out);
      first += span;
      span *= nindir;
    }
    void frag;
    return out;
  }

  private walkIndirect(addr: number, level: number, firstLbn: number, nblocks: number, out: Extent[]): void {
    const { bsize, frag, nindir } = this.sb;
    out.push({ kind: 'indirect', addr, frags: frag, lbn: -1 });
    const b = this.read(addr * this.sb.fsize, bsize);
    const per = nindir ** level;
    for (let i = 0; i < nindir; i++) {
      const p = Number(b.readBigInt64LE(i * 8));
      if (p === 0) continue;
      const lbn = firstLbn + i * per;
      if (level === 0) out.push({ kind: 'data', addr: p, frags: frag, lbn });
      else this.walkIndirect(p, level - 1, lbn, nblocks, out);
    }
  }

  /** Map from logical block number to fragment address (data blocks only). */
  blockMap(ino: Inode): Map<number, number> {
    const m = new Map<number, number>();
    for (const e of this.extents(ino)) if (e.kind === 'data') m.set(e.lbn, e.addr);
    return m;
  }

  readRange(ino: Inode, offset: number, length: number): Buffer {
    const out = Buffer.alloc(Math.max(0, Math.min(length, ino.size - offset)));
    if (this.isFastSymlink(ino)) {
      ino.raw.copy(out, 0, 112 + offset, 112 + offset + out.length);
      return out;
    }
    const map = this.blockMap(ino);
    const { bsize, fsize } = this.sb;
    let pos = 0;
    while (pos < out.length) {
      const off = offset + pos;
      const lbn = Math.floor(off / bsize);
      const inBlock = off % bsize;
      const n = Math.min(bsize - inBlock, out.length - pos);
      const addr = map.get(lbn);
      if (addr !== undefined) this.read(addr * fsize + inBlock, n).copy(out, pos);
      pos += n;
    }
    return out;
  }

  readAll(ino: Inode): Buffer {
    return this.readRange(ino, 0, ino.size);
  }

  readDir(ino: Inode): DirEntry[] {
    const data = this.readAll(ino);
    const out: DirEntry[] = [];
    let off = 0;
    while (off + 8 <= data.length) {
      const reclen = data.readUInt16LE(off + 4);
      const namlen = data[off + 7]!;
      const nameBytes = data.subarray(off + 8, off + 8 + namlen);
      const e = { ino: data.readUInt32LE(off), reclen, type: data[off + 6]!, name: nameBytes.toString('utf8'), nameBytes, offset: off };
      if (e.ino !== 0) out.push(e);
      if (reclen === 0) break;
      off += reclen;
    }
    return out;
  }

  symlinkTarget(ino: Inode): string {
    return this.readAll(ino).toString('utf8');
  }

  /** Every path in the tree (root is ''), depth first in directory order. */
  walk(): Array<{ path: string; inode: Inode }> {
    const out: Array<{ path: string; inode: Inode }> = [];
    const visit = (dirIno: number, prefix: string, depth: number): void => {
      if (depth > 256) throw new Error('directory tree too deep (loop?)');
      const dir = this.readInode(dirIno);
      for (const e of this.readDir(dir)) {
        if (e.name === '.' || e.name === '..') continue;
        const path = prefix ? `${prefix}/${e.name}` : e.name;
        const inode = this.readInode(e.ino);
        out.push({ path, inode });
        if ((inode.mode & S_IFMT) === S_IFDIR) visit(e.ino, path, depth + 1);
      }
    };
    out.push({ path: '', inode: this.readInode(2) });
    visit(2, '', 0);
    return out;
  }
}

export function openUfs2(path: string, baseOffset = 0): Ufs2Image {
  return new Ufs2Image(path, baseOffset);
}
