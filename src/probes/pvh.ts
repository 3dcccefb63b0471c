/**
 * HVM or PVH: what the guest says (machdep.bootmethod) and what the host asked (fbxen boot's run record).
 * FreeBSD's PVH entry (sys/x86/xen/pv.c, xen_pvh_parse_preload_data) sets bootmethod "PVH" when no loader
 * metadata came with the cmdline (13f34e21, 14.0+), "XEN" before it (12.x-13.x); a loader-started kernel
 * (HVM: SeaBIOS or OVMF, then loader(8)) says "BIOS" or "UEFI" (amd64 machdep.c). docs/pvh.md §3.
 */
import type { GuestFacts } from './facts.js';
import type { ProbeContext } from './types.js';

export type BootType = 'hvm' | 'pvh';

export interface BootMode {
  /** From machdep.bootmethod; undefined when the sysctl was not collected or holds another value. */
  guest: BootType | undefined;
  /** The sysctl line, as evidence. */
  guestLine: string | undefined;
  /** From the host's run record (ProbeContext.bootType). */
  host: BootType | undefined;
  hostWhy: string | undefined;
}

export function bootMode(f: GuestFacts, ctx: ProbeContext): BootMode {
  const raw = f.sysctl?.values['machdep.bootmethod']?.trim();
  const guest = raw === 'PVH' || raw === 'XEN' ? 'pvh' : raw === 'BIOS' || raw === 'UEFI' ? 'hvm' : undefined;
  return {
    guest,
    guestLine: raw ? `machdep.bootmethod: ${raw.slice(0, 16)}` : undefined,
    host: ctx.bootType?.type,
    hostWhy: ctx.bootType ? ctx.bootType.source : undefined,
  };
}

/** PVH when the guest says so, or, when it cannot tell, when the host booted it so. */
export function isPvh(m: BootMode): boolean {
  return m.guest === 'pvh' || (m.guest === undefined && m.host === 'pvh');
}

/** The evidence line that says why this guest is taken as PVH. */
export function pvhWhy(m: BootMode): string {
  if (m.guest === 'pvh') return `${m.guestLine} (the kernel was entered at Xen's PVH entry point: no firmware, no device model)`;
  return `booted as type pvh (${m.hostWhy ?? 'the run record'}); the guest did not report machdep.bootmethod`;
}

/** Host and guest disagree: the domain is not what fbxen asked for. */
export function bootModeMismatch(m: BootMode): string[] | undefined {
  if (!m.host || !m.guest || m.host === m.guest) return undefined;
  return [`booted as type ${m.host} (${m.hostWhy ?? 'the run record'})`, `${m.guestLine}: the guest ${m.guest === 'hvm' ? 'was started by firmware and loader(8), as an HVM guest' : 'was entered at the PVH entry point'}`];
}
