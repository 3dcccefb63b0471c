/**
 * What fbxen needs to know about a FreeBSD kernel before Xen boots it: its arch, its ident and Xen
 * options (kern_conf), and whether it has the PVH entry point. FreeBSD's amd64 xen-locore.S emits, in
 * section .note.Xen: XEN_ELFNOTE_GUEST_OS "FreeBSD", XEN_ELFNOTE_GUEST_VERSION (__FreeBSD_version),
 * XEN_ELFNOTE_XEN_VERSION "xen-3.0" and, since f2577f25 (12.0-RELEASE), XEN_ELFNOTE_PHYS32_ENTRY, the
 * 32-bit physical address Xen starts a PVH guest at (docs/pvh.md §1). Reads are bounded (elf.ts).
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { bufferReadAt, EM_386, EM_X86_64, ElfError, readElf, readNotes, type ElfNote, type ReadAt } from './elf.js';
import { parseConfigText, readKernConfText, type KernConf } from './kern-conf.js';

/** Xen's public/elfnote.h. */
export const XEN_ELFNOTE_XEN_VERSION = 5;
export const XEN_ELFNOTE_GUEST_OS = 6;
export const XEN_ELFNOTE_GUEST_VERSION = 7;
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/** The first FreeBSD release whose amd64 kernel carries XEN_ELFNOTE_PHYS32_ENTRY. */
export const FIRST_PVH_RELEASE = '12.0-RELEASE';

/** No FreeBSD kernel is near this (GENERIC amd64 is ~30 MiB); a larger file is refused before any read. */
export const MAX_KERNEL_BYTES = 512 * 1024 * 1024;

export interface KernelFacts {
  path: string;
  size: number;
  elfClass: 32 | 64;
  arch: 'amd64' | 'i386' | 'other';
  /** From kern_conf; undefined when the kernel was built without INCLUDE_CONFIG_FILE. */
  ident: string | undefined;
  kernConf: KernConf | undefined;
  /** The Xen notes FreeBSD writes; guestOs 'FreeBSD' when present. */
  xen: { guestOs: string | undefined; guestVersion: string | undefined; xenVersion: string | undefined };
  /** __FreeBSD_version from XEN_ELFNOTE_GUEST_VERSION, when it is a number. */
  freebsdVersion: number | undefined;
  /** XEN_ELFNOTE_PHYS32_ENTRY's address, undefined when the kernel has no PVH entry point. */
  pvhEntry: number | undefined;
}

function noteString(n: ElfNote | undefined): string | undefined {
  if (!n) return undefined;
  const nul = n.desc.indexOf(0);
  const s = n.desc.toString('latin1', 0, nul < 0 ? n.desc.length : nul);
  return /^[\x20-\x7e]{1,64}$/.test(s) ? s : undefined;
}

/** Reads the facts through `read`; `where` names the kernel in errors. */
export async function inspectKernelWith(read: ReadAt, size: number, where: string): Promise<KernelFacts> {
  if (size > MAX_KERNEL_BYTES) {
    throw new InputError(`${where} is ${size} bytes, larger than any FreeBSD kernel (fbxen reads up to ${MAX_KERNEL_BYTES})`, { hint: 'give the kernel file itself (/boot/kernel/kernel or obj/.../kernel), not an image or an archive' });
  }
  try {
    const elf = await readElf(read, size);
    const arch = elf.header.machine === EM_X86_64 ? 'amd64' : elf.header.machine === EM_386 ? 'i386' : 'other';
    const confText = await readKernConfText(read, elf);
    const kernConf: KernConf | undefined = confText === undefined ? undefined : parseConfigText(confText);
    const xenNotes = (await readNotes(read, elf)).filter((n) => n.owner === 'Xen');
    const note = (type: number) => xenNotes.find((n) => n.type === type);
    const entry = note(XEN_ELFNOTE_PHYS32_ENTRY);
    let pvhEntry: number | undefined;
    if (entry) {
      // FreeBSD writes a .long; Xen's libelf reads the note's value of whatever size it has (4 or 8).
      if (entry.desc.length === 4) pvhEntry = entry.desc.readUInt32LE(0);
      else if (entry.desc.length === 8 && entry.desc.readUInt32LE(4) === 0) pvhEntry = entry.desc.readUInt32LE(0);
      else throw new ElfError(`the XEN_ELFNOTE_PHYS32_ENTRY note has a ${entry.desc.length}-byte value, not a 32-bit address`);
    }
    const guestVersion = noteString(note(XEN_ELFNOTE_GUEST_VERSION));
    return {
      path: where,
      size,
      elfClass: elf.header.elfClass,
      arch,
      ident: kernConf?.ident,
      kernConf,
      xen: { guestOs: noteString(note(XEN_ELFNOTE_GUEST_OS)), guestVersion, xenVersion: noteString(note(XEN_ELFNOTE_XEN_VERSION)) },
      freebsdVersion: guestVersion && /^\d{6,7}$/.test(guestVersion) ? Number(guestVersion) : undefined,
      pvhEntry,
    };
  } catch (e) {
    if (e instanceof ElfError) {
      throw new InputError(`${where} is not a kernel fbxen can read: ${e.message}`, { hint: 'give an uncompressed FreeBSD kernel ELF file (/boot/kernel/kernel, or the kernel in your obj tree after make buildkernel)' });
    }
    throw e;
  }
}

