/**
 * The inode side of finish(): inode numbers from the byte-sorted tree, directory and slow-symlink
 * blocks, and the inode blocks themselves.
 */
import { InputError } from '../errors.js';
import { DINODE2_SIZE, MAXSYMLINKLEN_UFS2, UFS_ROOTINO } from './geometry.js';
import { DT_DIR, DT_LNK, DT_REG, IFDIR, IFLNK, IFREG, encodeDirectory, encodeInode, type DirEntryIn } from './layout.js';
import { nameBytes } from './input.js';
import { writeData } from './data.js';
import type { DirNode, Node, WriterState } from './state.js';

/** di_nlink is an int16_t. */
const UFS_LINK_MAX = 32767;

export interface Numbering {
  /** Nodes by inode number (from UFS_ROOTINO to maxIno). */
  byIno: Node[];
  /** Each directory's children in byte order of their names. */
  sorted: Map<DirNode, Array<[string, Node]>>;
  maxIno: number;
}

/** Inode numbers: directory by directory (breadth first), children in byte order; a hard link keeps the first. */
export function numberInodes(s: WriterState): Numbering {
  const byIno: Node[] = [];
  byIno[UFS_ROOTINO] = s.root;
  let next = UFS_ROOTINO + 1;
  const sorted = new Map<DirNode, Array<[string, Node]>>();
  const queue: DirNode[] = [s.root];
  for (let q = 0; q < queue.length; q++) {
    const dir = queue[q]!;
    const kids = [...dir.children.entries()]
      .map((kv) => ({ kv, key: nameBytes(kv[0], s.names, 'the name') }))
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
  return { byIno, sorted, maxIno: next - 1 };
}

/** Directory and slow-symlink blocks, in inode order (after all file data). */
export async function writeDirectoryBlocks(s: WriterState, { byIno, sorted, maxIno }: Numbering): Promise<void> {
  for (let ino = UFS_ROOTINO; ino <= maxIno; ino++) {
    const node = byIno[ino]!;
    if (node.kind === 'dir') {
      const list: DirEntryIn[] = [
        { ino: node.ino, type: DT_DIR, name: Buffer.from('.') },
        { ino: (node.parent ?? node).ino, type: DT_DIR, name: Buffer.from('..') },
      ];
      for (const [name, child] of sorted.get(node)!)
        list.push({ ino: child.ino, type: child.kind === 'dir' ? DT_DIR : child.kind === 'file' ? DT_REG : DT_LNK, name: nameBytes(name, s.names, 'the name') });
      const bytes = encodeDirectory(list);
      node.size = bytes.length;
      await writeData(s, `directory inode ${ino}`, node.map, bytes.length, [bytes], false);
    } else if (node.kind === 'symlink' && node.target.length >= MAXSYMLINKLEN_UFS2) {
      await writeData(s, `symlink inode ${ino}`, node.map, node.target.length, [node.target], false);
    }
  }
}

/** What the cylinder groups need to know of the inodes written. */
export interface InodeUse {
  /** Bitmap of used inode numbers over the whole file system. */
  inoUsed: Uint8Array;
  /** Directories per cylinder group. */
  cgDirs: number[];
  /** Highest used inode index within each cylinder group, -1 for none. */
  cgMaxIno: number[];
}

/** Inodes, written block by block in inode order; times are clamped to `timestamp`. */
export async function writeInodes(s: WriterState, { byIno, maxIno }: Numbering, timestamp: number): Promise<InodeUse> {
  const { g, target } = s;
  const clamp = (t: number): number => Math.min(Math.floor(t), timestamp);
  const inoUsed = new Uint8Array(Math.ceil((g.ncg * g.ipg) / 8));
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
      gen: s.words(ino) || 1,
      flags: m.flags,
      db: node.map.db,
      ib: node.map.ib,
      inlineData: inline,
    });
  }
  if (inoBlock >= 0) await target.write(inoBuf, inodeBlockAddr(inoBlock * g.inopb) * g.fsize);
  return { inoUsed, cgDirs, cgMaxIno };
}
