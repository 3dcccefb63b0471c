import { completeBoot, findMessage, guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
import { rowsBySource } from './parsers/vmstat.js';
import { bootMode, isPvh, pvhWhy } from './pvh.js';
import { defineProbe, fail, inconclusive, pass, skip, type ProbeOutcome } from './types.js';

export const vectorCallback = defineProbe<GuestFacts>({
  id: 'vector-callback',
  claim: 'event channels are delivered through the vector callback, not the legacy PCI IRQ (CPU0-only); implicit under PVH',
  sections: ['dmesg-boot', 'dmesg', 'vmstat-ia.0', 'vmstat-ia.1', 'sysctl'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f, ctx) {
    const x = xenGuestEvidence(f);
    if (x && !x.xen) return skip(x.reason);
    const fallback = findMessage(f, /Xen HVM callback vector registration failed/);
    const etUnavailable = findMessage(f, /^xen_et0: vector callbacks unavailable/);
    if (fallback || etUnavailable) return fail([fallback, etUnavailable].filter((l): l is string => !!l));
    const mode = bootMode(f, ctx);
    if (isPvh(mode)) return pvhVerdict(f, pvhWhy(mode));

    const [v0, v1] = f.vmstat;
    // Legacy mode carries every event on the platform device's INTx: that row grows.
    if (v0 && v1) {
      const a = rowsBySource(v0, /^xenpci0$/).get('xenpci0');
      const b = rowsBySource(v1, /^xenpci0$/).get('xenpci0');
      if (a && b && b.total - a.total > 10) {
        return fail([`${b.name}: ${a.total} -> ${b.total} during the load: events arrive on the PCI interrupt (legacy callback)`]);
      }
    }
    const evidence: string[] = [];
    const latest = v1 ?? v0;
    if (latest) {
      const upcalls = [...rowsBySource(latest, /^cpu[1-9]\d*:xen$/).values()].filter((r) => r.total > 0);
      if (upcalls.length) evidence.push(`per-vCPU upcalls on CPUs other than 0: ${upcalls.map((r) => `${r.name}=${r.total}`).join(', ')}`);
      const et = [...rowsBySource(latest, /^xen_et0:c[1-9]\d*$/).values()].filter((r) => r.total > 0);
      if (et.length) evidence.push(`PV timer interrupts on CPUs other than 0 (XENTIMER needs the vector callback): ${et.map((r) => `${r.source}=${r.total}`).join(', ')}`);
    }
    const etAttach = findMessage(f, /^xen_et0: <Xen PV Clock>/);
    if (etAttach) evidence.push(`${etAttach} (xen_et attaches only with vector callbacks)`);
    if (evidence.length) return pass(...evidence);
    if (x === undefined) return inconclusive('no evidence that this is a Xen guest, and no Xen interrupt rows or xen_et0 attach line');
    // Say what was looked at: a missing listing or a cut-off boot log is not an absent row or line.
    const rows = latest ? 'no per-CPU Xen upcall or PV timer rows for CPUs other than 0 in vmstat -ia' : 'no vmstat -ia section';
    const attach = completeBoot(f) ? 'no xen_et0 attach line in dmesg.boot' : 'no xen_et0 attach line (dmesg.boot does not run to the root mount, so later driver lines may be cut off)';
    return inconclusive(`${rows}, and ${attach}: cannot tell the callback mode`);
  },
  requiresXen: true,
  hint: 'the hypervisor did not accept the HVM vector callback: use a Xen >= 4.x HVM guest with the platform PCI device (xen_platform_pci=1), and check for "Xen HVM callback vector registration failed" in dmesg',
});

/**
 * PVH: xen_hvm_init(LATE) calls xen_hvm_set_callback(NULL) as on HVM (sys/x86/xen/hvm.c); when the vector
 * cannot be set it prints the registration failure and waits for xenpci to set up the PCI INTx, which a
 * PVH domain does not have. So any event delivered at all came through the vector callback: the claim is
 * implicit, and the evidence is that events arrive (PV devices attached, Xen interrupt rows counting).
 */
function pvhVerdict(f: GuestFacts, why: string): ProbeOutcome {
  const implicit = 'implicit under PVH: there is no xenpci device and so no legacy INTx fallback; the vector callback is the only way events arrive';
  const delivered: string[] = [];
  const latest = f.vmstat[1] ?? f.vmstat[0];
  if (latest) {
    const rows = [...rowsBySource(latest, /^(cpu\d+:xen|xen_et0:c\d+|xenstore0|xbd\d+)$/).values()].filter((r) => r.total > 0);
    if (rows.length) delivered.push(`Xen event interrupts counting: ${rows.slice(0, 6).map((r) => `${r.source}=${r.total}`).join(', ')}${rows.length > 6 ? ` and ${rows.length - 6} more` : ''}`);
  }
  const attached = findMessage(f, /^xbd\d+: .*<Virtual Block Device> at device\/vbd\/\d+ on xenbusb_front\d+/) ?? findMessage(f, /^xen_et0: <Xen PV Clock>/);
  if (attached) delivered.push(`${attached} (needs event channels through xenstore)`);
  if (delivered.length) return pass(why, implicit, ...delivered);
  return inconclusive(`${why}; ${implicit}, but no evidence here that events arrive (no Xen interrupt rows counting in vmstat -ia, no xbd or xen_et0 attach line)`);
}
