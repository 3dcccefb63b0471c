/**
 * Parsers for the small sections: uname, kern.conftxt, camcontrol devlist, and the sections the
 * collector writes itself (cdrom, flush, cpuid-xen). Unknown lines are ignored.
 */
import { z } from 'zod';

export const UnameSchema = z.object({ sysname: z.string(), release: z.string(), arch: z.string() });
export type Uname = z.infer<typeof UnameSchema>;

/** `uname -a`: "FreeBSD host 14.1-RELEASE FreeBSD 14.1-RELEASE releng/... GENERIC amd64". */
export function parseUname(text: string): Uname | undefined {
  const line = text.split('\n').find((l) => /^FreeBSD\s/.test(l));
  if (!line) return undefined;
  const f = line.trim().split(/\s+/);
  if (f.length < 4) return undefined;
  const release = f.slice(2).find((x) => /^\d+\.\d+-[A-Z]/.test(x));
  if (!release) return undefined;
  return UnameSchema.parse({ sysname: f[0], release, arch: f[f.length - 1] });
}

export const ReleaseSchema = z.object({ major: z.number().int(), minor: z.number().int(), text: z.string() });
export type Release = z.infer<typeof ReleaseSchema>;

/** "14.1-RELEASE-p3", "15.0-CURRENT", "11.1-RELEASE-p7" → {major, minor}. */
export function parseRelease(text: string | undefined): Release | undefined {
  const m = /^(\d+)\.(\d+)-[A-Z]/.exec(text?.trim() ?? '');
  return m ? ReleaseSchema.parse({ major: Number(m[1]), minor: Number(m[2]), text: text!.trim() }) : undefined;
}

export const ConftxtSchema = z.object({
  ident: z.string().nullable(),
  options: z.array(z.string()),
  devices: z.array(z.string()),
});
export type Conftxt = z.infer<typeof ConftxtSchema>;

/** `sysctl -n kern.conftxt`: "options\tXENHVM", "device\txenpci", "ident\tGENERIC". Empty without INCLUDE_CONFIG_FILE. */
export function parseConftxt(text: string): Conftxt | undefined {
  const options: string[] = [];
  const devices: string[] = [];
  let ident: string | null = null;
  for (const raw of text.split('\n')) {
    const m = /^\s*(options|device|ident|nodevice|nooptions)\s+(\S+)/.exec(raw);
    if (!m) continue;
    const value = m[2]!.replace(/=.*$/, '');
    if (m[1] === 'options') options.push(value);
    else if (m[1] === 'device') devices.push(value);
    else if (m[1] === 'ident') ident = value;
  }
  if (!ident && options.length === 0 && devices.length === 0) return undefined;
  return ConftxtSchema.parse({ ident, options, devices });
}

export const CamDeviceSchema = z.object({ description: z.string(), periphs: z.array(z.string()) });
export type CamDevice = z.infer<typeof CamDeviceSchema>;

/** `camcontrol devlist`: "<QEMU QEMU DVD-ROM 2.5+>  at scbus1 target 0 lun 0 (cd0,pass1)". */
export function parseCamDevlist(text: string): CamDevice[] {
  const out: CamDevice[] = [];
  for (const raw of text.split('\n')) {
    const m = /^<(.*)>\s+at\s+scbus\d+.*\(([^)]*)\)\s*$/.exec(raw.replace(/\r$/, ''));
    if (m) out.push(CamDeviceSchema.parse({ description: m[1], periphs: m[2]!.split(',').map((p) => p.trim()).filter(Boolean) }));
  }
  return out;
}

export const CdromSectionSchema = z.record(
  z.string(),
  z.object({
    read: z.number().int().nullable(),
    mount: z.number().int().nullable(),
    nonce: z.string().nullable(),
    /** the device node refused access: the collector did not run as root */
    denied: z.boolean(),
  }),
);
export type CdromSection = z.infer<typeof CdromSectionSchema>;

/** The collector's cdrom section: "cd0 read-status 0", "cd0 mount-status 0", "cd0 nonce <run>". */
export function parseCdromSection(text: string): CdromSection {
  const out: Record<string, { read: number | null; mount: number | null; nonce: string | null; denied: boolean }> = {};
  const dev = (d: string) => (out[d] ??= { read: null, mount: null, nonce: null, denied: false });
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    let m = /^(cd\d+) (read|mount)-status (\d+)$/.exec(line);
    if (m) {
      dev(m[1]!)[m[2] as 'read' | 'mount'] = Number(m[3]);
      continue;
    }
    m = /^(cd\d+) nonce (\S+)$/.exec(line);
    if (m) dev(m[1]!).nonce = m[2]!;
    m = /^device (cd\d+)$/.exec(line);
    if (m) dev(m[1]!);
    m = /\/dev\/(cd\d+): (Permission denied|Operation not permitted)/.exec(line);
    if (m) dev(m[1]!).denied = true;
  }
  return CdromSectionSchema.parse(out);
}

export const FlushSectionSchema = z.object({
  write: z.number().int().nullable(),
  fsync: z.number().int().nullable(),
  sync: z.number().int().nullable(),
  kernelMessages: z.array(z.string()).nullable(),
});
export type FlushSection = z.infer<typeof FlushSectionSchema>;

/** The collector's flush section: "write-status 0", "fsync-status 0", "sync-status 0", then the kernel lines. */
export function parseFlushSection(text: string): FlushSection {
  const status = (key: string) => {
    const m = new RegExp(`^${key}-status (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const begin = text.indexOf('kernel-messages-begin\n');
  const end = text.indexOf('kernel-messages-end');
  const kernelMessages =
    begin >= 0 && end > begin
      ? text
          .slice(begin + 'kernel-messages-begin\n'.length, end)
          .split('\n')
          .map((l) => l.replace(/\r$/, ''))
          .filter(Boolean)
      : null;
  return FlushSectionSchema.parse({ write: status('write'), fsync: status('fsync'), sync: status('sync'), kernelMessages });
}

export const CpuidSchema = z.object({
  /** EAX of Xen leaf base+4 */
  leaf4eax: z.number().int().nonnegative(),
  base: z.number().int(),
});
export type XenCpuid = z.infer<typeof CpuidSchema>;

/**
 * The collector's cpuid-xen section: `cpucontrol -i` lines "cpuid level 0x40000000: 0x.. 0x.. 0x.. 0x..".
 * The Xen leaves start where the signature "XenVMMXenVMM" is (0x40000000, or 0x40000100 with Viridian).
 */
export function parseCpuidSection(text: string): XenCpuid | undefined {
  const leaves = new Map<number, number[]>();
  for (const m of text.matchAll(/cpuid level (0x[0-9a-fA-F]+)(?:, level_type 0x[0-9a-fA-F]+)?: (0x[0-9a-fA-F]+) (0x[0-9a-fA-F]+) (0x[0-9a-fA-F]+) (0x[0-9a-fA-F]+)/g)) {
    leaves.set(Number(m[1]), [Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])]);
  }
  // "XenVMMXenVMM" as EBX, ECX, EDX little-endian words
  const xen = [0x566e6558, 0x65584d4d, 0x4d4d566e];
  for (const base of [0x40000000, 0x40000100]) {
    const sig = leaves.get(base);
    const leaf4 = leaves.get(base + 4);
    if (sig && leaf4 && sig[1] === xen[0] && sig[2] === xen[1] && sig[3] === xen[2]) {
      return CpuidSchema.parse({ leaf4eax: leaf4[0], base });
    }
  }
  return undefined;
}
