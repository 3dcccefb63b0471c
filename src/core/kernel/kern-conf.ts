/**
 * The kernel's embedded config: the text config(8) puts in the ELF section `kern_conf` when
 * INCLUDE_CONFIG_FILE is set (GENERIC has it since 10.0; shared/design/freebsd-generic-config.md §2).
 */
import { readSection, type ElfFile, type ReadAt } from './elf.js';

/** kern_conf is the config text (~10 KiB for GENERIC); a larger section is refused, not read. */
export const MAX_KERN_CONF = 256 * 1024;

/** The kern_conf section's text up to its first NUL (what `config -x` prints); undefined when there is none. */
export async function readKernConfText(read: ReadAt, elf: ElfFile): Promise<string | undefined> {
  const section = elf.sections.find((s) => s.name === 'kern_conf');
  if (!section) return undefined;
  const raw = await readSection(read, elf, section, MAX_KERN_CONF);
  const nul = raw.indexOf(0);
  return raw.toString('latin1', 0, nul < 0 ? raw.length : nul);
}

export interface KernConf {
  ident: string | undefined;
  machine: string | undefined;
  options: string[];
  devices: string[];
  xenhvm: boolean;
  xenpci: boolean;
}

/** Parses config(8)'s dynamic form ("options\tNAME", "device\tNAME") and, leniently, file-based text. */
export function parseConfigText(text: string): KernConf {
  const options: string[] = [];
  const devices: string[] = [];
  let ident: string | undefined;
  let machine: string | undefined;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/#.*/, '').trim();
    const m = /^(options|device|devices|ident|machine)\s+(.+)$/.exec(line);
    if (!m) continue;
    const values = m[2]!.split(/[\s,]+/).filter(Boolean);
    if (m[1] === 'ident') ident = values[0];
    else if (m[1] === 'machine') machine = values[0];
    else if (m[1] === 'options') options.push(...values.map((v) => v.split('=')[0]!));
    else devices.push(...values);
  }
  return { ident, machine, options, devices, xenhvm: options.includes('XENHVM'), xenpci: devices.includes('xenpci') };
}
