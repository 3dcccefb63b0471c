/**
 * A consistency checker that does what fsck_ffs's passes do (sbin/fsck_ffs: setup.c, pass1.c,
 * pass2.c, pass4.c, pass5.c), on top of the independent reader. Returns a list of problems; an
 * empty list means clean. It recomputes everything from the inodes and never trusts the maps.
 */
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type Ufs2Image } from './reader.js';

const DIRBLKSIZ = 512;
const dirsiz = (namlen: number): number => 8 + ((namlen + 1 + 3) & ~3);
const roundup = (x: number, y: number): number => Math.ceil(x / y) * y;
const howmany = (x: number, y: number): number => Math.ceil(x / y);

export interface FsckOptions {
  /** Stop collecting after this many problems. */
  limit?: number;
  /** Also require the writer's own conventions: directory entries sorted by name bytes. */
  requireSortedDirs?: boolean;
  /**
   * Accept the superblock where makefs puts it (8 KiB, fs_sblockactualloc unset), so images from
   * other writers can be checked with the same passes.
   */
  anySuperblockLocation?: boolean;
}

export function fsckUfs2(img: Ufs2Image, opts: FsckOptions = {}): string[] {
  const problems: string[] = [];
  const limit = opts.limit ?? 50;
  const bad = (msg: string): void => {
    if (problems.length < limit) problems.push(msg);
  };
  const sb = img.sb;

  // --- setup: superblock geometry as FreeBSD's superblock validation recomputes it --------------
  const log2 = (v: number): number => Math.log2(v);
  const chk = (name: string, have: number | bigint, want: number | bigint): void => {
    if (have !== want) bad(`superblock ${name} = ${have}, expected ${want}`);
  };
  chk('magic', sb.magic, 0x19540119);
  const sbloc = opts.anySuperblockLocation ? sb.sblockloc : 65536;
  chk('sblockloc', sb.sblockloc, opts.anySuperblockLocation ? sb.location : 65536);
  if (!(opts.anySuperblockLocation && sb.sblockactualloc === 0)) chk('sblockactualloc', sb.sblockactualloc, sb.location);
  chk('frag', sb.frag, sb.bsize / sb.fsize);
  chk('bshift', sb.bshift, log2(sb.bsize));
  chk('fshift', sb.fshift, log2(sb.fsize));
  chk('fragshift', sb.fragshift, log2(sb.frag));
  chk('fsbtodb', sb.fsbtodb, log2(sb.fsize / 512));
  chk('bmask', sb.bmask, ~(sb.bsize - 1));
  chk('fmask', sb.fmask, ~(sb.fsize - 1));
  chk('qbmask', sb.qbmask, BigInt(sb.bsize - 1));
  chk('qfmask', sb.qfmask, BigInt(sb.fsize - 1));
  chk('nindir', sb.nindir, sb.bsize / 8);
  chk('inopb', sb.inopb, sb.bsize / 256);
  chk('maxsymlinklen', sb.maxsymlinklen, 120);
  chk('sblkno', sb.sblkno, roundup(howmany(sbloc + 8192, sb.fsize), sb.frag));
  chk('cblkno', sb.cblkno, sb.sblkno + roundup(howmany(8192, sb.fsize), sb.frag));
  chk('iblkno', sb.iblkno, sb.cblkno + sb.frag);
  chk('dblkno', sb.dblkno, sb.iblkno + sb.ipg / (sb.inopb / sb.frag));
  chk('ipg % inopb', sb.ipg % sb.inopb, 0);
  chk('cssize', sb.cssize, roundup(sb.ncg * 16, sb.fsize));
  chk('csaddr', sb.csaddr, sb.dblkno);
  chk('sbsize', sb.sbsize, Math.min(roundup(1376, sb.fsize), 8192));
  const csfrags = howmany(sb.cssize, sb.fsize);
  chk('dsize', sb.dsize, sb.size - sb.sblkno - sb.ncg * (sb.dblkno - sb.sblkno) - csfrags);
  if (!(sb.size > (sb.ncg - 1) * sb.fpg && sb.size <= sb.ncg * sb.fpg)) bad(`superblock size ${sb.size} does not match ${sb.ncg} groups of ${sb.fpg}`);
  if (sb.cgsize > sb.bsize || sb.cgsize % sb.fsize !== 0) bad(`superblock cgsize ${sb.cgsize} invalid`);
  if (sb.maxbsize < sb.bsize) bad('superblock maxbsize < bsize');
  if (sb.metaspace < 0 || sb.metaspace > sb.fpg / 2) bad('superblock metaspace out of range');
  let maxfilesize = BigInt(sb.bsize) * 12n - 1n;
  let pb = BigInt(sb.bsize);
  for (let i = 0; i < 3; i++) {
    pb *= BigInt(sb.nindir);
    maxfilesize += pb;
  }
  chk('maxfilesize', sb.maxfilesize, maxfilesize);
  if (sb.maxcontig > 1) chk('contigsumsize', sb.contigsumsize, Math.min(sb.maxcontig, 16));
  if (sb.clean !== 1) bad('superblock not marked clean');
  if ((sb.flags & 0x2) !== 0) bad('soft updates flag set');
  // backups: identical to the primary except their own location
  for (let cg = 0; cg < sb.ncg; cg++) {
    const at = (cg * sb.fpg + sb.sblkno) * sb.fsize;
    const copy = img.parseSuperblock(img.read(at, 8192), at);
    if (copy.magic !== sb.magic) {
      bad(`cg ${cg}: no backup superblock`);
      continue;
    }
    if (copy.sblockactualloc !== at && !(opts.anySuperblockLocation && copy.sblockactualloc === 0)) bad(`cg ${cg}: backup superblock says it is at ${copy.sblockactualloc}, not ${at}`);
    const a = Buffer.from(copy.raw);
    const b = Buffer.from(sb.raw);
    a.fill(0, 992, 1000);
    b.fill(0, 992, 1000);
    if (!a.equals(b)) bad(`cg ${cg}: backup superblock differs from the primary`);
  }
  if (problems.length) return problems;

  // --- pass 1: inodes and the blocks they claim -------------------------------------------------
  const totalInodes = sb.ncg * sb.ipg;
  const claimed = new Uint8Array(Math.ceil(sb.size / 8));
  const isClaimed = (f: number): boolean => (claimed[f >> 3]! & (1 << (f & 7))) !== 0;
  const claim = (f: number): void => void (claimed[f >> 3]! |= 1 << (f & 7));
  // metadata areas
  for (let cg = 0; cg < sb.ncg; cg++) {
    const base = cg * sb.fpg;
    const from = cg === 0 ? 0 : base + sb.sblkno;
    const to = base + sb.dblkno + (cg === 0 ? csfrags : 0);
    for (let f = from; f < to; f++) claim(f);
  }
  const isDataArea = (f: number): boolean => {
    const cg = Math.floor(f / sb.fpg);
    const off = f - cg * sb.fpg;
    if (f >= sb.size || f < 0) return false;
    if (cg === 0) return off >= sb.dblkno + csfrags;
    return off < sb.sblkno || off >= sb.dblkno;
  };
  const used = new Map<number, ReturnType<Ufs2Image['readInode']>>();
  const cgs = Array.from({ length: sb.ncg }, (_, cg) => img.readCg(cg));
  for (let cg = 0; cg < sb.ncg; cg++) {
    const c = cgs[cg]!;
    // Like fsck_ffs, only the initialised inode blocks are read; the inode map must agree (pass 5).
    const scan = Math.min(Math.max(c.initediblk, 0), sb.ipg);
    for (const inode of img.readInodesOfCg(cg, scan)) {
      const ino = inode.ino;
      if (ino < 2) continue;
      if (inode.mode === 0) {
        if (!inode.raw.subarray(0, 80).equals(Buffer.alloc(80)) || !inode.raw.subarray(84).equals(Buffer.alloc(256 - 84)))
          bad(`inode ${ino}: unallocated but not zero (partially allocated inode)`);
        continue;
      }
      used.set(ino, inode);
    }
  }
  const blockCount = new Map<number, number>();
  for (const [ino, inode] of used) {
    const type = inode.mode & S_IFMT;
    if (type !== S_IFDIR && type !== S_IFREG && type !== S_IFLNK) {
      bad(`inode ${ino}: unknown file type ${type.toString(8)}`);
      continue;
    }
    if (type === S_IFDIR && (inode.size === 0 || inode.size % DIRBLKSIZ !== 0)) bad(`inode ${ino}: directory size ${inode.size} not a multiple of ${DIRBLKSIZ}`);
    if (img.isFastSymlink(inode)) {
      if (inode.size === 0) bad(`inode ${ino}: empty symlink`);
      const tail = inode.raw.subarray(112 + inode.size, 232);
      if (!tail.equals(Buffer.alloc(tail.length))) bad(`inode ${ino}: garbage after fast symlink target`);
      blockCount.set(ino, 0);
      continue;
    }
    const nblocks = Math.ceil(inode.size / sb.bsize);
    // pointers beyond the file's size must be zero
    for (let lbn = nblocks; lbn < 12; lbn++) if (inode.db[lbn] !== 0) bad(`inode ${ino}: direct block ${lbn} beyond size ${inode.size}`);
    let frags = 0;
    let lastAllocated = false;
    for (const e of img.extents(inode)) {
      if (e.kind === 'data' && e.lbn >= nblocks) bad(`inode ${ino}: block ${e.lbn} beyond size ${inode.size}`);
      if (e.kind === 'data' && e.lbn === nblocks - 1) lastAllocated = true;
      if (e.frags <= 0 || e.frags > sb.frag) bad(`inode ${ino}: bad extent length ${e.frags}`);
      if (e.frags === sb.frag && e.addr % sb.frag !== 0) bad(`inode ${ino}: block ${e.addr} not block aligned`);
      if (Math.floor(e.addr / sb.frag) !== Math.floor((e.addr + e.frags - 1) / sb.frag)) bad(`inode ${ino}: fragment run at ${e.addr} crosses a block`);
      for (let f = e.addr; f < e.addr + e.frags; f++) {
        if (!isDataArea(f)) {
          bad(`inode ${ino}: fragment ${f} is outside the data area`);
          break;
        }
        if (isClaimed(f)) {
          bad(`inode ${ino}: fragment ${f} claimed twice (DUP)`);
          break;
        }
        claim(f);
      }
      frags += e.frags;
    }
    if (nblocks > 0 && !lastAllocated) bad(`inode ${ino}: last block of a ${inode.size}-byte file is not allocated`);
    if (type === S_IFDIR) {
      const map = img.blockMap(inode);
      for (let lbn = 0; lbn < nblocks; lbn++) if (!map.has(lbn)) bad(`inode ${ino}: directory has a hole at block ${lbn}`);
    }
    if (inode.blocks !== frags * (sb.fsize / 512)) bad(`inode ${ino}: di_blocks ${inode.blocks}, owns ${frags * (sb.fsize / 512)} sectors`);
    blockCount.set(ino, frags);
  }

  // --- pass 2: directory structure; pass 3: reachability; pass 4: link counts --------------------
  const refs = new Map<number, number>();
  const addRef = (ino: number): void => void refs.set(ino, (refs.get(ino) ?? 0) + 1);
  const parentOf = new Map<number, number>();
  const reached = new Set<number>([2]);
  const dtypeOf = (mode: number): number => ({ [S_IFDIR]: 4, [S_IFREG]: 8, [S_IFLNK]: 10 })[mode & S_IFMT] ?? 0;
  const stack: number[] = [2];
  parentOf.set(2, 2);
  const root = used.get(2);
  if (!root || (root.mode & S_IFMT) !== S_IFDIR) return [...problems, 'root inode 2 is not a directory'];
  while (stack.length) {
    const dino = stack.pop()!;
    const dir = used.get(dino)!;
    const data = img.readAll(dir);
    const names = new Set<string>();
    const order: Buffer[] = [];
    let index = 0;
    for (let chunk = 0; chunk < data.length; chunk += DIRBLKSIZ) {
      let off = chunk;
      while (off < chunk + DIRBLKSIZ) {
        const ino = data.readUInt32LE(off);
        const reclen = data.readUInt16LE(off + 4);
        const type = data[off + 6]!;
        const namlen = data[off + 7]!;
        const where = `directory ${dino} offset ${off}`;
        if (reclen < 8 || reclen % 4 !== 0 || off + reclen > chunk + DIRBLKSIZ) {
          bad(`${where}: bad reclen ${reclen}`);
          break;
        }
        if (ino !== 0) {
          if (reclen < dirsiz(namlen)) bad(`${where}: reclen ${reclen} < DIRSIZ ${dirsiz(namlen)}`);
          const nameBytes = data.subarray(off + 8, off + 8 + namlen);
          if (data[off + 8 + namlen] !== 0) bad(`${where}: name not NUL-terminated`);
          if (nameBytes.includes(0) || nameBytes.includes(0x2f) || namlen === 0) bad(`${where}: bad name`);
          const name = nameBytes.toString('latin1');
          if (names.has(name)) bad(`${where}: duplicate name ${JSON.stringify(name)}`);
          names.add(name);
          if (index === 0 && (name !== '.' || ino !== dino)) bad(`${where}: first entry is not '.'`);
          if (index === 1 && (name !== '..' || ino !== parentOf.get(dino))) bad(`${where}: second entry is not '..' -> ${parentOf.get(dino)}`);
          if (index > 1 && (name === '.' || name === '..')) bad(`${where}: extra ${name}`);
          index++;
          const target = used.get(ino);
          if (ino >= totalInodes || !target) {
            bad(`${where}: entry ${JSON.stringify(name)} points to unallocated inode ${ino}`);
          } else {
            if (type !== dtypeOf(target.mode)) bad(`${where}: d_type ${type} does not match inode ${ino}`);
            addRef(ino);
            if (name !== '.' && name !== '..') {
              order.push(nameBytes);
              if ((target.mode & S_IFMT) === S_IFDIR) {
                if (reached.has(ino)) bad(`${where}: directory ${ino} linked twice`);
                else {
                  parentOf.set(ino, dino);
                  stack.push(ino);
                }
              }
              reached.add(ino);
            }
          }
        } else if (off !== chunk) {
          bad(`${where}: empty entry in the middle of a block`);
        }
        off += reclen;
      }
    }
    if (index < 2) bad(`directory ${dino}: missing '.' or '..'`);
    if (opts.requireSortedDirs)
      for (let i = 1; i < order.length; i++) if (Buffer.compare(order[i - 1]!, order[i]!) >= 0) bad(`directory ${dino}: entries not sorted`);
  }
  for (const [ino, inode] of used) {
    if (!reached.has(ino)) bad(`inode ${ino}: unreferenced (not reachable from the root)`);
    const want = refs.get(ino) ?? 0;
    if (inode.nlink !== want) bad(`inode ${ino}: link count ${inode.nlink}, references ${want}`);
  }

  // --- pass 5: cylinder group maps and summaries -------------------------------------------------
  const totals = { ndir: 0, nbfree: 0, nifree: 0, nffree: 0 };
  const csBuf = img.read(sb.csaddr * sb.fsize, sb.cssize);
  for (let cg = 0; cg < sb.ncg; cg++) {
    const c = cgs[cg]!;
    const where = `cg ${cg}`;
    const base = cg * sb.fpg;
    const ndblk = Math.min(sb.fpg, sb.size - base);
    if (c.magic !== 0x090255) bad(`${where}: bad magic`);
    if (c.cgx !== cg) bad(`${where}: cgx ${c.cgx}`);
    if (c.ndblk !== ndblk) bad(`${where}: ndblk ${c.ndblk}, expected ${ndblk}`);
    if (c.niblk !== sb.ipg) bad(`${where}: niblk ${c.niblk}`);
    const iusedoff = 168;
    const freeoff = iusedoff + howmany(sb.ipg, 8);
    let nextfreeoff = freeoff + howmany(sb.fpg, 8);
    let clustersumoff = 0;
    let clusteroff = 0;
    if (sb.contigsumsize > 0) {
      clustersumoff = roundup(nextfreeoff, 4) - 4;
      clusteroff = clustersumoff + (sb.contigsumsize + 1) * 4;
      nextfreeoff = clusteroff + howmany(Math.floor(sb.fpg / sb.frag), 8);
    }
    if (c.iusedoff !== iusedoff || c.freeoff !== freeoff || c.nextfreeoff !== nextfreeoff || c.clustersumoff !== clustersumoff || c.clusteroff !== clusteroff)
      bad(`${where}: map offsets differ from newfs's`);
    const nclusterblks = sb.contigsumsize > 0 ? Math.floor(ndblk / sb.frag) : 0;
    if (c.nclusterblks !== nclusterblks) bad(`${where}: nclusterblks ${c.nclusterblks}, expected ${nclusterblks}`);
    if (c.initediblk % sb.inopb !== 0 || c.initediblk > sb.ipg) bad(`${where}: initediblk ${c.initediblk}`);
    // inode map
    let nifree = 0;
    let ndir = 0;
    for (let i = 0; i < sb.ipg; i++) {
      const ino = cg * sb.ipg + i;
      const inUse = ino < 2 || used.has(ino);
      const bit = (c.raw[iusedoff + (i >> 3)]! >> (i & 7)) & 1;
      if (bit !== (inUse ? 1 : 0)) bad(`${where}: inode map bit for ${ino} is ${bit}`);
      if (!inUse) nifree++;
      const inode = used.get(ino);
      if (inode && (inode.mode & S_IFMT) === S_IFDIR) ndir++;
    }
    // fragment map
    let nbfree = 0;
    let nffree = 0;
    const clusterFree: boolean[] = [];
    for (let d = 0; d < ndblk; d += sb.frag) {
      let free = 0;
      for (let j = 0; j < sb.frag; j++) {
        const f = d + j;
        const isFree = f < ndblk && !isClaimed(base + f);
        const bit = (c.raw[freeoff + (f >> 3)]! >> (f & 7)) & 1;
        if (f < ndblk && bit !== (isFree ? 1 : 0)) bad(`${where}: free map bit for fragment ${base + f} is ${bit}`);
        if (isFree) free++;
      }
      if (free === sb.frag) nbfree++;
      else nffree += free;
      clusterFree.push(free === sb.frag);
    }
    // frsum: maximal runs of free fragments inside blocks that are neither full nor empty
    const frsum2 = new Array<number>(8).fill(0);
    for (let d = 0; d < ndblk; d += sb.frag) {
      const bits: boolean[] = [];
      for (let j = 0; j < sb.frag; j++) bits.push(d + j < ndblk && !isClaimed(base + d + j));
      const free = bits.filter(Boolean).length;
      if (free === 0 || free === sb.frag) continue;
      let run = 0;
      for (const b of [...bits, false]) {
        if (b) run++;
        else if (run) {
          frsum2[run]!++;
          run = 0;
        }
      }
    }
    for (let k = 1; k < sb.frag; k++) if (c.frsum[k] !== frsum2[k]) bad(`${where}: frsum[${k}] = ${c.frsum[k]}, expected ${frsum2[k]}`);
    if (c.cs.nbfree !== nbfree) bad(`${where}: nbfree ${c.cs.nbfree}, expected ${nbfree}`);
    if (c.cs.nffree !== nffree) bad(`${where}: nffree ${c.cs.nffree}, expected ${nffree}`);
    if (c.cs.nifree !== nifree) bad(`${where}: nifree ${c.cs.nifree}, expected ${nifree}`);
    if (c.cs.ndir !== ndir) bad(`${where}: ndir ${c.cs.ndir}, expected ${ndir}`);
    // cluster map and summary
    if (sb.contigsumsize > 0) {
      const sum = new Array<number>(sb.contigsumsize + 1).fill(0);
      let run = 0;
      for (let b = 0; b < nclusterblks; b++) {
        const bit = (c.raw[clusteroff + (b >> 3)]! >> (b & 7)) & 1;
        if (bit !== (clusterFree[b] ? 1 : 0)) bad(`${where}: cluster map bit ${b} is ${bit}`);
        if (clusterFree[b]) run++;
        else if (run) {
          sum[Math.min(run, sb.contigsumsize)]!++;
          run = 0;
        }
      }
      if (run) sum[Math.min(run, sb.contigsumsize)]!++;
      for (let i = 1; i <= sb.contigsumsize; i++) {
        const have = c.raw.readInt32LE(clustersumoff + 4 * i);
        if (have !== sum[i]) bad(`${where}: cluster summary[${i}] = ${have}, expected ${sum[i]}`);
      }
    }
    // the superblock's per-group summary
    const s = { ndir: csBuf.readInt32LE(cg * 16), nbfree: csBuf.readInt32LE(cg * 16 + 4), nifree: csBuf.readInt32LE(cg * 16 + 8), nffree: csBuf.readInt32LE(cg * 16 + 12) };
    if (s.ndir !== ndir || s.nbfree !== nbfree || s.nifree !== nifree || s.nffree !== nffree)
      bad(`${where}: summary area ${JSON.stringify(s)} differs from ${JSON.stringify({ ndir, nbfree, nifree, nffree })}`);
    totals.ndir += ndir;
    totals.nbfree += nbfree;
    totals.nifree += nifree;
    totals.nffree += nffree;
  }
  const t = sb.cstotal;
  if (t.ndir !== totals.ndir || t.nbfree !== totals.nbfree || t.nifree !== totals.nifree || t.nffree !== totals.nffree)
    bad(`superblock totals ${JSON.stringify(t)} differ from ${JSON.stringify(totals)}`);
  void blockCount;
  return problems;
}
