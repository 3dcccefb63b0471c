/**
 * A bounded ELF reader for kernels: the header, the section and program header tables, named sections
 * and notes. Every table and section is checked against the file's size and a fixed budget before it is
 * read, so a hostile file (huge counts, offsets past the end, a wrong class) costs at most a few MiB and
 * ends in an ElfError naming what is wrong. Little-endian x86 only: FreeBSD's amd64 and i386 kernels.
 */

/** Reads `length` bytes at `offset`; returns fewer only at the end of the file. */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** ReadAt over bytes already in memory. */
export function bufferReadAt(bytes: Buffer): ReadAt {
  return async (offset, length) => bytes.subarray(offset, offset + length);
}

export class ElfError extends Error {}

export const EM_386 = 3;
export const EM_X86_64 = 62;
const SHT_NOTE = 7;
const PT_NOTE = 4;
const SHN_XINDEX = 0xffff;

/** Budgets: a FreeBSD GENERIC kernel has ~40 sections, a few notes and a kern_conf of ~10 KiB. */
export const MAX_SECTIONS = 4096;
export const MAX_SEGMENTS = 256;
export const MAX_SECTION_READ = 1024 * 1024;
export const MAX_NOTES = 1024;

export interface ElfHeader {
  elfClass: 32 | 64;
  machine: number;
  type: number;
  size: number;
}

export interface ElfSection {
  name: string;
  type: number;
  offset: number;
  size: number;
}

export interface ElfNote {
  owner: string;
  type: number;
  desc: Buffer;
}

export interface ElfFile {
  header: ElfHeader;
  sections: ElfSection[];
  /** PT_NOTE segments' file ranges. */
  noteSegments: { offset: number; size: number }[];
}

async function readExact(read: ReadAt, offset: number, length: number, size: number, what: string): Promise<Buffer> {
  if (offset < 0 || length < 0 || offset + length > size) {
    throw new ElfError(`${what} (${length} bytes at offset ${offset}) lies outside the file (${size} bytes): the file is truncated or damaged`);
  }
  const b = await read(offset, length);
  if (b.length !== length) throw new ElfError(`${what}: read ${b.length} of ${length} bytes at offset ${offset}: the file changed or is truncated`);
  return b;
}

/** Reads a 64-bit field as a number, refusing values past 2^53 (no real offset or size is that large). */
function u64(b: Buffer, o: number, what: string): number {
  const v = b.readBigUInt64LE(o);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(`${what} is ${v}, larger than any file`);
  return Number(v);
}

