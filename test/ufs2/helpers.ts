/**
 * Test helpers: a small in-memory model of an input set, a builder that streams it through the
 * writer into a sparse image file, and a comparison of what the independent reader finds with the
 * model. Every image a test makes goes through fsckUfs2.
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { createFileBlockTarget } from '../../src/core/ufs2/target.js';
import { createUfs2Writer } from '../../src/core/ufs2/writer.js';
import type { FsMeta, Ufs2Options, Ufs2Stats } from '../../src/core/ufs2/types.js';
import { fsckUfs2 } from '../support/ufs2/fsck.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, openUfs2, type Ufs2Image } from '../support/ufs2/reader.js';

export const TS = 1717200000;
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Data of a file: literal bytes, or a generator for big (mostly zero) files. */
export type FileData = Buffer | { size: number; chunks: () => Iterable<Uint8Array>; sha256: string };

export type Entry =
  | { kind: 'dir'; path: string; meta: FsMeta }
  | { kind: 'file'; path: string; meta: FsMeta; data: FileData }
  | { kind: 'symlink'; path: string; target: string; meta: FsMeta }
  | { kind: 'hardlink'; path: string; target: string };

export const meta = (mode: number, extra: Partial<FsMeta> = {}): FsMeta => ({ mode, uid: 0, gid: 0, mtime: TS - 1000, flags: 0, ...extra });

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function sizeOf(d: FileData): number {
  return Buffer.isBuffer(d) ? d.length : d.size;
}

/** Splits literal data into uneven chunks so block assembly across chunk edges is exercised. */
function* chunked(b: Buffer, chunk: number): Iterable<Uint8Array> {
  for (let off = 0; off < b.length; off += chunk) yield b.subarray(off, Math.min(b.length, off + chunk));
}

export interface BuildResult {
  path: string;
  stats: Ufs2Stats;
}

export async function buildImage(
  path: string,
  entries: readonly Entry[],
  options: Partial<Ufs2Options> & { sizeBytes: number },
  chunkSize = 65_537,
): Promise<BuildResult> {
  const fd = openSync(path, 'w+');
  try {
    ftruncateSync(fd, options.sizeBytes);
    const target = createFileBlockTarget(fd, 0);
    const w = createUfs2Writer(target, { timestamp: TS, seed: 'test', ...options });
    for (const e of entries) {
      if (e.kind === 'dir') w.directory(e.path, e.meta);
      else if (e.kind === 'symlink') w.symlink(e.path, e.target, e.meta);
      else if (e.kind === 'hardlink') w.hardlink(e.path, e.target);
      else {
        const d = e.data;
        await w.file(e.path, e.meta, sizeOf(d), Buffer.isBuffer(d) ? chunked(d, chunkSize) : d.chunks());
      }
    }
    const stats = await w.finish();
    return { path, stats };
  } finally {
    closeSync(fd);
  }
}

/** What the model says each path should be, after implicit parents and hard links are resolved. */
export interface Expected {
  type: 'dir' | 'file' | 'symlink';
  meta: FsMeta;
  size: number;
  sha256?: string;
  target?: string;
  nlink: number;
  /** Paths sharing the inode (hard links). */
  group: string;
}

export function expectedTree(entries: readonly Entry[]): Map<string, Expected> {
  const out = new Map<string, Expected>();
  const implicit = (): FsMeta => ({ mode: 0o755, uid: 0, gid: 0, mtime: TS, flags: 0 });
  out.set('', { type: 'dir', meta: implicit(), size: 0, nlink: 2, group: '' });
  const ensureParents = (p: string): void => {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) {
      const q = parts.slice(0, i).join('/');
      if (!out.has(q)) out.set(q, { type: 'dir', meta: implicit(), size: 0, nlink: 2, group: q });
    }
  };
  for (const e of entries) {
    if (e.path !== '') ensureParents(e.path);
    if (e.kind === 'dir') {
      const prev = out.get(e.path);
      out.set(e.path, { type: 'dir', meta: e.meta, size: 0, nlink: 2, group: prev?.group ?? e.path });
    } else if (e.kind === 'file') {
      const d = e.data;
      out.set(e.path, { type: 'file', meta: e.meta, size: sizeOf(d), sha256: Buffer.isBuffer(d) ? sha256(d) : d.sha256, nlink: 1, group: e.path });
    } else if (e.kind === 'symlink') {
      out.set(e.path, { type: 'symlink', meta: e.meta, size: Buffer.byteLength(e.target), target: e.target, nlink: 1, group: e.path });
    } else {
      const t = out.get(e.target)!;
      out.set(e.path, t);
      t.nlink++;
    }
  }
  for (const [p, x] of out) if (x.type === 'dir' && p !== '') out.get(p.split('/').slice(0, -1).join('/'))!.nlink++;
  return out;
}

