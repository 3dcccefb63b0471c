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
  /** the collector's own status lines (null: the line is not there) */
  write: z.number().int().nullable(),
  fsync: z.number().int().nullable(),
  sync: z.number().int().nullable(),
  kernelMessages: z.array(z.string()).nullable(),
  /** dd's own summary ("4194304 bytes transferred in ...", GNU "... copied"): bytes written, when present */
  ddBytes: z.number().int().nonnegative().nullable(),
  /** lines of the commands' own output that report an I/O error (EIO) */
  ioErrors: z.array(z.string()),
  /** other error lines of the commands (no space, read-only, not found ...): not the disk's fault */
  otherErrors: z.array(z.string()),
});
export type FlushSection = z.infer<typeof FlushSectionSchema>;

const DD_BYTES = /^(\d+) bytes (?:\([^)]*\) )?(?:transferred|copied)\b/;
const IO_ERROR = /Input\/output error|\bEIO\b/;
const OTHER_ERROR = /^(?:dd|fsync|sync|sh): .*(?:No space left on device|Read-only file system|Permission denied|not found|No such file or directory|Device not configured|Operation not permitted)/;

/**
 * The flush section: the collector's "write-status 0", "fsync-status 0", "sync-status 0", then the kernel
 * lines between kernel-messages-begin/end; or plain command output (another collector, a hand-run dd),
 * of which dd's byte count and the commands' error lines are read.
 */
export function parseFlushSection(text: string): FlushSection {
  const status = (key: string) => {
    const m = new RegExp(`^${key}-status (\\d+)\r?$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const begin = text.indexOf('kernel-messages-begin\n');
  const end = text.indexOf('kernel-messages-end');
  const inBlock = begin >= 0 && end > begin;
  const kernelMessages = inBlock
    ? text
        .slice(begin + 'kernel-messages-begin\n'.length, end)
        .split('\n')
        .map((l) => l.replace(/\r$/, ''))
        .filter(Boolean)
    : null;
  // The commands' own lines: everything outside the kernel-message block.
  const own = (inBlock ? text.slice(0, begin) + text.slice(end) : text).split('\n').map((l) => l.replace(/\r$/, ''));
  let ddBytes: number | null = null;
  const ioErrors: string[] = [];
  const otherErrors: string[] = [];
  for (const line of own) {
    const m = DD_BYTES.exec(line);
    if (m && Number.isSafeInteger(Number(m[1]))) ddBytes = Number(m[1]);
    if (IO_ERROR.test(line)) ioErrors.push(line);
    else if (OTHER_ERROR.test(line)) otherErrors.push(line);
  }
  return FlushSectionSchema.parse({ write: status('write'), fsync: status('fsync'), sync: status('sync'), kernelMessages, ddBytes, ioErrors, otherErrors });
}

export const CpuidSchema = z.object({
  /** EAX of Xen leaf base+4 */
  leaf4eax: z.number().int().nonnegative(),
  base: z.number().int(),
});
export type XenCpuid = z.infer<typeof CpuidSchema>;

const CPUID_LINE = /cpuid level (0x[0-9a-fA-F]+)(?:, level_type 0x[0-9a-fA-F]+)?: (0x[0-9a-fA-F]+) (0x[0-9a-fA-F]+) (0x[0-9a-fA-F]+) (0x[0-9a-fA-F]+)/g;
/** "XenVMMXenVMM" as EBX, ECX, EDX little-endian words */
const XEN_SIGNATURE = [0x566e6558, 0x65584d4d, 0x4d4d566e];
const XEN_BASES = [0x40000000, 0x40000100];

/** Every `cpucontrol -i` line of the section: leaf → [EAX, EBX, ECX, EDX]. */
export function parseCpuidLeaves(text: string): Map<number, number[]> {
  const leaves = new Map<number, number[]>();
  for (const m of text.matchAll(CPUID_LINE)) leaves.set(Number(m[1]), [Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])]);
  return leaves;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const isXen = (sig: number[] | undefined) => !!sig && sig[1] === XEN_SIGNATURE[0] && sig[2] === XEN_SIGNATURE[1] && sig[3] === XEN_SIGNATURE[2];
/** EBX, ECX, EDX of a signature leaf as text ("Microsoft Hv"), printable bytes only. */
function signatureText(sig: number[]): string {
  const bytes = Buffer.alloc(12);
  sig.slice(1, 4).forEach((w, i) => bytes.writeUInt32LE(w >>> 0, i * 4));
  return bytes.toString('latin1').replace(/[^\x20-\x7e]/g, '.');
}

/**
 * The collector's cpuid-xen section: `cpucontrol -i` lines "cpuid level 0x40000000: 0x.. 0x.. 0x.. 0x..".
 * The Xen leaves start where the signature "XenVMMXenVMM" is (0x40000000, or 0x40000100 with Viridian).
 */
export function parseCpuidSection(text: string): XenCpuid | undefined {
  const leaves = parseCpuidLeaves(text);
  for (const base of XEN_BASES) {
    const leaf4 = leaves.get(base + 4);
    if (isXen(leaves.get(base)) && leaf4) return CpuidSchema.parse({ leaf4eax: leaf4[0], base });
  }
  return undefined;
}

/** Why a cpuid-xen section gave no Xen leaf 4: what it has, and which leaf is missing. */
export function explainCpuidSection(text: string): string {
  const leaves = parseCpuidLeaves(text);
  if (leaves.size === 0) {
    const first = text.split('\n').map((l) => l.trim()).find(Boolean);
    return `the cpuid-xen section has no "cpuid level 0x...: ..." line (cpucontrol -i output)${first ? `; it says: ${first.slice(0, 160)}` : ''}`;
  }
  const have = `it has leaf ${[...leaves.keys()].sort((a, b) => a - b).map(hex).join(', ')}`;
  for (const base of XEN_BASES) {
    if (isXen(leaves.get(base)) && !leaves.get(base + 4)) return `the cpuid-xen section has the Xen signature at ${hex(base)} but not leaf ${hex(base + 4)}, whose EAX holds the APIC virtualisation bits (${have})`;
  }
  const low = leaves.get(XEN_BASES[0]!);
  if (low && !isXen(low)) {
    return `the cpuid-xen section's leaf 0x40000000 is "${signatureText(low)}", not Xen's: with viridian on, Xen's leaves move to 0x40000100, and the section has no Xen signature there (${have})`;
  }
  const orphan = XEN_BASES.find((b) => leaves.has(b + 4) && !leaves.has(b));
  if (orphan !== undefined) {
    return `the cpuid-xen section has leaf ${hex(orphan + 4)} but not the signature leaf ${hex(orphan)} ("XenVMMXenVMM"): without it ${hex(orphan + 4)} cannot be told to be Xen's (with viridian on, Xen's leaves move to 0x40000100 and 0x40000000-0x40000005 are Hyper-V's) (${have})`;
  }
  return `the cpuid-xen section has no Xen signature ("XenVMMXenVMM") at 0x40000000 or 0x40000100 (${have})`;
}