export async function readElf(read: ReadAt, size: number): Promise<ElfFile> {
  if (size < 52) throw new ElfError(`the file is ${size} bytes, too short for an ELF header`);
  const ident = await readExact(read, 0, Math.min(64, size), size, 'the ELF header');
  if (ident.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('no ELF magic (\\x7fELF): not an ELF file (a compressed kernel? gunzip it first)');
  const cls = ident[4];
  if (cls !== 1 && cls !== 2) throw new ElfError(`ELF class ${cls} is neither 32- nor 64-bit`);
  if (ident[5] !== 1) throw new ElfError(`ELF data encoding ${ident[5]} is not little-endian: not an x86 kernel`);
  const is64 = cls === 2;
  if (is64 && size < 64) throw new ElfError(`the file is ${size} bytes, too short for a 64-bit ELF header`);
  const h = ident;
  const machine = h.readUInt16LE(18);
  // A 32-bit header that says x86-64 (or the reverse) puts every later field in the wrong place.
  if ((machine === EM_X86_64 && !is64) || (machine === EM_386 && is64)) {
    throw new ElfError(`ELF class ${is64 ? 64 : 32} does not match machine ${machine === EM_X86_64 ? 'x86-64' : 'i386'}: the header is damaged`);
  }
  const header: ElfHeader = {
    elfClass: is64 ? 64 : 32,
    machine,
    type: h.readUInt16LE(16),
    size,
  };
  const phoff = is64 ? u64(h, 32, 'e_phoff') : h.readUInt32LE(28);
  const shoff = is64 ? u64(h, 40, 'e_shoff') : h.readUInt32LE(32);
  const phentsize = h.readUInt16LE(is64 ? 54 : 42);
  let phnum = h.readUInt16LE(is64 ? 56 : 44);
  const shentsize = h.readUInt16LE(is64 ? 58 : 46);
  let shnum = h.readUInt16LE(is64 ? 60 : 48);
  let shstrndx = h.readUInt16LE(is64 ? 62 : 50);
  const shMin = is64 ? 64 : 40;
  const phMin = is64 ? 56 : 32;

  const sections: ElfSection[] = [];
  if (shoff !== 0) {
    if (shentsize < shMin) throw new ElfError(`section header entries are ${shentsize} bytes, less than the ${shMin} of ELF${header.elfClass}`);
    // shnum 0 / shstrndx SHN_XINDEX: the real values are in section 0 (the extended numbering of gABI).
    if (shnum === 0 || shstrndx === SHN_XINDEX || phnum === 0xffff) {
      const s0 = await readExact(read, shoff, shMin, size, 'section header 0');
      if (shnum === 0) shnum = is64 ? u64(s0, 32, 'the extended section count') : s0.readUInt32LE(20);
      if (shstrndx === SHN_XINDEX) shstrndx = s0.readUInt32LE(is64 ? 40 : 24);
      if (phnum === 0xffff) phnum = s0.readUInt32LE(is64 ? 44 : 28);
    }
    if (shnum > MAX_SECTIONS) throw new ElfError(`${shnum} sections, more than the ${MAX_SECTIONS} fbxen reads (a kernel has about 40): the header is damaged`);
    const table = await readExact(read, shoff, shnum * shentsize, size, `the section header table (${shnum} entries)`);
    const raw = [...Array(shnum).keys()].map((i) => {
      const o = i * shentsize;
      return is64
        ? { nameOff: table.readUInt32LE(o), type: table.readUInt32LE(o + 4), offset: u64(table, o + 24, 'sh_offset'), size: u64(table, o + 32, 'sh_size') }
        : { nameOff: table.readUInt32LE(o), type: table.readUInt32LE(o + 4), offset: table.readUInt32LE(o + 16), size: table.readUInt32LE(o + 20) };
    });
    let names: Buffer = Buffer.alloc(0);
    if (shnum > 0) {
      if (shstrndx >= shnum) throw new ElfError(`the section name table index ${shstrndx} is past the ${shnum} sections`);
      const st = raw[shstrndx]!;
      if (st.size > MAX_SECTION_READ) throw new ElfError(`the section name table is ${st.size} bytes, more than ${MAX_SECTION_READ}`);
      names = await readExact(read, st.offset, st.size, size, 'the section name table');
    }
    for (const s of raw) {
      const end = names.indexOf(0, s.nameOff);
      const name = s.nameOff < names.length ? names.toString('latin1', s.nameOff, end < 0 ? names.length : end) : '';
      sections.push({ name, type: s.type, offset: s.offset, size: s.size });
    }
  }

  const noteSegments: { offset: number; size: number }[] = [];
  if (phoff !== 0 && phnum > 0) {
    if (phentsize < phMin) throw new ElfError(`program header entries are ${phentsize} bytes, less than the ${phMin} of ELF${header.elfClass}`);
    if (phnum > MAX_SEGMENTS) throw new ElfError(`${phnum} program headers, more than the ${MAX_SEGMENTS} fbxen reads (a kernel has fewer than 10): the header is damaged`);
    const table = await readExact(read, phoff, phnum * phentsize, size, `the program header table (${phnum} entries)`);
    for (let i = 0; i < phnum; i++) {
      const o = i * phentsize;
      if (table.readUInt32LE(o) !== PT_NOTE) continue;
      noteSegments.push(is64 ? { offset: u64(table, o + 8, 'p_offset'), size: u64(table, o + 32, 'p_filesz') } : { offset: table.readUInt32LE(o + 4), size: table.readUInt32LE(o + 16) });
    }
  }
  return { header, sections, noteSegments };
}

/** The bytes of a section, refused when larger than `limit` or outside the file. */
export async function readSection(read: ReadAt, elf: ElfFile, section: ElfSection, limit = MAX_SECTION_READ): Promise<Buffer> {
  if (section.size > limit) throw new ElfError(`section ${section.name || '(unnamed)'} is ${section.size} bytes, more than the ${limit} fbxen reads`);
  return readExact(read, section.offset, section.size, elf.header.size, `section ${section.name || '(unnamed)'}`);
}

/** Parses a note area (4-byte aligned name and descriptor, as Xen's libelf and FreeBSD's ELFNOTE write). */
export function parseNotes(area: Buffer, where: string): ElfNote[] {
  const notes: ElfNote[] = [];
  let o = 0;
  while (o + 12 <= area.length) {
    if (notes.length >= MAX_NOTES) throw new ElfError(`${where}: more than ${MAX_NOTES} notes`);
    const namesz = area.readUInt32LE(o);
    const descsz = area.readUInt32LE(o + 4);
    const type = area.readUInt32LE(o + 8);
    const nameStart = o + 12;
    const descStart = nameStart + align4(namesz);
    const next = descStart + align4(descsz);
    if (next > area.length) throw new ElfError(`${where}: a note (name ${namesz} bytes, descriptor ${descsz} bytes) runs past the end of its ${area.length}-byte area`);
    const nameEnd = area.indexOf(0, nameStart);
    const owner = area.toString('latin1', nameStart, nameEnd >= 0 && nameEnd < nameStart + namesz ? nameEnd : nameStart + namesz);
    notes.push({ owner, type, desc: Buffer.from(area.subarray(descStart, descStart + descsz)) });
    o = next;
  }
  return notes;
}

function align4(n: number): number {
  return n + ((4 - (n % 4)) % 4);
}

/**
 * The file's notes the way Xen's libelf finds them (libelf-dominfo.c elf_xen_parse): the PT_NOTE
 * segments first, and only when they hold no Xen note, the SHT_NOTE sections.
 */
export async function readNotes(read: ReadAt, elf: ElfFile): Promise<ElfNote[]> {
  const fromSegments: ElfNote[] = [];
  let budget = 4 * MAX_SECTION_READ;
  const take = async (offset: number, size: number, where: string): Promise<ElfNote[]> => {
    if (size > MAX_SECTION_READ || size > budget) throw new ElfError(`${where} is ${size} bytes, more than fbxen reads for notes`);
    budget -= size;
    return parseNotes(await readExact(read, offset, size, elf.header.size, where), where);
  };
  for (const [i, s] of elf.noteSegments.entries()) fromSegments.push(...(await take(s.offset, s.size, `PT_NOTE segment ${i}`)));
  if (fromSegments.some((n) => n.owner === 'Xen')) return fromSegments;
  const fromSections: ElfNote[] = [];
  for (const s of elf.sections) if (s.type === SHT_NOTE && s.size > 0) fromSections.push(...(await take(s.offset, s.size, `note section ${s.name || '(unnamed)'}`)));
  return [...fromSegments, ...fromSections];
}
