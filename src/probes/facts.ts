/**
 * Reads every standard section of a bundle once into validated facts the probes share. A section that
 * is missing or unreadable becomes `undefined`: "no evidence", never a failure of the feature.
 */
import type { Bundle } from './types.js';
import { parseSysctl, type Sysctl } from './parsers/sysctl.js';
import { parseVmstat, type Vmstat } from './parsers/vmstat.js';
import {
  parseCamDevlist,
  parseCdromSection,
  parseConftxt,
  explainCpuidSection,
  parseCpuidSection,
  parseFlushSection,
  parseRelease,
  parseUname,
  type CamDevice,
  type CdromSection,
  type Conftxt,
  type FlushSection,
  type Release,
  type XenCpuid,
} from './parsers/text-sections.js';

export interface GuestFacts {
  run: string;
  phase: string;
  /** the collector's user id (meta `uid`), when recorded */
  uid: string | undefined;
  release: Release | undefined;
  arch: string | undefined;
  sysctl: Sysctl | undefined;
  ncpu: number | undefined;
  vmGuest: string | undefined;
  /** /var/run/dmesg.boot lines (boot snapshot) */
  dmesgBoot: string[] | undefined;
  /** `dmesg -a` lines (the live message buffer, includes what happened after boot) */
  dmesg: string[] | undefined;
  /** vmstat -ia before and after the load */
  vmstat: [Vmstat | undefined, Vmstat | undefined];
  conftxt: Conftxt | undefined;
  cam: CamDevice[] | undefined;
  cdrom: CdromSection | undefined;
  flush: FlushSection | undefined;
  cpuid: XenCpuid | undefined;
  /** when the cpuid-xen section is there but gave no Xen leaf 4: what it holds and which leaf is missing */
  cpuidNote: string | undefined;
  /** sections the bundle has (for "missing" evidence) */
  present: Set<string>;
  /** each section's exit status from the index (absent: the index does not list it) */
  status: Map<string, number>;
  /** meta keys that say how the collector was started (run-source, medium) */
  meta: Record<string, string>;
}

/** Runs a parser; a parser bug or a zod rejection means "no evidence", never a crash. */
export function safe<T>(text: string | undefined, parse: (t: string) => T | undefined): T | undefined {
  if (text === undefined) return undefined;
  try {
    return parse(text);
  } catch {
    return undefined;
  }
}

const lines = (t: string) => t.split('\n').map((l) => l.replace(/\r$/, ''));

const cache = new WeakMap<Bundle, GuestFacts>();

export function guestFacts(bundle: Bundle): GuestFacts {
  const hit = cache.get(bundle);
  if (hit) return hit;
  const s = (name: string) => bundle.sections.get(name);
  const sysctl = safe(s('sysctl'), parseSysctl);
  const uname = safe(s('uname'), parseUname);
  const release = parseRelease(sysctl?.values['kern.osrelease']) ?? parseRelease(uname?.release);
  const ncpuText = sysctl?.values['hw.ncpu'];
  const ncpu = ncpuText && /^\d+$/.test(ncpuText.trim()) && Number(ncpuText) > 0 ? Number(ncpuText) : undefined;
  const facts: GuestFacts = {
    run: bundle.meta.run ?? '-',
    phase: bundle.meta.phase ?? 'manual',
    uid: bundle.meta.uid,
    release,
    arch: sysctl?.values['hw.machine_arch']?.trim() || uname?.arch,
    sysctl,
    ncpu,
    vmGuest: sysctl?.values['kern.vm_guest']?.trim(),
    dmesgBoot: safe(s('dmesg-boot'), lines),
    dmesg: safe(s('dmesg'), lines),
    vmstat: [safe(s('vmstat-ia.0'), parseVmstat), safe(s('vmstat-ia.1'), parseVmstat)],
    conftxt: safe(s('conftxt'), parseConftxt),
    cam: safe(s('camcontrol-devlist'), (t) => {
      const d = parseCamDevlist(t);
      if (d.length) return d;
      // An empty list is evidence only from a command that finished (status 0, or no index to say).
      const st = bundle.index.find((e) => e.name === 'camcontrol-devlist')?.status;
      return (st === undefined || st === 0) && t.trim() === '' ? d : undefined;
    }),
    cdrom: safe(s('cdrom'), parseCdromSection),
    flush: safe(s('flush'), parseFlushSection),
    cpuid: safe(s('cpuid-xen'), parseCpuidSection),
    cpuidNote: undefined,
    present: new Set(bundle.sections.keys()),
    status: new Map(bundle.index.map((e) => [e.name, e.status])),
    meta: bundle.meta,
  };
  if (!facts.cpuid) facts.cpuidNote = safe(s('cpuid-xen'), explainCpuidSection);
  cache.set(bundle, facts);
  return facts;
}

