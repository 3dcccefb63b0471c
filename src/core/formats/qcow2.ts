/**
 * A qcow2 writer (QEMU's docs/interop/qcow2.txt, version 3, 16-bit refcounts, no backing file, no
 * compression) for the raw image fbxen just wrote. The build knows which byte ranges it wrote (every
 * other byte is a hole), so the whole layout is known before a byte of data is read, and the file is
 * written front to back in one pass: header, refcount table, refcount blocks, L1 table, L2 tables, then
 * the data clusters in guest order. That lets the writer hash its own output as it goes.
 *
 * Why not `qemu-img convert -O qcow2`, which fbxen used before: in the build, qemu-img took 0.5–3.5 s
 * writing 1.1 GB through the page cache and the output was then read back for its sha256 (0.8 s).
 * This writer sends the data clusters with O_DIRECT from page-aligned buffers (no page-cache pages to
 * allocate, nothing dirty left to fsync) and hashes them on the way (docs/performance.md). The output
 * is also the same bytes on every host, whatever QEMU version it has. qemu-img stays the judge: the
 * tests run `qemu-img check` and `qemu-img compare` on what this writes.
 */
import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { InputError } from '../errors.js';
import type { ByteRanges } from '../util/ranges.js';
import { readRawFully } from './raw-image.js';

export const QCOW2_DEFAULT_CLUSTER_BITS = 16;
const HEADER_LENGTH = 104;
const REFCOUNT_ORDER = 4; // 16-bit refcounts, as qemu-img creates them
const REFCOUNT_BYTES = 2;
/** L1/L2 "COPIED" flag: the cluster's refcount is exactly 1, so a writer may update it in place. */
const COPIED_HIGH_BIT = 0x80000000;
/** Bits 9-55 hold a host offset: images up to 2^56 bytes. */
const MAX_OFFSET = 2 ** 56;
const IO_CHUNK = 4 * 1024 * 1024;
const IO_SLOTS = 3;


export interface Qcow2Layout {
  clusterSize: number;
  virtualSize: number;
  /** Allocated guest clusters as [first, end) runs, in order: their data follows the metadata. */
  runs: [number, number][];
  /** Header, refcount table and blocks, L1 and L2 tables, as they lie at the start of the file. */
  metadata: Buffer;
  fileSize: number;
}

/** Guest clusters that hold any byte of the given ranges, as merged [first, end) runs. */
export function allocatedRuns(ranges: ByteRanges, virtualSize: number, clusterSize: number): [number, number][] {
  const total = Math.ceil(virtualSize / clusterSize);
  const runs: [number, number][] = [];
  for (const [start, end] of [...ranges].sort((a, b) => a[0] - b[0])) {
    const first = Math.floor(Math.max(0, start) / clusterSize);
    const last = Math.min(total, Math.ceil(Math.min(end, virtualSize) / clusterSize));
    if (last <= first) continue;
    const prev = runs[runs.length - 1];
    if (prev && first <= prev[1]) prev[1] = Math.max(prev[1], last);
    else runs.push([first, last]);
  }
  return runs;
}

function writeOffset(buf: Buffer, at: number, offset: number, copied: boolean): void {
  buf.writeUInt32BE((Math.floor(offset / 2 ** 32) | (copied ? COPIED_HIGH_BIT : 0)) >>> 0, at);
  buf.writeUInt32BE(offset >>> 0, at + 4);
}

