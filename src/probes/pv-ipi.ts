import { cpuList, findMessage, guestFacts, sysctlAbsent, xenGuestEvidence, type GuestFacts } from './facts.js';
import type { Vmstat } from './parsers/vmstat.js';
import { defineProbe, fail, inconclusive, pass, skip, type ProbeOutcome } from './types.js';

/** IPI descriptions bound as event channels (hvm.c 10.x, xen_apic.c 11+; "sw" on 14, "sth" until 12). */
export const IPI_SOURCE = /^cpu(\d+):(r|itlb|ipg|irg|ic|lp|b|st|sp|sth|sw)$/;
const XEN_HVM_CPUID_APIC_ACCESS_VIRT = 1 << 0;
const XEN_HVM_CPUID_X2APIC_VIRT = 1 << 1;

/** Per CPU: the sum of its IPI event-channel counters (undefined when it has no rows). */
export function ipiTotals(v: Vmstat): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of v.rows) {
    const m = IPI_SOURCE.exec(r.source);
    if (m && r.irq !== null) out.set(Number(m[1]), (out.get(Number(m[1])) ?? 0) + r.total);
  }
  return out;
}

export function ipiVerdict(f: GuestFacts): ProbeOutcome {
  const [v0, v1] = f.vmstat;
  const latest = v1 ?? v0;
  if (f.ncpu === undefined) return inconclusive(`${sysctlAbsent(f, 'hw.ncpu')}: cannot tell how many CPUs should have PV IPIs`);
  if (f.ncpu === 1) return skip('hw.ncpu: 1 — a single vCPU sends no IPIs');
  if (!latest) return inconclusive('vmstat -ia sections are missing: cannot see the IPI event channels');
  const totals = ipiTotals(latest);
  const which = latest === v1 ? 'vmstat-ia.1' : 'vmstat-ia.0';
  // A row missing from a listing that never reached its Total row may just be cut off.
  if (!latest.complete && (totals.size === 0 || cpuList(f.ncpu).some((c) => !totals.has(c)))) {
    return inconclusive(`${which} ends before its "Total" row (cut short${f.status.get(which) ? `, index status ${f.status.get(which)}` : ''}): PV IPI rows missing from it may just be cut off`);
  }
  if (totals.size === 0) {
    // Lines that say PV IPIs cannot exist here, whatever the host: no vector callback, or no XENHVM.
    const noCallback = findMessage(f, /Xen HVM callback vector registration failed|^xen_et0: vector callbacks unavailable/);
    if (noCallback) return fail(['no cpuN:<ipi> event-channel rows in vmstat -ia', `${noCallback} (PV IPIs need the vector callback)`]);
    if (f.conftxt && !f.conftxt.options.includes('XENHVM')) return fail(['no cpuN:<ipi> event-channel rows in vmstat -ia', 'kern.conftxt has no options XENHVM (PV IPIs need it)']);
    const rel = f.release;
    if (!rel) return inconclusive('no cpuN:<ipi> event-channel rows in vmstat -ia, and the release is unknown (no kern.osrelease, no uname): from 14.0 that is intended on APIC-virtualising hosts, so it cannot be judged');
    if (rel.major >= 13 && !f.cpuid) {
      // 14.0+ (2450da67): with hardware APIC virtualisation Xen reports it in CPUID and FreeBSD keeps native IPIs
      // (whether 13.x has it is not pinned).
      const why = f.present.has('cpuid-xen') ? (f.cpuidNote ?? 'the cpuid-xen section gave no Xen leaf 4') : 'the cpuid-xen section is missing (needs root and the cpuctl module: kldload cpuctl)';
      return inconclusive(`${rel.text}: no PV IPI rows, which is intended when Xen reports APIC virtualisation`, `${why}, so the host cannot tell`);
    }
    if (rel.major >= 14 && f.cpuid) {
      const eax = f.cpuid.leaf4eax;
      const bits = [eax & XEN_HVM_CPUID_APIC_ACCESS_VIRT && 'APIC access virtualisation', eax & XEN_HVM_CPUID_X2APIC_VIRT && 'x2APIC virtualisation'].filter(Boolean);
      const leaf = `Xen CPUID leaf 0x${(f.cpuid.base + 4).toString(16)} EAX=0x${eax.toString(16)}`;
      if (bits.length) return pass('IPIs are deliberately native LAPIC IPIs on this APIC-virtualising host (FreeBSD 14.0+, commit 2450da67)', `${leaf}: ${bits.join(' + ')}`, `${rel.text}: no PV IPI rows, as intended`);
      return fail([`${rel.text}: no cpuN:<ipi> event-channel rows in vmstat -ia`, `${leaf}: no APIC virtualisation, so FreeBSD should have bound PV IPIs`], 'Xen reports no APIC virtualisation, so the kernel should use event-channel IPIs: check vector-callback and that the kernel is GENERIC with options XENHVM');
    }
    // 13.x: whether 2450da67 (native IPIs on APIC-virtualising hosts) was merged to stable/13 is not pinned.
    if (rel.major === 13 && f.cpuid && (f.cpuid.leaf4eax & (XEN_HVM_CPUID_APIC_ACCESS_VIRT | XEN_HVM_CPUID_X2APIC_VIRT))) {
      return inconclusive(`${rel.text}: no PV IPI rows on a host whose Xen CPUID reports APIC virtualisation`, 'whether 13.x skips PV IPIs there (like 14.0+, commit 2450da67) is not known, so this is not judged');
    }
    return fail([`${rel.text}: no cpuN:<ipi> event-channel rows (r, itlb, b, st, sp...) in vmstat -ia: IPIs go through the emulated LAPIC`]);
  }
  const missing = cpuList(f.ncpu).filter((c) => !totals.has(c));
  if (missing.length) return fail([`no PV IPI rows for CPU ${missing.join(', ')} (hw.ncpu: ${f.ncpu})`]);
  const silent = cpuList(f.ncpu).filter((c) => (totals.get(c) ?? 0) === 0);
  if (silent.length) return fail([`PV IPI channels of CPU ${silent.join(', ')} never fired (all counters 0)`]);
  const evidence = [`PV IPI rows on all ${f.ncpu} CPUs: ${cpuList(f.ncpu).map((c) => `cpu${c}=${totals.get(c)}`).join(' ')}`];
  if (v0 && v1) {
    const before = ipiTotals(v0);
    const grew = cpuList(f.ncpu).filter((c) => (totals.get(c) ?? 0) > (before.get(c) ?? 0));
    evidence.push(`advanced during the load on ${grew.length}/${f.ncpu} CPUs`);
  }
  return pass(...evidence);
}

export const pvIpi = defineProbe<GuestFacts>({
  id: 'pv-ipi',
  claim: 'IPIs travel over event channels on every CPU, or are deliberately native on APIC-virtualising hosts',
  sections: ['sysctl', 'vmstat-ia.0', 'vmstat-ia.1', 'cpuid-xen', 'uname'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f) {
    const x = xenGuestEvidence(f);
    if (x && !x.xen) return skip(x.reason);
    return ipiVerdict(f);
  },
  requiresXen: true,
  hint: 'PV IPIs need the vector callback (see vector-callback); on FreeBSD < 14 a guest without cpuN:r/cpuN:b rows uses the emulated LAPIC for IPIs',
});
