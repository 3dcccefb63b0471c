/**
 * UFS2 geometry as FreeBSD's newfs computes it (sbin/newfs/mkfs.c, sys/ufs/ffs/fs.h): superblock at
 * 64 KiB, cylinder groups sized so that their maps fill one block (minus CGSIZEFUDGE), at least
 * MINCYLGRPS groups, the last group big enough for its metadata. The numbers here are the ones the
 * kernel's superblock validation recomputes, so they must follow the same formulas exactly.
 */
import { InputError } from '../errors.js';
import type { Ufs2Options } from './types.js';

export const SBLOCK_UFS2 = 65536;
export const SBLOCKSIZE = 8192;
export const SECTOR = 512;
export const FS_UFS2_MAGIC = 0x19540119;
export const CG_MAGIC = 0x090255;
export const UFS_NDADDR = 12;
export const UFS_NIADDR = 3;
export const UFS_ROOTINO = 2;
export const DINODE2_SIZE = 256;
/** (UFS_NDADDR + UFS_NIADDR) * sizeof(ufs2_daddr_t): targets shorter than this live in the inode. */
export const MAXSYMLINKLEN_UFS2 = 120;
export const SIZEOF_FS = 1376;
export const SIZEOF_CG = 168;
export const SIZEOF_CSUM = 16;
export const DIRBLKSIZ = 512;
export const FS_MAXCONTIG = 16;
export const MINCYLGRPS = 4;
export const CGSIZEFUDGE = 8;
export const MAXBSIZE = 65536;
export const MINBSIZE = 4096;
export const MAXFRAG = 8;
/** newfs.h NFPI (FreeBSD 10+; older releases used 4): one inode per 2 fragments of data space by default. */
export const NFPI = 2;
/** FreeBSD 13+ MAXPHYS on 64-bit platforms; newfs derives maxcontig from it. */
export const MAXPHYS = 1024 * 1024;
/** FS_FLAGS_UPDATED in fs_old_flags: fs_flags already lives at its UFS2 location. */
export const FS_FLAGS_UPDATED = 0x80;

export interface Geometry {
  bsize: number;
  fsize: number;
  frag: number;
  bshift: number;
  fshift: number;
  fragshift: number;
  fsbtodb: number;
  /** fs_size: file system size in fragments (a whole number of blocks). */
  sizeFrags: number;
  ncg: number;
  fpg: number;
  ipg: number;
  inopb: number;
  inopf: number;
  nindir: number;
  sblkno: number;
  cblkno: number;
  iblkno: number;
  dblkno: number;
  cgsize: number;
  csaddr: number;
  cssize: number;
  csfrags: number;
  dsize: number;
  sbsize: number;
  maxcontig: number;
  contigsumsize: number;
  maxbsize: number;
  maxbpg: number;
  minfree: number;
  density: number;
  metaspace: number;
  maxfilesize: bigint;
  /** Offsets inside a cylinder group block (struct cg and its maps). */
  iusedoff: number;
  freeoff: number;
  clustersumoff: number;
  clusteroff: number;
  nextfreeoff: number;
}

const log2 = (v: number): number => Math.round(Math.log2(v));
const isPow2 = (v: number): boolean => Number.isInteger(v) && v > 0 && (v & (v - 1)) === 0;
const howmany = (x: number, y: number): number => Math.ceil(x / y);
const roundup = (x: number, y: number): number => Math.ceil(x / y) * y;

/** CGSIZE(fs) from fs.h for UFS2 (the fs_old_cpg terms are zero). */
export function cgMapSize(fpg: number, ipg: number, frag: number, contigsumsize: number): number {
  return (
    SIZEOF_CG +
    howmany(ipg, 8) +
    howmany(fpg, 8) +
    4 +
    (contigsumsize <= 0 ? 0 : contigsumsize * 4 + howmany(Math.floor(fpg / frag), 8))
  );
}