/** Reads the image with the independent reader and compares every path with the model. */
export function expectImageMatches(img: Ufs2Image, entries: readonly Entry[], opts: { contents?: boolean } = {}): void {
  const want = expectedTree(entries);
  const have = new Map(img.walk().map((e) => [e.path, e.inode]));
  expect([...have.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [path, w] of want) {
    const ino = have.get(path)!;
    const type = ino.mode & S_IFMT;
    const label = `${path || '/'}`;
    expect(type, label).toBe(w.type === 'dir' ? S_IFDIR : w.type === 'file' ? S_IFREG : S_IFLNK);
    expect(ino.mode & 0o7777, label).toBe(w.meta.mode);
    expect([ino.uid, ino.gid, ino.flags], label).toEqual([w.meta.uid, w.meta.gid, w.meta.flags]);
    expect(ino.mtime, label).toBe(Math.min(Math.floor(w.meta.mtime), TS));
    expect(ino.nlink, label).toBe(w.nlink);
    if (w.type !== 'dir') expect(ino.size, label).toBe(w.size);
    if (w.type === 'symlink') expect(img.symlinkTarget(ino), label).toBe(w.target);
    if (w.type === 'file' && opts.contents !== false && w.size <= 64 * MiB) expect(sha256(img.readAll(ino)), label).toBe(w.sha256);
  }
  // hard links share the inode, other paths do not
  const inoOf = new Map<Expected, number>();
  const seen = new Map<number, Expected>();
  for (const [path, w] of want) {
    const ino = have.get(path)!.ino;
    if (inoOf.has(w)) expect(ino, `${path} is a hard link`).toBe(inoOf.get(w));
    else {
      expect(seen.has(ino), `${path} has its own inode`).toBe(false);
      inoOf.set(w, ino);
      seen.set(ino, w);
    }
  }
}

export function checkClean(path: string, opts: { sorted?: boolean } = {}): Ufs2Image {
  const img = openUfs2(path);
  expect(fsckUfs2(img, { requireSortedDirs: opts.sorted ?? true })).toEqual([]);
  return img;
}

/** A deterministic pseudo-random buffer (xorshift), so test data is not all zeros or repetitive. */
export function noise(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  for (let i = size & ~3; i < size; i++) b[i] = i & 0xff;
  return b;
}

/** A sparse file: zeros with a few non-zero marks at given offsets, streamed in 1 MiB chunks. */
export function sparseFile(size: number, marks: ReadonlyArray<[offset: number, bytes: Buffer]>): FileData {
  const chunk = MiB;
  const zero = Buffer.alloc(chunk);
  const hash = createHash('sha256');
  const make = function* (): Iterable<Uint8Array> {
    for (let off = 0; off < size; off += chunk) {
      const n = Math.min(chunk, size - off);
      const hits = marks.filter(([o, b]) => o < off + n && o + b.length > off);
      if (hits.length === 0) {
        yield zero.subarray(0, n);
        continue;
      }
      const c = Buffer.alloc(n);
      for (const [o, b] of hits) b.copy(c, Math.max(0, o - off), Math.max(0, off - o), Math.min(b.length, off + n - o));
      yield c;
    }
  };
  // Hashing multi-GiB streams would dominate the test time; big files are checked by ranges instead.
  if (size <= 64 * MiB) for (const c of make()) hash.update(c);
  return { size, chunks: make, sha256: size <= 64 * MiB ? hash.digest('hex') : '' };
}
