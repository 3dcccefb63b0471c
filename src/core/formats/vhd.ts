/**
 * A dynamic VHD writer (Microsoft "Virtual Hard Disk Image Format Specification" 1.0): footer copy,
 * dynamic disk header, BAT, then one 2 MiB block (512-byte sector bitmap + data) per block of the raw
 * image that holds any non-zero byte, then the footer. Reproducible: the UUID comes from the seed and
 * the timestamp from opts, so two runs over the same raw image give the same bytes.
 *
 * Why not `qemu-img convert -O vpc`: its UUID and timestamp are random (imaging.md §4). Why the
 * creator "tap": XenServer's blktap writes "tap\0", and QEMU (vpc.c) then trusts current_size instead
 * of the CHS geometry, so every reader sees exactly the raw size (the backup GPT stays on the last LBA).
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { dataTester, type ByteRanges } from '../util/ranges.js';
import { readRawFully } from './raw-image.js';

export const VHD_SECTOR = 512;
export const VHD_BLOCK_SIZE = 2 * 1024 * 1024;
const SECTORS_PER_BLOCK = VHD_BLOCK_SIZE / VHD_SECTOR;
/** One bit per sector, rounded up to whole sectors: 4096 bits = 512 bytes for 2 MiB blocks. */
const BITMAP_BYTES = Math.ceil(SECTORS_PER_BLOCK / 8 / VHD_SECTOR) * VHD_SECTOR;
const FOOTER_BYTES = 512;
const DYNAMIC_HEADER_BYTES = 1024;
const BAT_OFFSET = FOOTER_BYTES + DYNAMIC_HEADER_BYTES;
/** Seconds between the Unix epoch and the VHD epoch (2000-01-01T00:00:00Z). */
const VHD_EPOCH_OFFSET = 946_684_800;
const UNUSED_BAT_ENTRY = 0xffffffff;
const DISK_TYPE_DYNAMIC = 3;
/** blktap's VHD_VERSION(1, 3): tapdisk refuses creator versions newer than the one it knows. */
const CREATOR_VERSION_TAP = 0x00010003;

export interface VhdGeometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

/** CHS geometry as computed in the VHD specification's appendix (informational for "tap" images). */
export function vhdGeometry(sizeBytes: number): VhdGeometry {
  let totalSectors = Math.floor(sizeBytes / VHD_SECTOR);
  if (totalSectors > 65535 * 16 * 255) totalSectors = 65535 * 16 * 255;
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.floor((cylinderTimesHeads + 1023) / 1024);
    if (heads < 4) heads = 4;
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

/** The VHD checksum: one's complement of the byte sum, with the checksum field taken as zero. */
export function vhdChecksum(buf: Uint8Array, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) {
    if (i >= checksumOffset && i < checksumOffset + 4) continue;
    sum = (sum + buf[i]!) >>> 0;
  }
  return ~sum >>> 0;
}

/** A UUID-shaped 16 bytes derived from the seed (version 4 / RFC 4122 variant bits set). */
export function uuidBytesFromSeed(seed: string, purpose: string): Buffer {
  const b = createHash('sha256').update(`fbxen:${purpose}:${seed}`).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return Buffer.from(b);
}