export function validateOptions(options: Ufs2Options): { bsize: number; fsize: number; minfree: number } {
  const bsize = options.blockSize ?? 32768;
  const fsize = options.fragmentSize ?? 4096;
  const minfree = options.minFreePercent ?? 8;
  const hint = 'use FreeBSD newfs limits: block size 4096..65536, fragment size block/8..block, both powers of 2';
  if (!isPow2(bsize) || bsize < MINBSIZE || bsize > MAXBSIZE)
    throw new InputError(`UFS2 block size ${bsize} is invalid`, { hint });
  if (!isPow2(fsize) || fsize < SECTOR || fsize > bsize || bsize / fsize > MAXFRAG)
    throw new InputError(`UFS2 fragment size ${fsize} is invalid with block size ${bsize}`, { hint });
  if (!Number.isInteger(minfree) || minfree < 0 || minfree > 99)
    throw new InputError(`UFS2 reserved space ${minfree}% is invalid`, { hint: 'give 0..99 (newfs -m)' });
  if (options.bytesPerInode !== undefined && (!Number.isInteger(options.bytesPerInode) || options.bytesPerInode < fsize))
    throw new InputError(`UFS2 bytes per inode ${options.bytesPerInode} is invalid`, {
      hint: `give an integer of at least the fragment size (${fsize})`,
    });
  if (options.volumeLabel !== undefined && !/^[A-Za-z0-9._-]{0,31}$/.test(options.volumeLabel))
    throw new InputError(`UFS2 volume label ${JSON.stringify(options.volumeLabel)} is invalid`, {
      hint: 'use up to 31 characters from A-Z a-z 0-9 . _ -',
    });
  if (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes <= 0)
    throw new InputError(`UFS2 size ${options.sizeBytes} is invalid`, { hint: 'give a positive size in bytes' });
  return { bsize, fsize, minfree };
}

