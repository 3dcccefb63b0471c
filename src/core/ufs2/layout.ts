/**
 * Encoders for the on-disk UFS2 structures: struct fs (superblock), struct cg, struct ufs2_dinode
 * and struct direct, little-endian, at the offsets of sys/ufs/ffs/fs.h, sys/ufs/ufs/dinode.h and
 * sys/ufs/ufs/dir.h. 64-bit fields go through BigInt so offsets past 4 GiB are exact.
 */
import {
  CG_MAGIC,
  DINODE2_SIZE,
  DIRBLKSIZ,
  FS_FLAGS_UPDATED,
  FS_UFS2_MAGIC,
  MAXSYMLINKLEN_UFS2,
  SBLOCK_UFS2,
  type Geometry,
} from './geometry.js';

export interface CsTotals {
  ndir: number;
  nbfree: number;
  nifree: number;
  nffree: number;
}

export interface SuperblockFields {
  timestamp: number;
  fsId: [number, number];
  volumeLabel: string;
  totals: CsTotals;
  /** fs_sblockactualloc: byte offset of this copy. */
  actualLocation: number;
}

/** struct fs, fs_sbsize bytes. */
export function encodeSuperblock(g: Geometry, f: SuperblockFields): Buffer {
  const buf = Buffer.alloc(g.sbsize);
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const i32 = (off: number, val: number): void => v.setInt32(off, val | 0, true);
  const u32 = (off: number, val: number): void => v.setUint32(off, val >>> 0, true);
  const i64 = (off: number, val: number | bigint): void => v.setBigInt64(off, BigInt(val), true);
  i32(8, g.sblkno);
  i32(12, g.cblkno);
  i32(16, g.iblkno);
  i32(20, g.dblkno);
  // fs_old_cgoffset and fs_old_cgmask stay 0: newfs sets them only for UFS1 (cgstart() ignores them for UFS2)
  u32(44, g.ncg);
  i32(48, g.bsize);
  i32(52, g.fsize);
  i32(56, g.frag);
  i32(60, g.minfree);
  i32(72, ~(g.bsize - 1));
  i32(76, ~(g.fsize - 1));
  i32(80, g.bshift);
  i32(84, g.fshift);
  i32(88, g.maxcontig);
  i32(92, g.maxbpg);
  i32(96, g.fragshift);
  i32(100, g.fsbtodb);
  i32(104, g.sbsize);
  i32(116, g.nindir);
  u32(120, g.inopb);
  i32(128, 0); // fs_optim = FS_OPTTIME
  i32(144, f.fsId[0]);
  i32(148, f.fsId[1]);
  i32(156, g.cssize);
  i32(160, g.cgsize);
  u32(184, g.ipg);
  i32(188, g.fpg);
  buf[208] = 0; // fs_fmod
  buf[209] = 1; // fs_clean
  buf[210] = 0; // fs_ronly
  buf[211] = FS_FLAGS_UPDATED; // fs_old_flags
  Buffer.from(f.volumeLabel, 'ascii').copy(buf, 680, 0, 31);
  i32(860, g.maxbsize);
  i64(872, g.sizeFrags); // fs_providersize
  i64(880, g.metaspace);
  i64(992, f.actualLocation);
  i64(1000, SBLOCK_UFS2);
  i64(1008, f.totals.ndir);
  i64(1016, f.totals.nbfree);
  i64(1024, f.totals.nifree);
  i64(1032, f.totals.nffree);
  i64(1072, f.timestamp);
  i64(1080, g.sizeFrags);
  i64(1088, g.dsize);
  i64(1096, g.csaddr);
  u32(1196, 16384); // fs_avgfilesize (AVFILESIZ)
  u32(1200, 64); // fs_avgfpdir (AFPDIR)
  i64(1208, f.timestamp); // fs_mtime
  i32(1312, 0); // fs_flags: no soft updates, no check hashes
  i32(1316, g.contigsumsize);
  i32(1320, MAXSYMLINKLEN_UFS2);
  v.setBigUint64(1328, g.maxfilesize, true);
  i64(1336, BigInt(g.bsize - 1)); // fs_qbmask = ~fs_bmask
  i64(1344, BigInt(g.fsize - 1)); // fs_qfmask
  i32(1372, FS_UFS2_MAGIC);
  return buf;
}

export interface CgFields {
  cgx: number;
  ndblk: number;
  timestamp: number;
  cs: CsTotals;
  frsum: number[];
  initediblk: number;
  /** The maps, already laid out at g.iusedoff.. by the caller. */
  maps: Buffer;
}