export function formatUuid(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export interface VhdFooterFields {
  sizeBytes: number;
  timestamp: number;
  uuid: Uint8Array;
}

export function encodeVhdFooter(f: VhdFooterFields): Buffer {
  const b = Buffer.alloc(FOOTER_BYTES);
  b.write('conectix', 0, 'latin1');
  b.writeUInt32BE(0x00000002, 8); // features: "reserved" bit, always set
  b.writeUInt32BE(0x00010000, 12); // file format version 1.0
  b.writeBigUInt64BE(BigInt(FOOTER_BYTES), 16); // data offset: the dynamic header follows the footer copy
  b.writeUInt32BE(vhdTimestamp(f.timestamp), 24);
  b.write('tap\0', 28, 'latin1');
  b.writeUInt32BE(CREATOR_VERSION_TAP, 32);
  b.write('Wi2k', 36, 'latin1');
  b.writeBigUInt64BE(BigInt(f.sizeBytes), 40); // original size
  b.writeBigUInt64BE(BigInt(f.sizeBytes), 48); // current size
  const g = vhdGeometry(f.sizeBytes);
  b.writeUInt16BE(g.cylinders, 56);
  b.writeUInt8(g.heads, 58);
  b.writeUInt8(g.sectorsPerTrack, 59);
  b.writeUInt32BE(DISK_TYPE_DYNAMIC, 60);
  Buffer.from(f.uuid).copy(b, 68, 0, 16);
  b.writeUInt32BE(vhdChecksum(b, 64), 64);
  return b;
}

export function encodeVhdDynamicHeader(maxTableEntries: number): Buffer {
  const b = Buffer.alloc(DYNAMIC_HEADER_BYTES);
  b.write('cxsparse', 0, 'latin1');
  b.writeBigUInt64BE(0xffffffffffffffffn, 8); // data offset: unused
  b.writeBigUInt64BE(BigInt(BAT_OFFSET), 16);
  b.writeUInt32BE(0x00010000, 24); // header version 1.0
  b.writeUInt32BE(maxTableEntries, 28);
  b.writeUInt32BE(VHD_BLOCK_SIZE, 32);
  b.writeUInt32BE(vhdChecksum(b, 36), 36);
  return b;
}

function vhdTimestamp(unixSeconds: number): number {
  return Math.max(0, Math.min(0xffffffff, Math.floor(unixSeconds) - VHD_EPOCH_OFFSET));
}

function isAllZero(buf: Buffer, zero: Buffer): boolean {
  return buf.length === zero.length ? buf.equals(zero) : buf.equals(zero.subarray(0, buf.length));
}

/**
 * Converts a raw disk image to a dynamic VHD at `outPath` (written directly; the caller renames).
 * Blocks that are entirely zero get no BAT entry and take no space (a zero block reads back as zeros
 * from an unallocated BAT entry anyway). Blocks outside `ranges` (the build's record of what it wrote)
 * are holes and are not read at all; without ranges every block is read and checked.
 */
export async function writeDynamicVhd(rawPath: string, outPath: string, opts: { timestamp: number; seed: string; ranges?: ByteRanges }): Promise<{ size: number }> {
  const raw = await open(rawPath, 'r');
  let out: FileHandle | undefined;
  try {
    const rawSize = (await raw.stat()).size;
    if (rawSize === 0 || rawSize % VHD_SECTOR !== 0) {
      throw new InputError(`raw image ${rawPath} is ${rawSize} bytes, not a positive multiple of ${VHD_SECTOR}`, {
        hint: 'a disk image must be a whole number of 512-byte sectors; rebuild the raw image',
      });
    }
    // The spec's CHS limit is informational for "tap" images, but the 32-bit BAT index is a hard one.
    const maxTableEntries = Math.ceil(rawSize / VHD_BLOCK_SIZE);
    if (maxTableEntries > 0xfffffffe) throw new InputError(`raw image ${rawPath} is too large for a VHD`, { hint: 'VHD disks end at about 2 TiB on XenServer; use a smaller disk' });

    const footer = encodeVhdFooter({ sizeBytes: rawSize, timestamp: opts.timestamp, uuid: uuidBytesFromSeed(opts.seed, 'vhd') });
    const batBytes = Math.ceil((maxTableEntries * 4) / VHD_SECTOR) * VHD_SECTOR;
    const bat = Buffer.alloc(batBytes, 0xff);
    const bitmap = Buffer.alloc(BITMAP_BYTES, 0xff); // every sector of an allocated block is present
    const zero = Buffer.alloc(VHD_BLOCK_SIZE);
    const block = Buffer.alloc(VHD_BLOCK_SIZE);

    out = await open(outPath, 'w');
    await out.write(footer, 0, FOOTER_BYTES, 0);
    await out.write(encodeVhdDynamicHeader(maxTableEntries), 0, DYNAMIC_HEADER_BYTES, FOOTER_BYTES);
    let next = BAT_OFFSET + batBytes;
    const mayHoldData = dataTester(opts.ranges);
    for (let i = 0; i < maxTableEntries; i++) {
      const start = i * VHD_BLOCK_SIZE;
      const length = Math.min(VHD_BLOCK_SIZE, rawSize - start);
      if (!mayHoldData(start, start + length)) continue; // a hole: not even read
      await readRawFully(raw, block, length, start);
      const data = block.subarray(0, length);
      if (isAllZero(data, zero)) continue;
      bat.writeUInt32BE(next / VHD_SECTOR, i * 4);
      await out.write(bitmap, 0, BITMAP_BYTES, next);
      // A short last block is still a full block on disk: readers expect block_size bytes after the bitmap.
      if (length < VHD_BLOCK_SIZE) block.fill(0, length);
      await out.write(block, 0, VHD_BLOCK_SIZE, next + BITMAP_BYTES);
      next += BITMAP_BYTES + VHD_BLOCK_SIZE;
    }
    for (let i = maxTableEntries; i < batBytes / 4; i++) bat.writeUInt32BE(UNUSED_BAT_ENTRY, i * 4);
    await out.write(bat, 0, batBytes, BAT_OFFSET);
    await out.write(footer, 0, FOOTER_BYTES, next);
    await out.truncate(next + FOOTER_BYTES);
    return { size: next + FOOTER_BYTES };
  } finally {
    await out?.close();
    await raw.close();
  }
}
