/**
 * The GPT of an fbxen image: protective MBR carrying FreeBSD's pmbr boot code, primary and backup
 * headers and entry arrays with their CRCs (UEFI spec §5; field list in shared/design/imaging.md §3.2).
 * Pure: returns the bytes of the first 34 and last 33 sectors for the caller to write.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { InputError } from '../errors.js';

export const SECTOR = 512;
const ENTRIES = 128;
const ENTRY_SIZE = 128;
const ARRAY_SECTORS = (ENTRIES * ENTRY_SIZE) / SECTOR; // 32

export const PartitionType = {
  efi: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  freebsdBoot: '83BD6B9D-7F41-11DC-BE0B-001560B84F0F',
  freebsdSwap: '516E7CB5-6ECF-11D6-8FF8-00022D09712B',
  freebsdUfs: '516E7CB6-6ECF-11D6-8FF8-00022D09712B',
} as const;

export interface GptPartition {
  type: string;
  guid: string;
  /** GPT name; FreeBSD shows it as /dev/gpt/<label>. */
  label: string;
  firstLba: number;
  /** Inclusive. */
  lastLba: number;
}

export interface GptLayout {
  totalSectors: number;
  diskGuid: string;
  partitions: GptPartition[];
}

/** A GUID (RFC 4122 variant, version 4 bits) derived from a seed: reproducible identifiers. */
export function guidFromSeed(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  h[6] = (h[6]! & 0x0f) | 0x40;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex').toUpperCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** GUID in GPT's mixed-endian byte order: the first three fields little-endian. */
export function guidBytes(guid: string): Buffer {
  const hex = guid.replace(/-/g, '');
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) throw new Error(`not a GUID: ${guid}`);
  const b = Buffer.from(hex, 'hex');
  return Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8)]);
}

function chs(lba: number): [number, number, number] {
  const heads = 255;
  const sectors = 63;
  const cyl = Math.floor(lba / (heads * sectors));
  if (cyl > 1023) return [0xff, 0xff, 0xff];
  const head = Math.floor(lba / sectors) % heads;
  const sector = (lba % sectors) + 1;
  return [head, ((cyl >> 2) & 0xc0) | sector, cyl & 0xff];
}

function protectiveMbr(pmbr: Buffer, totalSectors: number): Buffer {
  const mbr = Buffer.alloc(SECTOR);
  pmbr.copy(mbr, 0, 0, 446); // boot code only: the partition table is ours
  const e = 446;
  mbr[e] = 0x00;
  mbr.set([0x00, 0x02, 0x00], e + 1);
  mbr[e + 4] = 0xee;
  mbr.set(chs(totalSectors - 1), e + 5);
  mbr.writeUInt32LE(1, e + 8);
  mbr.writeUInt32LE(Math.min(totalSectors - 1, 0xffffffff), e + 12);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  return mbr;
}

function entryArray(partitions: readonly GptPartition[]): Buffer {
  const arr = Buffer.alloc(ENTRIES * ENTRY_SIZE);
  partitions.forEach((p, i) => {
    const o = i * ENTRY_SIZE;
    guidBytes(p.type).copy(arr, o);
    guidBytes(p.guid).copy(arr, o + 16);
    arr.writeBigUInt64LE(BigInt(p.firstLba), o + 32);
    arr.writeBigUInt64LE(BigInt(p.lastLba), o + 40);
    arr.writeBigUInt64LE(0n, o + 48);
    const name = Buffer.from(p.label, 'utf16le');
    name.copy(arr, o + 56, 0, Math.min(name.length, 72));
  });
  return arr;
}

function header(layout: GptLayout, myLba: number, altLba: number, entriesLba: number, arrayCrc: number): Buffer {
  const h = Buffer.alloc(SECTOR);
  h.write('EFI PART', 0, 'latin1');
  h.writeUInt32LE(0x00010000, 8);
  h.writeUInt32LE(92, 12);
  h.writeBigUInt64LE(BigInt(myLba), 24);
  h.writeBigUInt64LE(BigInt(altLba), 32);
  h.writeBigUInt64LE(BigInt(2 + ARRAY_SECTORS), 40);
  h.writeBigUInt64LE(BigInt(layout.totalSectors - 2 - ARRAY_SECTORS), 48);
  guidBytes(layout.diskGuid).copy(h, 56);
  h.writeBigUInt64LE(BigInt(entriesLba), 72);
  h.writeUInt32LE(ENTRIES, 80);
  h.writeUInt32LE(ENTRY_SIZE, 84);
  h.writeUInt32LE(arrayCrc, 88);
  h.writeUInt32LE(crc32(h.subarray(0, 92)), 16);
  return h;
}

export function firstUsableLba(): number {
  return 2 + ARRAY_SECTORS;
}

export function lastUsableLba(totalSectors: number): number {
  return totalSectors - 2 - ARRAY_SECTORS;
}

export function validateLayout(layout: GptLayout): void {
  const first = firstUsableLba();
  const last = lastUsableLba(layout.totalSectors);
  const sorted = [...layout.partitions].sort((a, b) => a.firstLba - b.firstLba);
  sorted.forEach((p, i) => {
    if (p.firstLba < first || p.lastLba > last || p.lastLba < p.firstLba) {
      throw new InputError(`partition ${p.label} (${p.firstLba}-${p.lastLba}) does not fit the disk's usable sectors ${first}-${last}`, { hint: 'raise --disk-size' });
    }
    const next = sorted[i + 1];
    if (next && next.firstLba <= p.lastLba) throw new InputError(`partitions ${p.label} and ${next.label} overlap`);
    if (Buffer.byteLength(p.label, 'utf16le') > 72) throw new InputError(`GPT label ${p.label} is longer than 36 characters`);
  });
  if (layout.partitions.length > ENTRIES) throw new InputError('too many partitions');
}

/** The protective MBR, primary header and entries (sectors 0..33) and the backup (last 33 sectors). */
export function renderGpt(layout: GptLayout, pmbr: Buffer): { head: Buffer; tail: Buffer; tailLba: number } {
  validateLayout(layout);
  const last = layout.totalSectors - 1;
  const arr = entryArray(layout.partitions);
  const arrayCrc = crc32(arr);
  const head = Buffer.concat([protectiveMbr(pmbr, layout.totalSectors), header(layout, 1, last, 2, arrayCrc), arr]);
  const tailLba = last - ARRAY_SECTORS;
  const tail = Buffer.concat([arr, header(layout, last, 1, tailLba, arrayCrc)]);
  return { head, tail, tailLba };
}