/** Boot and live kernel messages together (dmesg -a can have wrapped; dmesg.boot keeps the boot). */
export function allMessages(f: GuestFacts): string[] {
  return [...(f.dmesgBoot ?? []), ...(f.dmesg ?? [])];
}

export function findMessage(f: GuestFacts, re: RegExp): string | undefined {
  return allMessages(f).find((l) => re.test(l));
}

/** Positive evidence that this is a Xen guest, or a reason to skip (another hypervisor / bare metal). */
export function xenGuestEvidence(f: GuestFacts): { xen: true; evidence: string[] } | { xen: false; reason: string } | undefined {
  const ev: string[] = [];
  if (f.vmGuest === 'xen') ev.push('kern.vm_guest: xen');
  const hv = findMessage(f, /^XEN: Hypervisor version \d+\.\d+ detected\./);
  if (hv) ev.push(hv);
  const origin = findMessage(f, /Hypervisor: Origin = "XenVMMXenVMM"/);
  if (origin) ev.push(origin.trim());
  if (ev.length) return { xen: true, evidence: ev };
  // "generic": the kernel saw a hypervisor it could not name (a kernel without XENHVM on Xen can read so): no proof either way.
  if (f.vmGuest !== undefined && f.vmGuest !== '' && f.vmGuest !== 'generic') return { xen: false, reason: `kern.vm_guest: ${f.vmGuest} (not a Xen guest)` };
  return undefined;
}

/** Why a sysctl value is not there, in the words of the bundle: no section, an unreadable one, or no such line. */
export function sysctlAbsent(f: GuestFacts, oid: string): string {
  if (!f.present.has('sysctl')) return `no sysctl section (${oid} unknown)`;
  if (!f.sysctl) return `the sysctl section is unreadable (${oid} unknown)`;
  const st = f.status.get('sysctl');
  const refused = f.sysctl.unknown.some((u) => oid === u || oid.startsWith(`${u}.`));
  return `the sysctl section has no ${oid} line${refused ? ' (sysctl: unknown oid)' : ''}${st === 124 ? ' (the section was stopped at its time limit)' : ''}`;
}

const BANNER = /^Copyright \(c\) 1992-\d+ The FreeBSD Project\.$/;
const ROOT_MOUNT = /^Trying to mount root from /;

/**
 * The last boot's messages, when dmesg.boot holds them from the banner to the root mount: by then every
 * driver has attached, so a driver line missing there is absent, not cut off. Undefined otherwise
 * (a head-only capture, a wrapped message buffer).
 */
export function completeBoot(f: GuestFacts): { lines: string[]; rootMount: string } | undefined {
  const lines = f.dmesgBoot;
  if (!lines) return undefined;
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (BANNER.test(lines[i]!)) {
      start = i;
      break;
    }
  }
  if (start < 0) return undefined;
  const end = lines.findIndex((l, i) => i > start && ROOT_MOUNT.test(l));
  return end < 0 ? undefined : { lines: lines.slice(start, end + 1), rootMount: lines[end]! };
}

export function cpuList(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
