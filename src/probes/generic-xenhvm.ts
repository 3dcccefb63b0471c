import { completeBoot, findMessage, guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
import type { Conftxt } from './parsers/text-sections.js';
import { bootMode, isPvh, pvhWhy } from './pvh.js';
import { defineProbe, fail, inconclusive, pass, skip, type ProbeOutcome } from './types.js';

export const genericXenhvm = defineProbe<GuestFacts>({
  id: 'generic-xenhvm',
  claim: 'the running kernel is GENERIC (or a config) with options XENHVM and device xenpci (under PVH: options XENHVM)',
  sections: ['conftxt', 'dmesg-boot', 'sysctl'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f, ctx) {
    const c = f.conftxt;
    const hv = findMessage(f, /^XEN: Hypervisor version \d+\.\d+ detected\./);
    const mode = bootMode(f, ctx);
    // PVH has no Xen platform PCI device: xenpci has nothing to attach to, and options XENHVM is all that matters.
    if (isPvh(mode)) return pvhVerdict(f, c, hv, pvhWhy(mode));
    if (c) {
      const ident = `ident ${c.ident ?? '(none)'}`;
      const hasHvm = c.options.includes('XENHVM');
      const hasPci = c.devices.includes('xenpci');
      if (hasHvm && hasPci) return pass(ident, 'kern.conftxt: options XENHVM', 'kern.conftxt: device xenpci');
      const missing = [!hasHvm && 'options XENHVM', !hasPci && 'device xenpci'].filter(Boolean).join(' and ');
      // A config cut short (the section stopped or failed) proves nothing by what it lacks.
      const st = f.status.get('conftxt');
      if (st !== undefined && st !== 0) return inconclusive(`kern.conftxt has no ${missing}, but its section exited ${st} (index): the text may be cut short`, ident);
      return fail([ident, `kern.conftxt has no ${missing}`]);
    }
    // Without INCLUDE_CONFIG_FILE: the xenpci driver attaching and hvm.c's version line prove both.
    const xenpci = findMessage(f, /^xenpci0: <Xen Platform Device>/);
    if (xenpci && hv) return pass('kern.conftxt empty (kernel built without INCLUDE_CONFIG_FILE)', hv, xenpci);
    const x = xenGuestEvidence(f);
    if (x && !x.xen) return skip(x.reason);
    const noConf = f.present.has('conftxt') ? 'kern.conftxt empty (kernel built without INCLUDE_CONFIG_FILE)' : 'no conftxt section';
    const boot = completeBoot(f);
    if (x?.xen && boot && !xenpci) {
      return fail([
        noConf,
        `no "xenpci0: <Xen Platform Device>" in dmesg.boot, which runs to "${boot.rootMount.trim()}" (every driver has attached by then): the kernel has no xenpci driver, or the platform device is not PCI id 5853:0001`,
        ...(hv ? [`${hv} (printed by options XENHVM)`] : []),
      ]);
    }
    if (hv && !xenpci) {
      // The banner's build path names the kernel config: a hint, not proof (a config named GENERIC can be edited).
      const built = findMessage(f, /^\s*\S+@\S+:\S*\/sys\/GENERIC\s+(amd64|i386)\s*$/);
      return inconclusive(
        `${noConf}, and dmesg.boot ends before the drivers attach (no "Trying to mount root from" after the banner): xenpci0 cannot be seen`,
        `${hv} (printed only by a kernel with options XENHVM)`,
        ...(built ? [`${built.trim()}: a kernel config named GENERIC (FreeBSD's GENERIC has both since 10.0, but the name does not prove the content)`] : []),
      );
    }
    return inconclusive(`${noConf}, and the boot messages do not show both the XENHVM version line and xenpci0`);
  },
  hint: 'use a GENERIC kernel (it has options XENHVM and device xenpci since 10.0), or add both to your kernel config',
});

const NO_XENPCI_UNDER_PVH = 'device xenpci is not needed under PVH (no Xen platform PCI device without a device model)';

function pvhVerdict(f: GuestFacts, c: Conftxt | undefined, hv: string | undefined, why: string): ProbeOutcome {
  if (c) {
    const ident = `ident ${c.ident ?? '(none)'}`;
    if (c.options.includes('XENHVM')) return pass(ident, 'kern.conftxt: options XENHVM', why, NO_XENPCI_UNDER_PVH);
    const st = f.status.get('conftxt');
    if (st !== undefined && st !== 0) return inconclusive(`kern.conftxt has no options XENHVM, but its section exited ${st} (index): the text may be cut short`, ident, why);
    return fail([ident, 'kern.conftxt has no options XENHVM', why]);
  }
  const noConf = f.present.has('conftxt') ? 'kern.conftxt empty (kernel built without INCLUDE_CONFIG_FILE)' : 'no conftxt section';
  // hvm.c's version line is XENHVM code: with it, the kernel has the option even without its config text.
  if (hv) return pass(noConf, `${hv} (printed only by a kernel with options XENHVM)`, why, NO_XENPCI_UNDER_PVH);
  return inconclusive(`${noConf}, and no "XEN: Hypervisor version" line in the kernel messages: cannot tell whether the kernel has options XENHVM`, why);
}
