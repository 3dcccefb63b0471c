/**
 * One-pass UFS2 writer. File data goes to its final place as it streams in (allocation follows
 * arrival order: the only way to stay one-pass with bounded memory); everything else — inode
 * numbers, directory contents, directory and slow-symlink blocks, maps, summaries, superblocks — is
 * laid out in finish() from the byte-sorted tree, so it does not depend on arrival order.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.js';
import {
  DIRBLKSIZ,
  MAXSYMLINKLEN_UFS2,
  SBLOCK_UFS2,
  UFS_NDADDR,
  UFS_ROOTINO,
  DINODE2_SIZE,
  cgDataFrags,
  computeGeometry,
  type Geometry,
} from './geometry.js';
import {
  DT_DIR,
  DT_LNK,
  DT_REG,
  IFDIR,
  IFLNK,
  IFREG,
  encodeCgHeader,
  encodeDirectory,
  encodeInode,
  encodeSuperblock,
  type CsTotals,
  type DirEntryIn,
} from './layout.js';
import { estimateUfs2Size } from './estimate.js';
import { checkMeta, checkTimestamp, nameBytes, splitPath as splitPathAs, symlinkBytes } from './input.js';
import type { BlockTarget, FsMeta, Lane, Ufs2Options, Ufs2Stats, Ufs2Writer } from './types.js';

const MiB = 1024 * 1024;
/** di_nlink is an int16_t. */
const UFS_LINK_MAX = 32767;

interface BlockMap {
  db: number[];
  ib: number[];
  /** Fragments allocated to this inode (data and indirect blocks). */
  frags: number;
}

interface DirNode {
  kind: 'dir';
  meta: FsMeta;
  children: Map<string, Node>;
  parent: DirNode | null;
  ino: number;
  map: BlockMap;
  size: number;
}
interface FileNode {
  kind: 'file';
  meta: FsMeta;
  size: number;
  nlink: number;
  ino: number;
  map: BlockMap;
}
interface SymlinkNode {
  kind: 'symlink';
  meta: FsMeta;
  target: Buffer;
  ino: number;
  map: BlockMap;
}
type Node = DirNode | FileNode | SymlinkNode;

const newMap = (): BlockMap => ({ db: new Array<number>(UFS_NDADDR).fill(0), ib: [0, 0, 0], frags: 0 });

/** Seeded 32-bit generator (splitmix-style) for fs_id and inode generation numbers. */
function seededWords(seed: string): (i: number) => number {
  const h = createHash('sha256').update(`fbxen-ufs2:${seed}`).digest();
  const k0 = h.readUInt32LE(0);
  const k1 = h.readUInt32LE(4);
  return (i: number): number => {
    let x = (Math.imul(i ^ k0, 0x9e3779b1) + k1) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
    return (x ^ (x >>> 16)) >>> 0;
  };
}

/**
 * Fragment allocator over the whole file system: a bitmap of used fragments (metadata areas are
 * pre-marked), and for each lane a cursor for whole blocks and one open block whose fragments take
 * file tails. Lane 1, when there is one, owns the data area up to `laneEnd`; lane 0 starts there.
 */