/** inspectKernel for a file on the host (boot --kernel FILE, or the kernel build wrote beside the image). */
export async function inspectKernel(path: string): Promise<KernelFacts> {
  // O_NONBLOCK: opening a FIFO given as the kernel would otherwise wait for a writer for ever.
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    throw new InputError(`cannot open the kernel ${path} (${err.code ?? err.message})`, { hint: 'give the path of a readable kernel file' });
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InputError(`the kernel ${path} is not a regular file`, { hint: 'give the kernel file itself' });
    const read: ReadAt = async (offset, length) => {
      const buf = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return buf.subarray(0, got);
    };
    return await inspectKernelWith(read, st.size, path);
  } finally {
    await fh.close();
  }
}

/** inspectKernel for bytes already in memory (build holds /boot/kernel/kernel while writing the image). */
export function inspectKernelBytes(bytes: Buffer, where: string): Promise<KernelFacts> {
  return inspectKernelWith(bufferReadAt(bytes), bytes.length, where);
}

/**
 * Why this kernel cannot be a PVH guest, or undefined when it can: amd64, the PVH entry note, and
 * options XENHVM when kern_conf says (the hypercall page, event channels and blkfront all need it).
 */
export function pvhRefusal(k: KernelFacts): string | undefined {
  if (k.arch !== 'amd64') {
    return `${k.path} is ${k.arch === 'i386' ? 'an i386' : 'not an x86-64'} kernel; FreeBSD boots PVH on amd64 only (no i386 kernel has the PVH entry point)`;
  }
  if (k.pvhEntry === undefined) {
    const which = k.freebsdVersion !== undefined ? ` (__FreeBSD_version ${k.freebsdVersion})` : k.xen.guestOs ? '' : ' (no Xen notes at all)';
    return `${k.path}${which} has no Xen PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY); FreeBSD ${FIRST_PVH_RELEASE} amd64 is the first release that has one`;
  }
  if (k.kernConf && !k.kernConf.xenhvm) return `${k.path} (ident ${k.ident ?? 'unknown'}) is built without options XENHVM, which a PVH guest needs for every Xen driver`;
  return undefined;
}

/** Throws the refusal as an InputError with the way out. */
export function assertPvhKernel(k: KernelFacts): void {
  const why = pvhRefusal(k);
  if (why) throw new InputError(`cannot boot PVH: ${why}`, { hint: `use --type hvm, or a FreeBSD ${FIRST_PVH_RELEASE} or later amd64 kernel built with options XENHVM` });
}

/** The facts run.json and build.json keep (no config text). */
export function kernelRecord(k: KernelFacts): Record<string, unknown> {
  return {
    path: k.path,
    size: k.size,
    arch: k.arch,
    ident: k.ident,
    freebsdVersion: k.freebsdVersion,
    pvhEntry: k.pvhEntry === undefined ? null : `0x${k.pvhEntry.toString(16)}`,
    xenhvm: k.kernConf?.xenhvm ?? null,
    xenpci: k.kernConf?.xenpci ?? null,
  };
}