/** struct cg plus maps, fs_cgsize bytes. `maps` is the whole buffer; the header is written into it. */
export function encodeCgHeader(g: Geometry, c: CgFields): Buffer {
  const buf = c.maps;
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const u32 = (off: number, val: number): void => v.setUint32(off, val >>> 0, true);
  u32(4, CG_MAGIC);
  u32(12, c.cgx);
  u32(20, c.ndblk);
  u32(24, c.cs.ndir);
  u32(28, c.cs.nbfree);
  u32(32, c.cs.nifree);
  u32(36, c.cs.nffree);
  for (let i = 0; i < 8; i++) u32(52 + 4 * i, c.frsum[i] ?? 0);
  u32(92, g.iusedoff);
  u32(96, g.freeoff);
  u32(100, g.nextfreeoff);
  u32(104, g.clustersumoff);
  u32(108, g.clusteroff);
  u32(112, g.contigsumsize > 0 ? Math.floor(c.ndblk / g.frag) : 0);
  u32(116, g.ipg);
  u32(120, c.initediblk);
  v.setBigInt64(136, BigInt(c.timestamp), true);
  return buf;
}

export const IFDIR = 0o040000;
export const IFREG = 0o100000;
export const IFLNK = 0o120000;
export const DT_DIR = 4;
export const DT_REG = 8;
export const DT_LNK = 10;

export interface InodeFields {
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  /** di_blocks in DEV_BSIZE (512-byte) units. */
  blocks: number;
  atime: number;
  mtime: number;
  mtimeNsec: number;
  ctime: number;
  birthtime: number;
  gen: number;
  flags: number;
  db: readonly number[];
  ib: readonly number[];
  /** Fast symlink target stored in place of the block pointers. */
  inlineData?: Buffer | undefined;
}

export function encodeInode(buf: Buffer, off: number, f: InodeFields): void {
  const v = new DataView(buf.buffer, buf.byteOffset + off, DINODE2_SIZE);
  v.setUint16(0, f.mode, true);
  v.setInt16(2, f.nlink, true);
  v.setUint32(4, f.uid >>> 0, true);
  v.setUint32(8, f.gid >>> 0, true);
  v.setBigUint64(16, BigInt(f.size), true);
  v.setBigUint64(24, BigInt(f.blocks), true);
  v.setBigInt64(32, BigInt(f.atime), true);
  v.setBigInt64(40, BigInt(f.mtime), true);
  v.setBigInt64(48, BigInt(f.ctime), true);
  v.setBigInt64(56, BigInt(f.birthtime), true);
  v.setInt32(64, f.mtimeNsec, true);
  v.setInt32(68, f.mtimeNsec, true); // atime follows mtime
  v.setUint32(80, f.gen >>> 0, true);
  v.setUint32(88, f.flags >>> 0, true);
  if (f.inlineData) {
    f.inlineData.copy(buf, off + 112);
  } else {
    for (let i = 0; i < 12; i++) if (f.db[i]) v.setBigInt64(112 + 8 * i, BigInt(f.db[i]!), true);
    for (let i = 0; i < 3; i++) if (f.ib[i]) v.setBigInt64(208 + 8 * i, BigInt(f.ib[i]!), true);
  }
}

export interface DirEntryIn {
  ino: number;
  type: number;
  name: Buffer;
}

/** DIRSIZ for a name of `namlen` bytes: 8-byte header, name, NUL, padded to 4. */
export function dirEntrySize(namlen: number): number {
  return 8 + ((namlen + 1 + 3) & ~3);
}

/** Directory contents: entries packed into DIRBLKSIZ chunks, the last entry of each chunk padded to its end. */
export function encodeDirectory(entries: readonly DirEntryIn[]): Buffer {
  let chunks = 1;
  let pos = 0;
  for (const e of entries) {
    const size = dirEntrySize(e.name.length);
    if (pos + size > DIRBLKSIZ) {
      chunks++;
      pos = 0;
    }
    pos += size;
  }
  const buf = Buffer.alloc(chunks * DIRBLKSIZ);
  let base = 0;
  pos = 0;
  let last = -1;
  for (const e of entries) {
    const size = dirEntrySize(e.name.length);
    if (pos + size > DIRBLKSIZ) {
      buf.writeUInt16LE(DIRBLKSIZ - (last - base), last + 4);
      base += DIRBLKSIZ;
      pos = 0;
    }
    const at = base + pos;
    buf.writeUInt32LE(e.ino, at);
    buf.writeUInt16LE(size, at + 4);
    buf[at + 6] = e.type;
    buf[at + 7] = e.name.length;
    e.name.copy(buf, at + 8);
    last = at;
    pos += size;
  }
  if (last >= 0) buf.writeUInt16LE(DIRBLKSIZ - (last - base), last + 4);
  return buf;
}