/** The layout and metadata of a qcow2 image of `virtualSize` bytes whose data lies within `ranges`. */
export function planQcow2(virtualSize: number, ranges: ByteRanges, clusterBits = QCOW2_DEFAULT_CLUSTER_BITS): Qcow2Layout {
  if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) throw new Error(`internal: qcow2 cluster_bits ${clusterBits} outside 9..21`);
  if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0 || virtualSize % 512 !== 0) {
    throw new InputError(`a qcow2 image needs a positive whole number of 512-byte sectors, not ${virtualSize} bytes`, { hint: 'rebuild the raw image' });
  }
  const clusterSize = 2 ** clusterBits;
  const l2Entries = clusterSize / 8;
  const refcountsPerBlock = clusterSize / REFCOUNT_BYTES;
  const runs = allocatedRuns(ranges, virtualSize, clusterSize);

  const l1Size = Math.ceil(virtualSize / (clusterSize * l2Entries));
  const l1Clusters = Math.ceil((l1Size * 8) / clusterSize);
  const l2Indexes: number[] = []; // L1 entries that get an L2 table, ascending
  let dataClusters = 0;
  for (const [first, end] of runs) {
    dataClusters += end - first;
    for (let i = Math.floor(first / l2Entries); i <= Math.floor((end - 1) / l2Entries); i++) {
      if (l2Indexes[l2Indexes.length - 1] !== i) l2Indexes.push(i);
    }
  }
  // The refcount blocks must count themselves and the table that points at them: grow until stable.
  let refcountBlocks = 1;
  let refcountTableClusters = 1;
  let hostClusters: number;
  for (;;) {
    hostClusters = 1 + refcountTableClusters + refcountBlocks + l1Clusters + l2Indexes.length + dataClusters;
    const blocks = Math.ceil(hostClusters / refcountsPerBlock);
    const tableClusters = Math.ceil((blocks * 8) / clusterSize);
    if (blocks === refcountBlocks && tableClusters === refcountTableClusters) break;
    refcountBlocks = blocks;
    refcountTableClusters = tableClusters;
  }
  const fileSize = hostClusters * clusterSize;
  if (fileSize >= MAX_OFFSET) throw new InputError(`a ${virtualSize}-byte qcow2 image is beyond the format's 2^56-byte limit`, { hint: 'use a smaller --disk-size' });

  const refcountTableAt = 1;
  const refcountBlocksAt = refcountTableAt + refcountTableClusters;
  const l1At = refcountBlocksAt + refcountBlocks;
  const l2At = l1At + l1Clusters;
  const dataAt = l2At + l2Indexes.length;
  const metadata = Buffer.alloc(dataAt * clusterSize);

  // Header (version 3). Everything after header_length is zero: the end-of-extensions marker.
  metadata.write('QFI\xfb', 0, 'latin1');
  metadata.writeUInt32BE(3, 4);
  metadata.writeUInt32BE(clusterBits, 20);
  writeOffset(metadata, 24, virtualSize, false);
  metadata.writeUInt32BE(l1Size, 36);
  writeOffset(metadata, 40, l1At * clusterSize, false);
  writeOffset(metadata, 48, refcountTableAt * clusterSize, false);
  metadata.writeUInt32BE(refcountTableClusters, 56);
  metadata.writeUInt32BE(REFCOUNT_ORDER, 96);
  metadata.writeUInt32BE(HEADER_LENGTH, 100);

  for (let b = 0; b < refcountBlocks; b++) writeOffset(metadata, refcountTableAt * clusterSize + b * 8, (refcountBlocksAt + b) * clusterSize, false);
  for (let c = 0; c < hostClusters; c++) metadata.writeUInt16BE(1, refcountBlocksAt * clusterSize + c * REFCOUNT_BYTES);

  const l2Position = new Map<number, number>();
  l2Indexes.forEach((index, k) => {
    l2Position.set(index, (l2At + k) * clusterSize);
    writeOffset(metadata, l1At * clusterSize + index * 8, (l2At + k) * clusterSize, true);
  });
  let host = dataAt;
  for (const [first, end] of runs) {
    for (let g = first; g < end; g++, host++) {
      writeOffset(metadata, l2Position.get(Math.floor(g / l2Entries))! + (g % l2Entries) * 8, host * clusterSize, true);
    }
  }
  return { clusterSize, virtualSize, runs, metadata, fileSize };
}

// Node has it as a global; the project's TypeScript libs (ES only, no DOM) do not declare it.
declare const WebAssembly: { Memory: new (descriptor: { initial: number }) => { buffer: ArrayBuffer } };

/** Page-aligned buffers: O_DIRECT wants the memory aligned too, and a WebAssembly memory is. */
function alignedSlots(count: number, size: number): Buffer[] {
  const memory = new WebAssembly.Memory({ initial: (count * size) / 65536 });
  return Array.from({ length: count }, (_, i) => Buffer.from(memory.buffer, i * size, size));
}

