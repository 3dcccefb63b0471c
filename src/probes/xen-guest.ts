import { guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
import { defineProbe, fail, inconclusive, pass } from './types.js';

export const xenGuest = defineProbe<GuestFacts>({
  id: 'xen-guest',
  claim: 'the guest runs on Xen (kern.vm_guest=xen, hypervisor version)',
  sections: ['sysctl', 'dmesg-boot', 'dmesg'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f) {
    const x = xenGuestEvidence(f);
    if (!x && f.vmGuest === 'generic') {
      return inconclusive('kern.vm_guest: generic: the kernel saw a hypervisor it did not name (a kernel without options XENHVM reads so on Xen), and no Xen hypervisor line in the kernel messages');
    }
    if (!x) return inconclusive('no kern.vm_guest value and no Xen hypervisor line in the kernel messages');
    if (!x.xen) return fail([x.reason]);
    return pass(...x.evidence);
  },
  hint: 'boot the image as a Xen HVM guest (xl builder="hvm" or an XAPI HVM VM); kern.vm_guest must read "xen"',
});
