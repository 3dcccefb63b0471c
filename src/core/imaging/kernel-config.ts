/**
 * Host-side check of the kernel's embedded config: the ELF section `kern_conf` that config(8) fills
 * when INCLUDE_CONFIG_FILE is set (GENERIC has it since 10.0). Same bytes `config -x` prints, read
 * without FreeBSD's elfdump (see shared/design/freebsd-generic-config.md §2) through core/kernel's
 * bounded ELF reader, the one boot --kernel uses too.
 */
import { InputError } from '../errors.js';
import { bufferReadAt, EM_386, EM_X86_64, ElfError, readElf } from '../kernel/elf.js';
import { parseConfigText, readKernConfText, type KernConf } from '../kernel/kern-conf.js';

/** The parsed config (KernConf; empty lists from strings) and where it came from. */
export interface KernelConfig extends KernConf {
  /** 'kern_conf' when the section was found; 'strings' when inferred from driver strings. */
  source: 'kern_conf' | 'strings';
  elfClass: 32 | 64;
  elfMachine: 'amd64' | 'i386' | 'other';
  text: string;
}

/** Strings only a kernel built with options XENHVM contains (freebsd-generic-config.md §2.3 step 5). */
const XENHVM_STRINGS = ['XEN: Hypervisor version %d.%d detected.', 'Xen Platform Device', 'XENTIMER'];

export async function readKernelConfig(kernel: Buffer, where = '/boot/kernel/kernel'): Promise<KernelConfig> {
  if (kernel.length < 64 || kernel.readUInt32BE(0) !== 0x7f454c46) {
    throw new InputError(`${where} is not an ELF file`, { hint: 'the kernel set is damaged, or the kernel is compressed; use an official kernel.txz' });
  }
  const read = bufferReadAt(kernel);
  let elf;
  let text;
  try {
    elf = await readElf(read, kernel.length);
    text = await readKernConfText(read, elf);
  } catch (e) {
    // A damaged header or section table says nothing about the config: refused, not judged from strings.
    if (e instanceof ElfError) throw new InputError(`${where} is not a kernel fbxen can read: ${e.message}`, { hint: 'the kernel set is damaged; fetch it again or use an official kernel.txz' });
    throw e;
  }
  const m = elf.header.machine;
  const head = { elfClass: elf.header.elfClass, elfMachine: m === EM_X86_64 ? 'amd64' : m === EM_386 ? 'i386' : 'other' } as const;
  if (text === undefined) {
    const found = XENHVM_STRINGS.filter((s) => kernel.includes(s, 0, 'latin1'));
    return { source: 'strings', ...head, ident: undefined, machine: undefined, options: [], devices: [], xenhvm: found.length >= 2, xenpci: found.includes('Xen Platform Device'), text: '' };
  }
  return { source: 'kern_conf', ...head, ...parseConfigText(text), text };
}

/** The parser lives with the kernel inspection (core/kernel), which boot --kernel uses too. */
export { parseConfigText } from '../kernel/kern-conf.js';