/** Computes the layout newfs would choose for these options; throws InputError when it cannot fit. */
export function computeGeometry(options: Ufs2Options): Geometry {
  const { bsize, fsize, minfree } = validateOptions(options);
  const frag = bsize / fsize;
  const bshift = log2(bsize);
  const fshift = log2(fsize);
  const fragshift = log2(frag);
  const fsbtodb = log2(fsize / SECTOR);
  const inopb = bsize / DINODE2_SIZE;
  const inopf = inopb / frag;
  const nindir = bsize / 8;
  // Whole blocks only: a partial last block would need special cases in every map.
  const sizeFrags = Math.floor(options.sizeBytes / bsize) * frag;
  const sblkno = roundup(howmany(SBLOCK_UFS2 + SBLOCKSIZE, fsize), frag);
  const cblkno = sblkno + roundup(howmany(SBLOCKSIZE, fsize), frag);
  const iblkno = cblkno + frag;
  let maxfilesize = BigInt(bsize) * BigInt(UFS_NDADDR) - 1n;
  let sizepb = BigInt(bsize);
  for (let i = 0; i < UFS_NIADDR; i++) {
    sizepb *= BigInt(nindir);
    maxfilesize += sizepb;
  }
  const maxcontig = Math.max(1, MAXPHYS / bsize);
  const contigsumsize = maxcontig > 1 ? Math.min(maxcontig, FS_MAXCONTIG) : 0;
  const cgsizeOf = (fpg: number, ipg: number): number => cgMapSize(fpg, ipg, frag, contigsumsize);
  const tooSmall = (): InputError =>
    new InputError(`file system too small: ${options.sizeBytes} bytes cannot hold a UFS2 file system with ${bsize}-byte blocks`, {
      hint: 'give a larger --size',
    });
  if (sizeFrags < iblkno + 2 * frag) throw tooSmall();

  const maxinum = 2 ** 32 - inopb;
  const minfragsperinode = 1 + Math.floor(sizeFrags / maxinum);
  let density = options.bytesPerInode ?? Math.max(NFPI, minfragsperinode) * fsize;
  if (density < minfragsperinode * fsize) density = minfragsperinode * fsize;
  let fragsperinode = 1;
  let fpg = 0;
  let ipg = 0;
  for (;;) {
    fragsperinode = Math.max(Math.floor(density / fsize), 1);
    if (fragsperinode < minfragsperinode) throw tooSmall();
    let minfpg = fragsperinode * inopb;
    if (minfpg > sizeFrags) minfpg = sizeFrags;
    ipg = inopb;
    fpg = roundup(iblkno + ipg / inopf, frag);
    if (fpg < minfpg) fpg = minfpg;
    ipg = roundup(howmany(fpg, fragsperinode), inopb);
    fpg = roundup(iblkno + ipg / inopf, frag);
    if (fpg < minfpg) fpg = minfpg;
    ipg = roundup(howmany(fpg, fragsperinode), inopb);
    if (cgsizeOf(fpg, ipg) < bsize - CGSIZEFUDGE) break;
    density -= fsize;
    if (density < fsize) throw tooSmall();
  }
  const maxblkspercg = sizeFrags - 1;
  for (; fpg < maxblkspercg; fpg += frag) {
    ipg = roundup(howmany(fpg, fragsperinode), inopb);
    if (Math.floor(sizeFrags / fpg) < MINCYLGRPS) break;
    const size = cgsizeOf(fpg, ipg);
    if (size < bsize - CGSIZEFUDGE) continue;
    if (size === bsize - CGSIZEFUDGE) break;
    fpg -= frag;
    ipg = roundup(howmany(fpg, fragsperinode), inopb);
    break;
  }
  let ncg = 0;
  for (;;) {
    ncg = howmany(sizeFrags, fpg);
    const lastminfpg = roundup(iblkno + ipg / inopf, frag);
    if (sizeFrags < lastminfpg) throw tooSmall();
    if (sizeFrags % fpg >= lastminfpg || sizeFrags % fpg === 0) break;
    fpg -= frag;
    ipg = roundup(howmany(fpg, fragsperinode), inopb);
  }
  const cgsize = roundup(cgsizeOf(fpg, ipg), fsize);
  const dblkno = iblkno + ipg / inopf;
  const csaddr = dblkno;
  const cssize = roundup(ncg * SIZEOF_CSUM, fsize);
  const csfrags = howmany(cssize, fsize);
  if (dblkno + csfrags + frag > Math.min(fpg, sizeFrags)) throw tooSmall();
  if (ipg * ncg > maxinum) throw tooSmall();
  const dsize = sizeFrags - sblkno - ncg * (dblkno - sblkno) - csfrags;
  let sbsize = roundup(SIZEOF_FS, fsize);
  if (sbsize > SBLOCKSIZE) sbsize = SBLOCKSIZE;
  const metaspace = Math.floor(Math.floor((fpg * minfree) / 200) / frag) * frag;

  const iusedoff = SIZEOF_CG;
  const freeoff = iusedoff + howmany(ipg, 8);
  let nextfreeoff = freeoff + howmany(fpg, 8);
  let clustersumoff = 0;
  let clusteroff = 0;
  if (contigsumsize > 0) {
    clustersumoff = roundup(nextfreeoff, 4) - 4;
    clusteroff = clustersumoff + (contigsumsize + 1) * 4;
    nextfreeoff = clusteroff + howmany(Math.floor(fpg / frag), 8);
  }
  if (nextfreeoff > cgsize) throw new Error(`internal: cylinder group map ${nextfreeoff} > ${cgsize}`);

  return {
    bsize,
    fsize,
    frag,
    bshift,
    fshift,
    fragshift,
    fsbtodb,
    sizeFrags,
    ncg,
    fpg,
    ipg,
    inopb,
    inopf,
    nindir,
    sblkno,
    cblkno,
    iblkno,
    dblkno,
    cgsize,
    csaddr,
    cssize,
    csfrags,
    dsize,
    sbsize,
    maxcontig,
    contigsumsize,
    maxbsize: bsize,
    maxbpg: bsize / 8,
    minfree,
    density,
    metaspace,
    maxfilesize,
    iusedoff,
    freeoff,
    clustersumoff,
    clusteroff,
    nextfreeoff,
  };
}

/** Fragments of cylinder group `cg` that hold data or metadata (the last group may be shorter). */
export function cgDataFrags(g: Geometry, cg: number): number {
  return Math.min(g.fpg, g.sizeFrags - cg * g.fpg);
}