class Allocator {
  readonly used: Uint8Array;
  private readonly cursor = [0, 0];
  private readonly fragBlock = [-1, -1];
  private readonly fragNext = [0, 0];
  /** Where lane 1's room ends (a fragment address); lane 1 never allocates at or past it. */
  readonly laneEnd: number;
  constructor(
    private readonly g: Geometry,
    leadingBlocks = 0,
  ) {
    this.used = new Uint8Array(Math.ceil(g.sizeFrags / 8));
    for (let cg = 0; cg < g.ncg; cg++) {
      const base = cg * g.fpg;
      if (cg === 0) this.mark(0, g.dblkno + g.csfrags);
      else this.mark(base + g.sblkno, g.dblkno - g.sblkno);
    }
    let end = 0;
    for (let free = 0; free < leadingBlocks && end + g.frag <= g.sizeFrags; end += g.frag) if (this.freeBlockAt(end)) free++;
    this.laneEnd = end;
    this.cursor[0] = end;
  }
  mark(start: number, count: number): void {
    let i = start;
    const end = start + count;
    while (i < end && i & 7) this.used[i >> 3]! |= 1 << (i & 7), i++;
    while (i + 8 <= end) this.used[i >> 3] = 0xff, (i += 8);
    while (i < end) this.used[i >> 3]! |= 1 << (i & 7), i++;
  }
  isUsed(f: number): boolean {
    return (this.used[f >> 3]! & (1 << (f & 7))) !== 0;
  }
  private freeBlockAt(b: number): boolean {
    if (this.g.frag === 8) return this.used[b >> 3] === 0;
    for (let i = 0; i < this.g.frag; i++) if (this.isUsed(b + i)) return false;
    return true;
  }
  /** The next free block of the lane (block-aligned fragment address, not yet marked), or -1. */
  private nextFree(lane: Lane): number {
    const limit = lane === 1 ? this.laneEnd : this.g.sizeFrags;
    while (this.cursor[lane]! + this.g.frag <= limit) {
      const b = this.cursor[lane]!;
      this.cursor[lane] = b + this.g.frag;
      if (this.freeBlockAt(b)) return b;
    }
    return -1;
  }
  /** A whole free block (block-aligned fragment address), or -1 when the lane is full. */
  block(lane: Lane = 0): number {
    const b = this.nextFree(lane);
    if (b >= 0) this.mark(b, this.g.frag);
    return b;
  }
  /** `n` (< frag) contiguous fragments inside one block, or -1 when the lane is full. */
  frags(n: number, lane: Lane = 0): number {
    if (this.fragBlock[lane]! < 0 || this.fragNext[lane]! + n > this.g.frag) {
      const b = this.nextFree(lane);
      if (b < 0) return -1;
      this.fragBlock[lane] = b;
      this.fragNext[lane] = 0;
    }
    const at = this.fragBlock[lane]! + this.fragNext[lane]!;
    this.fragNext[lane] = this.fragNext[lane]! + n;
    this.mark(at, n);
    return at;
  }
}

/**
 * The room lane 1 is given: what `entries` entries holding `dataBytes` of file data can take at most
 * (every block of data, a partial block per file, its indirect blocks, and a block of fragments left
 * behind when a tail does not fit the open one), in bytes of `blockSize` blocks.
 */
export function leadingLaneBytes(lane: { dataBytes: number; entries: number }, blockSize = 32768): number {
  const dataBlocks = Math.ceil(lane.dataBytes / blockSize) + lane.entries;
  return (dataBlocks + Math.ceil(dataBlocks / (blockSize / 8)) + 3 * lane.entries + 1) * blockSize;
}

interface OpenIndirect {
  key: string;
  addr: number;
  buf: Buffer;
}

/**
 * `targets`: one target, or one per lane (lane 1's file data goes to the second, so each lane gathers
 * its own contiguous writes; a target is not shared between two streams that interleave).
 */
