/**
 * The kernel's embedded config: the text config(8) puts in the ELF section `kern_conf` when
 * INCLUDE_CONFIG_FILE is set (GENERIC has it since 10.0; shared/design/freebsd-generic-config.md §2).
 */
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
