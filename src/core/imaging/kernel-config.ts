/**
 * Host-side check of the kernel's embedded config: the ELF section `kern_conf` that config(8) fills
 * when INCLUDE_CONFIG_FILE is set (GENERIC has it since 10.0). Same bytes `config -x` prints, read
 * without FreeBSD's elfdump (see shared/design/freebsd-generic-config.md §2).
 */
import { InputError } from '../errors.js';
import { parseConfigText } from '../kernel/kern-conf.js';

export interface KernelConfig {
  /** 'kern_conf' when the section was found; 'strings' when inferred from driver strings. */
  source: 'kern_conf' | 'strings';
  elfClass: 32 | 64;
  elfMachine: 'amd64' | 'i386' | 'other';
  ident: string | undefined;
  machine: string | undefined;
  options: string[];
  devices: string[];
  xenhvm: boolean;
  xenpci: boolean;
  text: string;
}

const EM_386 = 3;
const EM_X86_64 = 62;

function sectionByName(buf: Buffer, name: string): { offset: number; size: number } | undefined {
  const is64 = buf[4] === 2;
  const le = buf[5] === 1;
  const u16 = (o: number) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const u64 = (o: number) => Number(le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o));
  const shoff = is64 ? u64(0x28) : u32(0x20);
  const shentsize = u16(is64 ? 0x3a : 0x2e);
  const shnum = u16(is64 ? 0x3c : 0x30);
  const shstrndx = u16(is64 ? 0x3e : 0x32);
  const minEnt = is64 ? 64 : 40;
  if (shoff === 0 || shentsize < minEnt || shoff + shnum * shentsize > buf.length || shstrndx >= shnum) return undefined;
  const sec = (i: number) => {
    const base = shoff + i * shentsize;
    return is64
      ? { name: u32(base), offset: u64(base + 0x18), size: u64(base + 0x20) }
      : { name: u32(base), offset: u32(base + 0x10), size: u32(base + 0x14) };
  };
  const strtab = sec(shstrndx);
  if (strtab.offset + strtab.size > buf.length) return undefined;
  for (let i = 0; i < shnum; i++) {
    const s = sec(i);
    const start = strtab.offset + s.name;
    if (start >= strtab.offset + strtab.size) continue;
    const end = buf.indexOf(0, start);
    if (buf.toString('latin1', start, end < 0 ? strtab.offset + strtab.size : end) === name) {
      if (s.offset + s.size > buf.length) return undefined;
      return { offset: s.offset, size: s.size };
    }
  }
  return undefined;
}

/** Strings only a kernel built with options XENHVM contains (freebsd-generic-config.md §2.3 step 5). */
const XENHVM_STRINGS = ['XEN: Hypervisor version %d.%d detected.', 'Xen Platform Device', 'XENTIMER'];

export function readKernelConfig(kernel: Buffer, where = '/boot/kernel/kernel'): KernelConfig {
  if (kernel.length < 64 || kernel.readUInt32BE(0) !== 0x7f454c46) {
    throw new InputError(`${where} is not an ELF file`, { hint: 'the kernel set is damaged, or the kernel is compressed; use an official kernel.txz' });
  }
  const elfClass = kernel[4] === 2 ? 64 : 32;
  const machineNum = kernel[5] === 1 ? kernel.readUInt16LE(18) : kernel.readUInt16BE(18);
  const elfMachine = machineNum === EM_X86_64 ? 'amd64' : machineNum === EM_386 ? 'i386' : 'other';
  const section = sectionByName(kernel, 'kern_conf');
  if (!section) {
    const found = XENHVM_STRINGS.filter((s) => kernel.includes(s, 0, 'latin1'));
    return { source: 'strings', elfClass, elfMachine, ident: undefined, machine: undefined, options: [], devices: [], xenhvm: found.length >= 2, xenpci: found.includes('Xen Platform Device'), text: '' };
  }
  const raw = kernel.subarray(section.offset, section.offset + section.size);
  const nul = raw.indexOf(0);
  const text = raw.toString('latin1', 0, nul < 0 ? raw.length : nul);
  return { source: 'kern_conf', elfClass, elfMachine, ...parseConfigText(text), text };
}

/** The parser lives with the kernel inspection (core/kernel), which boot --kernel uses too. */
export { parseConfigText } from '../kernel/kern-conf.js';