export function createUfs2Writer(targets: BlockTarget | readonly [BlockTarget, BlockTarget], options: Ufs2Options): Ufs2Writer {
  const [target, laneTarget] = Array.isArray(targets) ? (targets as readonly [BlockTarget, BlockTarget]) : [targets as BlockTarget, targets as BlockTarget];
  const g = computeGeometry(options);
  // Read again in finish(): the caller may set it once every entry was seen (Ufs2Options.timestamp).
  let timestamp = checkTimestamp(options.timestamp);
  const names = options.nameEncoding ?? 'utf8';
  const splitPath = (path: string): string[] => splitPathAs(path, names);
  const words = seededWords(options.seed);
  const alloc = new Allocator(g, options.leadingLane ? leadingLaneBytes(options.leadingLane, g.bsize) / g.bsize : 0);
  const zeroBlock = Buffer.alloc(g.bsize);
  const defaultDirMeta = (): FsMeta => ({ mode: 0o755, uid: 0, gid: 0, mtime: Infinity, flags: 0 }); // clamped to the build timestamp
  const root: DirNode = {
    kind: 'dir',
    meta: defaultDirMeta(),
    children: new Map(),
    parent: null,
    ino: UFS_ROOTINO,
    map: newMap(),
    size: 0,
  };
  let full = false;
  /** A lane whose room ran out: the leading lane's size was wrong, which no file system size fixes. */
  let laneOverflow = false;
  const busy = [false, false];
  const formatLaneRoom = (): string => `${Math.round(((alloc.laneEnd / g.frag) * g.bsize) / MiB)} MiB`;
  let finished = false;
  let entries = 1;
  let dataBytes = 0;

  /** Entries of one lane come one after the other; the two lanes may interleave. */
  const state = (lane: Lane = 0): void => {
    if (finished) throw new InputError('the UFS2 writer is finished; no more entries can be added');
    if (busy[lane]) throw new Error('internal: UFS2 writer calls must not overlap (await file() before the next entry)');
    if (lane === 1 && !options.leadingLane) throw new Error('internal: lane 1 needs Ufs2Options.leadingLane');
  };

  /** The parent directory of `parts`, creating missing ones like tar does (0755 root:wheel, build time). */
  function parentOf(path: string, parts: string[]): DirNode {
    let dir = root;
    for (let i = 0; i < parts.length - 1; i++) {
      const name = parts[i]!;
      const child = dir.children.get(name);
      if (child === undefined) {
        const made: DirNode = {
          kind: 'dir',
          meta: defaultDirMeta(),
          children: new Map(),
          parent: dir,
          ino: 0,
          map: newMap(),
          size: 0,
        };
        dir.children.set(name, made);
        entries++;
        dir = made;
      } else if (child.kind !== 'dir') {
        throw new InputError(`${JSON.stringify(path)} is under ${JSON.stringify(parts.slice(0, i + 1).join('/'))}, which is not a directory`, {
          hint: 'the distribution set is inconsistent; check the archive',
        });
      } else dir = child;
    }
    return dir;
  }

  function addNew(path: string, node: Node): void {
    const parts = splitPath(path);
    if (parts.length === 0) throw new InputError('the root directory cannot be a file, symlink or hard link');
    const dir = parentOf(path, parts);
    const name = parts[parts.length - 1]!;
    if (dir.children.has(name))
      throw new InputError(`duplicate path ${JSON.stringify(path)}`, { hint: 'each non-directory path may appear once in the input' });
    dir.children.set(name, node);
    entries++;
  }

  function lookup(path: string): Node | undefined {
    let node: Node = root;
    for (const part of splitPath(path)) {
      if (node.kind !== 'dir') return undefined;
      const next: Node | undefined = node.children.get(part);
      if (next === undefined) return undefined;
      node = next;
    }
    return node;
  }

  // ---- data placement -------------------------------------------------------------------------

  /** Streams `size` bytes into blocks of `map`; all-zero whole blocks become holes when allowed. */
  async function writeData(
    label: string,
    map: BlockMap,
    size: number,
    data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    allowHoles: boolean,
    lane: Lane = 0,
  ): Promise<void> {
    const { bsize, fsize, frag, nindir } = g;
    const out = lane === 1 ? laneTarget : target;
    const outOfRoom = (): void => {
      if (lane === 1) laneOverflow = true;
      else full = true;
    };
    const nblocks = Math.ceil(size / bsize);
    const open: Array<OpenIndirect | null> = [null, null, null];
    let blockBuf: Buffer | null = null;
    let fill = 0;
    let lbn = 0;
    let received = 0;

    const flushOpen = async (from: number): Promise<void> => {
      for (let d = 2; d >= from; d--) {
        const o = open[d];
        if (o && o.addr > 0 && !full && !laneOverflow) await out.write(o.buf, o.addr * fsize);
        open[d] = null;
      }
    };

    /** Makes sure the indirect blocks above `lbn` exist; returns the block and slot holding its pointer. */
    const indirectSlot = async (n: number): Promise<{ buf: Buffer; slot: number } | null> => {
      let i = n - UFS_NDADDR;
      let level = 0;
      let span = nindir;
      while (i >= span) {
        i -= span;
        level++;
        span *= nindir;
      }
      const idx: number[] = [];
      let rem = i;
      for (let d = level; d >= 0; d--) {
        const unit = nindir ** d;
        idx.push(Math.floor(rem / unit));
        rem %= unit;
      }
      for (let d = 0; d <= level; d++) {
        const key = `${level}:${idx.slice(0, d).join(',')}`;
        let o = open[d];
        if (!o || o.key !== key) {
          await flushOpen(d);
          o = open[d] = { key, addr: 0, buf: Buffer.alloc(bsize) };
        }
        if (o.addr === 0) {
          const a = alloc.block(lane);
          if (a < 0) return null;
          o.addr = a;
          map.frags += frag;
          if (d === 0) map.ib[level] = a;
          else open[d - 1]!.buf.writeBigInt64LE(BigInt(a), idx[d - 1]! * 8);
        }
      }
      return { buf: open[level]!.buf, slot: idx[level]! };
    };

    const emit = async (buf: Buffer, len: number): Promise<void> => {
      const n = lbn++;
      const isLast = n === nblocks - 1;
      if (!isLast && allowHoles && buf.equals(zeroBlock)) return;
      if (full || laneOverflow) return;
      const nfr = n < UFS_NDADDR && isLast ? Math.ceil(len / fsize) : frag;
      let slot: { buf: Buffer; slot: number } | null = null;
      if (n >= UFS_NDADDR) {
        slot = await indirectSlot(n);
        if (slot === null) {
          outOfRoom();
          return;
        }
      }
      const addr = nfr === frag ? alloc.block(lane) : alloc.frags(nfr, lane);
      if (addr < 0) {
        outOfRoom();
        return;
      }
      map.frags += nfr;
      if (slot) slot.buf.writeBigInt64LE(BigInt(addr), slot.slot * 8);
      else map.db[n] = addr;
      await out.write(nfr === frag && buf.length === bsize ? buf : buf.subarray(0, nfr * fsize), addr * fsize);
    };

    for await (const chunk of data) {
      if (received + chunk.length > size)
        throw new InputError(`${label}: more data than the ${size} bytes announced`, {
          hint: 'the archive member is longer than its header says; the archive is corrupt',
        });
      received += chunk.length;
      let pos = 0;
      while (pos < chunk.length) {
        if (fill === 0 && chunk.length - pos >= bsize) {
          // A whole block straight from the chunk: no copy.
          await emit(Buffer.from(chunk.buffer, chunk.byteOffset + pos, bsize), bsize);
          pos += bsize;
          continue;
        }
        blockBuf ??= Buffer.alloc(bsize);
        const take = Math.min(bsize - fill, chunk.length - pos);
        blockBuf.set(chunk.subarray(pos, pos + take), fill);
        fill += take;
        pos += take;
        if (fill === bsize) {
          await emit(blockBuf, bsize);
          fill = 0;
        }
      }
    }
    if (received !== size)
      throw new InputError(`${label}: ${received} bytes of data, but ${size} announced`, {
        hint: 'the archive ended early or the member is truncated; fetch the distribution set again',
      });
    if (fill > 0) {
      blockBuf!.fill(0, fill);
      await emit(blockBuf!, fill);
    }
    await flushOpen(0);
  }

  // ---- the public entry points ----------------------------------------------------------------

  const writer: Ufs2Writer = {
    directory(path, meta, lane = 0) {
      state(lane);
      checkMeta(path, meta);
      const parts = splitPath(path);
      if (parts.length === 0) {
        root.meta = { ...meta };
        return;
      }
      const dir = parentOf(path, parts);
      const name = parts[parts.length - 1]!;
      const existing = dir.children.get(name);
      if (existing) {
        if (existing.kind !== 'dir')
          throw new InputError(`${JSON.stringify(path)} is both a directory and a ${existing.kind}`, {
            hint: 'the distribution set is inconsistent; check the archive',
          });
        existing.meta = { ...meta };
        return;
      }
      dir.children.set(name, { kind: 'dir', meta: { ...meta }, children: new Map(), parent: dir, ino: 0, map: newMap(), size: 0 });
      entries++;
    },

    symlink(path, linkTarget, meta, lane = 0) {
      state(lane);
      checkMeta(path, meta);
      const bytes = symlinkBytes(path, linkTarget, names);
      addNew(path, { kind: 'symlink', meta: { ...meta }, target: bytes, ino: 0, map: newMap() });
    },

    hardlink(path, existingPath, lane = 0) {
      state(lane);
      const existing = lookup(existingPath);
      if (existing === undefined)
        throw new InputError(`hard link ${JSON.stringify(path)} points to ${JSON.stringify(existingPath)}, which does not exist (yet)`, {
          hint: 'hard links must follow the file they name in the archive',
        });
      if (existing.kind !== 'file')
        throw new InputError(`hard link ${JSON.stringify(path)} points to ${JSON.stringify(existingPath)}, which is a ${existing.kind}, not a regular file`);
      addNew(path, existing);
      existing.nlink++;
    },

    async file(path, meta, size, data, lane = 0) {
      state(lane);
      checkMeta(path, meta);
      if (!Number.isSafeInteger(size) || size < 0 || BigInt(size) > g.maxfilesize)
        throw new InputError(`file ${JSON.stringify(path)} has an invalid size ${size}`);
      const node: FileNode = { kind: 'file', meta: { ...meta }, size, nlink: 1, ino: 0, map: newMap() };
      addNew(path, node);
      dataBytes += size;
      busy[lane] = true;
      try {
        await writeData(`file ${JSON.stringify(path)}`, node.map, size, data, true, lane);
      } finally {
        busy[lane] = false;
      }
    },

    async finish() {
      state(0);
      if (busy[1]) throw new Error('internal: finish() while a file of lane 1 is still being written');
      finished = true;
      timestamp = checkTimestamp(options.timestamp);
      return layOut();
    },
  };

  // ---- finish: numbering, directories, inodes, maps, superblocks ----------------------------------

  async function layOut(): Promise<Ufs2Stats> {
    // Inode numbers: directory by directory (breadth first), children in byte order; a hard link keeps the first.
    const byIno: Node[] = [];
    byIno[UFS_ROOTINO] = root;
    let next = UFS_ROOTINO + 1;
    const sorted = new Map<DirNode, Array<[string, Node]>>();
    const queue: DirNode[] = [root];
    for (let q = 0; q < queue.length; q++) {
      const dir = queue[q]!;
      const kids = [...dir.children.entries()]
        .map((kv) => ({ kv, key: nameBytes(kv[0], names, 'the name') }))
        .sort((a, b) => Buffer.compare(a.key, b.key))
        .map((k) => k.kv);
      sorted.set(dir, kids);
      for (const [, child] of kids) {
        if (child.ino === 0) {
          child.ino = next++;
          byIno[child.ino] = child;
        }
      }
      for (const [, child] of kids) if (child.kind === 'dir') queue.push(child);
    }
    const maxIno = next - 1;
    const inodesTotal = g.ncg * g.ipg;
    const inodesShort = maxIno >= inodesTotal;

    // Directory and slow-symlink blocks, in inode order (after all file data).
    if (!inodesShort) {
      for (let ino = UFS_ROOTINO; ino <= maxIno; ino++) {
        const node = byIno[ino]!;
        if (node.kind === 'dir') {
          const list: DirEntryIn[] = [
            { ino: node.ino, type: DT_DIR, name: Buffer.from('.') },
            { ino: (node.parent ?? node).ino, type: DT_DIR, name: Buffer.from('..') },
          ];
          for (const [name, child] of sorted.get(node)!)
            list.push({ ino: child.ino, type: child.kind === 'dir' ? DT_DIR : child.kind === 'file' ? DT_REG : DT_LNK, name: nameBytes(name, names, 'the name') });
          const bytes = encodeDirectory(list);
          node.size = bytes.length;
          await writeData(`directory inode ${ino}`, node.map, bytes.length, [bytes], false);
        } else if (node.kind === 'symlink' && node.target.length >= MAXSYMLINKLEN_UFS2) {
          await writeData(`symlink inode ${ino}`, node.map, node.target.length, [node.target], false);
        }
      }
    }

    if (laneOverflow) {
      throw new InputError(`the files of the leading lane need more than the ${formatLaneRoom()} set aside for them`, {
        hint: 'the set holds more data or entries than its size and MANIFEST say; fetch it again',
      });
    }
    if (full || inodesShort) {
      const needed = estimateUfs2Size({ dataBytes, entries }, options);
      throw new InputError(
        `file system too small: needs at least ${Math.ceil(needed / MiB)} MiB, has ${Math.floor((g.sizeFrags * g.fsize) / MiB)} MiB` +
          (inodesShort ? ` (${entries} entries, ${inodesTotal - UFS_ROOTINO - 1} inodes)` : ''),
        { hint: `give a larger --size (at least ${Math.ceil(needed / MiB)} MiB)` },
      );
    }

    // Inodes, written block by block in inode order.
    const clamp = (t: number): number => Math.min(Math.floor(t), timestamp);
    const inoUsed = new Uint8Array(Math.ceil(inodesTotal / 8));
    const setIno = (i: number): void => void (inoUsed[i >> 3]! |= 1 << (i & 7));
    setIno(0);
    setIno(1);
    const cgDirs = new Array<number>(g.ncg).fill(0);
    const cgMaxIno = new Array<number>(g.ncg).fill(-1);
    let inoBlock = -1;
    let inoBuf = Buffer.alloc(g.bsize);
    const inodeBlockAddr = (ino: number): number =>
      Math.floor(ino / g.ipg) * g.fpg + g.iblkno + Math.floor((ino % g.ipg) / g.inopb) * g.frag;
    for (let ino = UFS_ROOTINO; ino <= maxIno; ino++) {
      const node = byIno[ino]!;
      const blk = Math.floor(ino / g.inopb);
      if (blk !== inoBlock) {
        if (inoBlock >= 0) await target.write(inoBuf, inodeBlockAddr(inoBlock * g.inopb) * g.fsize);
        inoBlock = blk;
        inoBuf = Buffer.alloc(g.bsize);
      }
      setIno(ino);
      const cg = Math.floor(ino / g.ipg);
      cgMaxIno[cg] = ino % g.ipg;
      const m = node.meta;
      const mtime = clamp(m.mtime);
      const nsec = mtime < Math.floor(m.mtime) || !m.mtimeNsec ? 0 : Math.min(Math.max(Math.floor(m.mtimeNsec), 0), 999_999_999);
      let type = IFREG;
      let nlink = 1;
      let size = 0;
      let inline: Buffer | undefined;
      if (node.kind === 'dir') {
        type = IFDIR;
        let subdirs = 0;
        for (const child of node.children.values()) if (child.kind === 'dir') subdirs++;
        nlink = 2 + subdirs;
        size = node.size;
        cgDirs[cg]!++;
      } else if (node.kind === 'file') {
        nlink = node.nlink;
        size = node.size;
      } else {
        type = IFLNK;
        size = node.target.length;
        if (size < MAXSYMLINKLEN_UFS2) inline = node.target;
      }
      if (nlink > UFS_LINK_MAX)
        throw new InputError(`inode ${ino} would have ${nlink} links; UFS allows at most ${UFS_LINK_MAX}`, {
          hint: 'too many hard links to one file or subdirectories in one directory',
        });
      encodeInode(inoBuf, (ino % g.inopb) * DINODE2_SIZE, {
        mode: type | m.mode,
        nlink,
        uid: m.uid,
        gid: m.gid,
        size,
        blocks: node.map.frags * (g.fsize / 512),
        atime: mtime,
        mtime,
        mtimeNsec: nsec,
        ctime: timestamp,
        birthtime: timestamp,
        gen: words(ino) || 1,
        flags: m.flags,
        db: node.map.db,
        ib: node.map.ib,
        inlineData: inline,
      });
    }
    if (inoBlock >= 0) await target.write(inoBuf, inodeBlockAddr(inoBlock * g.inopb) * g.fsize);

    // Cylinder groups: maps from the allocation bitmap, counts, fragment and cluster summaries.
    const csArray = Buffer.alloc(g.cssize);
    const totals: CsTotals = { ndir: 0, nbfree: 0, nifree: 0, nffree: 0 };
    let fragsFree = 0;
    for (let cg = 0; cg < g.ncg; cg++) {
      const base = cg * g.fpg;
      const ndblk = cgDataFrags(g, cg);
      const buf = Buffer.alloc(g.cgsize);
      const cs: CsTotals = { ndir: cgDirs[cg]!, nbfree: 0, nifree: 0, nffree: 0 };
      // inode map
      const inoMap = buf.subarray(g.iusedoff, g.iusedoff + Math.ceil(g.ipg / 8));
      let usedInodes = 0;
      for (let i = 0; i < g.ipg; i++) {
        const ino = cg * g.ipg + i;
        if (inoUsed[ino >> 3]! & (1 << (ino & 7))) {
          inoMap[i >> 3]! |= 1 << (i & 7);
          usedInodes++;
        }
      }
      cs.nifree = g.ipg - usedInodes;
      // free-fragment map, per block: whole free blocks, or runs of free fragments
      const freeMap = buf.subarray(g.freeoff, g.freeoff + Math.ceil(g.fpg / 8));
      const frsum = new Array<number>(8).fill(0);
      const clusterMap = g.contigsumsize > 0 ? buf.subarray(g.clusteroff) : null;
      const nclusterblks = Math.floor(ndblk / g.frag);
      for (let d = 0; d < ndblk; d += g.frag) {
        if (g.frag === 8 && ((base + d) & 7) === 0) {
          // fast path: one bitmap byte is one block
          const byte = alloc.used[(base + d) >> 3]!;
          if (byte === 0xff) continue;
          if (byte === 0) {
            freeMap[d >> 3] = 0xff;
            cs.nbfree++;
            const blk = d / 8;
            if (clusterMap && blk < nclusterblks) clusterMap[blk >> 3]! |= 1 << (blk & 7);
            continue;
          }
        }
        let freeCount = 0;
        let run = 0;
        const runs: number[] = [];
        for (let j = 0; j < g.frag && d + j < ndblk; j++) {
          const f = d + j;
          if (!alloc.isUsed(base + f)) {
            freeMap[f >> 3]! |= 1 << (f & 7);
            freeCount++;
            run++;
          } else if (run > 0) {
            runs.push(run);
            run = 0;
          }
        }
        if (run > 0) runs.push(run);
        if (freeCount === g.frag) {
          cs.nbfree++;
          const blk = d / g.frag;
          if (clusterMap && blk < nclusterblks) clusterMap[blk >> 3]! |= 1 << (blk & 7);
        } else if (freeCount > 0) {
          cs.nffree += freeCount;
          for (const r of runs) frsum[r]!++;
        }
      }
      if (g.contigsumsize > 0) {
        let run = 0;
        const sum = new Array<number>(g.contigsumsize + 1).fill(0);
        for (let b = 0; b <= nclusterblks; b++) {
          if (b < nclusterblks && clusterMap![b >> 3]! & (1 << (b & 7))) run++;
          else if (run > 0) {
            sum[Math.min(run, g.contigsumsize)]!++;
            run = 0;
          }
        }
        for (let i = 1; i <= g.contigsumsize; i++) buf.writeInt32LE(sum[i]!, g.clustersumoff + 4 * i);
      }
      const initediblk = Math.min(g.ipg, Math.max(2 * g.inopb, Math.ceil((cgMaxIno[cg]! + 1) / g.inopb) * g.inopb));
      encodeCgHeader(g, { cgx: cg, ndblk, timestamp, cs, frsum, initediblk, maps: buf });
      await target.write(buf, (base + g.cblkno) * g.fsize);
      csArray.writeInt32LE(cs.ndir, cg * 16);
      csArray.writeInt32LE(cs.nbfree, cg * 16 + 4);
      csArray.writeInt32LE(cs.nifree, cg * 16 + 8);
      csArray.writeInt32LE(cs.nffree, cg * 16 + 12);
      totals.ndir += cs.ndir;
      totals.nbfree += cs.nbfree;
      totals.nifree += cs.nifree;
      totals.nffree += cs.nffree;
      fragsFree += cs.nbfree * g.frag + cs.nffree;
    }
    await target.write(csArray, g.csaddr * g.fsize);

    const fsId: [number, number] = [words(0x7fffffff) | 0, words(0x7ffffffe) | 0];
    const sbFields = { timestamp, fsId, volumeLabel: options.volumeLabel ?? '', totals };
    for (let cg = 0; cg < g.ncg; cg++) {
      const at = (cg * g.fpg + g.sblkno) * g.fsize;
      await target.write(encodeSuperblock(g, { ...sbFields, actualLocation: at }), at);
    }
    await target.write(encodeSuperblock(g, { ...sbFields, actualLocation: SBLOCK_UFS2 }), SBLOCK_UFS2);
    await target.flush?.();
    if (laneTarget !== target) await laneTarget.flush?.();

    return {
      sizeBytes: g.sizeFrags * g.fsize,
      blockSize: g.bsize,
      fragmentSize: g.fsize,
      cylinderGroups: g.ncg,
      inodesTotal,
      inodesUsed: inodesTotal - totals.nifree,
      fragmentsTotal: g.sizeFrags,
      fragmentsFree: fragsFree,
      dataBytes,
    };
  }

  return writer;
}

export { DIRBLKSIZ };