/**
 * Opens the output for direct I/O where the file system takes it: one aligned cluster written at
 * offset 0 (the header overwrites it) proves that every later write, aligned the same way, will pass.
 */
async function openOutput(path: string, direct: boolean, probe: Buffer): Promise<FileHandle> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC;
  if (direct && constants.O_DIRECT) {
    let out: FileHandle | undefined;
    try {
      out = await open(path, flags | constants.O_DIRECT, 0o644);
      await out.write(probe, 0, probe.length, 0);
      return out;
    } catch (err) {
      await out?.close();
      // tmpfs and some network file systems refuse O_DIRECT: write through the page cache there.
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    }
  }
  return open(path, flags, 0o644);
}

async function writeFully(out: FileHandle, buf: Buffer, length: number, position: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesWritten } = await out.write(buf, done, length - done, position + done);
    done += bytesWritten;
  }
}

export interface Qcow2WriteOptions {
  /** Where the raw image holds data; everything else must be zero (a hole). Default: all of it. */
  ranges?: ByteRanges;
  clusterBits?: number;
  signal?: AbortSignal;
}

/**
 * Writes `outPath` (directly; the caller renames it into place) as a qcow2 image with the contents of
 * the raw image, and returns its size and sha256, computed on the way.
 */
export async function writeQcow2(rawPath: string, outPath: string, opts: Qcow2WriteOptions = {}): Promise<{ size: number; sha256: string }> {
  const raw = await open(rawPath, 'r');
  let out: FileHandle | undefined;
  const inflight: (Promise<void> | undefined)[] = new Array(IO_SLOTS);
  try {
    const { size: virtualSize }: Stats = await raw.stat();
    const layout = planQcow2(virtualSize, opts.ranges ?? [[0, virtualSize]], opts.clusterBits);
    const { clusterSize } = layout;
    const chunk = Math.max(clusterSize, IO_CHUNK);
    const slots = alignedSlots(IO_SLOTS, chunk);
    // Direct I/O only when every write is a whole number of 4 KiB blocks at a 4 KiB-aligned offset.
    out = await openOutput(outPath, clusterSize >= 4096, slots[0]!.fill(0, 0, clusterSize).subarray(0, clusterSize));
    const hash = createHash('sha256');
    let turn = 0;
    /** Queues `length` bytes of the next slot for writing at `position`, once `fill` has put them there. */
    const send = async (length: number, position: number, fill: (buf: Buffer) => Promise<void>) => {
      opts.signal?.throwIfAborted();
      const slot = turn++ % IO_SLOTS;
      await inflight[slot];
      await fill(slots[slot]!);
      hash.update(slots[slot]!.subarray(0, length));
      inflight[slot] = writeFully(out!, slots[slot]!, length, position);
      // A failed write surfaces when its slot is awaited again, or at the end.
      inflight[slot].catch(() => undefined);
    };

    for (let at = 0; at < layout.metadata.length; at += chunk) {
      const length = Math.min(chunk, layout.metadata.length - at);
      await send(length, at, async (buf) => void layout.metadata.copy(buf, 0, at, at + length));
    }
    let position = layout.metadata.length;
    const perChunk = chunk / clusterSize;
    for (const [first, end] of layout.runs) {
      for (let g = first; g < end; g += perChunk) {
        const clusters = Math.min(perChunk, end - g);
        const length = clusters * clusterSize;
        const from = g * clusterSize;
        // The last cluster may run past the end of the disk: the rest of it is zeros.
        const available = Math.min(length, virtualSize - from);
        await send(length, position, async (buf) => {
          await readRawFully(raw, buf, available, from);
          if (available < length) buf.fill(0, available, length);
        });
        position += length;
      }
    }
    await Promise.all(inflight);
    return { size: layout.fileSize, sha256: hash.digest('hex') };
  } finally {
    // No write may still be running on the descriptor when it is closed, whatever failed.
    await Promise.allSettled(inflight);
    await out?.close();
    await raw.close();
  }
}
