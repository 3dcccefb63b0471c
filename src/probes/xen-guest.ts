import { findMessage, guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
import { bootMode, bootModeMismatch, isPvh, pvhWhy } from './pvh.js';
import { defineProbe, fail, inconclusive, pass } from './types.js';

export const xenGuest = defineProbe<GuestFacts>({
  id: 'xen-guest',
  claim: 'the guest runs on Xen (kern.vm_guest=xen, hypervisor version), as the type (HVM or PVH) it was booted as',
  sections: ['sysctl', 'dmesg-boot', 'dmesg'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f, ctx) {
    const x = xenGuestEvidence(f);
    if (!x && f.vmGuest === 'generic') {
      return inconclusive('kern.vm_guest: generic: the kernel saw a hypervisor it did not name (a kernel without options XENHVM reads so on Xen), and no Xen hypervisor line in the kernel messages');
    }
    if (!x) return inconclusive('no kern.vm_guest value and no Xen hypervisor line in the kernel messages');
    if (!x.xen) return fail([x.reason]);
    const mode = bootMode(f, ctx);
    const mismatch = bootModeMismatch(mode);
    if (mismatch) return fail([...x.evidence, ...mismatch], `the domain is not the type fbxen asked for: check the xl config's type= (${mode.host === 'pvh' ? 'a PVH guest needs type = "pvh" and kernel=' : 'an HVM guest needs type = "hvm"'}) and that the toolstack honours it`);
    if (mode.host === 'pvh') {
      // Xen's platform PCI device is emulated by QEMU, which a PVH domain does not have (libxl: emulation_flags LAPIC only).
      const xenpci = findMessage(f, /^xenpci0: <Xen Platform Device>/);
      if (xenpci) return fail([...x.evidence, `booted as type pvh (${mode.hostWhy ?? 'the run record'})`, `${xenpci}: a PVH domain has no device model and so no Xen platform PCI device; this is an HVM domain`], 'the domain was created as HVM: check the xl config\'s type = "pvh"');
    }
    if (isPvh(mode)) return pass(...x.evidence, pvhWhy(mode));
    return pass(...x.evidence, ...(mode.guestLine ? [`${mode.guestLine} (HVM: started by firmware and loader(8))`] : []));
  },
  hint: 'boot the image as a Xen HVM guest (xl type="hvm" or an XAPI HVM VM) or, on amd64 12.0+, as a PVH guest (fbxen boot --type pvh); kern.vm_guest must read "xen"',
});
