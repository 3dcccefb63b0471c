import { findMessage, guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
import { blkfrontDisks, diskName } from './blkfront-flush.js';
import { defineProbe, fail, inconclusive, pass, skip } from './types.js';

/** vbd numbers of the emulated IDE CD positions: hdc (22<<8) and hdd (22<<8 | 64). */
const CD_VBDS = new Set(['device/vbd/5632', 'device/vbd/5696']);

export const cdrom = defineProbe<GuestFacts>({
  id: 'cdrom',
  claim: 'a CD drive is present as the emulated ATAPI cdN (blkfront left it alone) and its medium reads',
  sections: ['camcontrol-devlist', 'sysctl', 'cdrom', 'dmesg-boot'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f) {
    const x = xenGuestEvidence(f);
    if (x && !x.xen) return skip(x.reason);
    const cds = new Map<string, string>();
    for (const d of f.cam ?? []) for (const p of d.periphs) if (/^cd\d+$/.test(p)) cds.set(p, `camcontrol: <${d.description}> (${d.periphs.join(',')})`);
    for (const d of (f.sysctl?.values['kern.disks'] ?? '').trim().split(/\s+/)) if (/^cd\d+$/.test(d) && !cds.has(d)) cds.set(d, `kern.disks: ${d}`);
    const grabbed = blkfrontDisks(f).filter((d) => d.node !== undefined && CD_VBDS.has(d.node));
    if (cds.size === 0) {
      if (grabbed.length) {
        return fail([`no cdN device; ${grabbed.map(diskName).join(', ')} sits at the CD position: blkfront attached the CD vbd as a disk`], 'this kernel\'s blkfront does not skip device-type=cdrom vbds (xbd_probe): use a FreeBSD release whose blkfront leaves CDs to the emulated ATAPI drive, or attach the ISO as an emulated CD (xl: "hdc:cdrom")');
      }
      if (f.cam !== undefined || f.sysctl?.values['kern.disks'] !== undefined) {
        return skip('no CD drive in this guest (no cdN in camcontrol devlist or kern.disks); attach one to test it (fbxen boot adds the fbxen CD)');
      }
      return inconclusive('camcontrol devlist and kern.disks are missing: cannot tell whether a CD drive exists');
    }
    const evidence = [...cds.values()];
    const ata = findMessage(f, /^cd\d+ at ata\d+/);
    if (ata) evidence.push(ata);
    if (!f.cdrom) return inconclusive(...evidence, 'the cdrom section is missing: the medium was not read');
    const reads = [...cds.keys()].map((d) => ({ d, r: f.cdrom![d] })).filter((x) => x.r !== undefined);
    if (reads.length === 0) return inconclusive(...evidence, 'the cdrom section has no result for these drives');
    const ok = reads.find((x) => x.r!.read === 0);
    if (!ok && reads.some((x) => x.r!.denied)) {
      return inconclusive(...evidence, `${reads.find((x) => x.r!.denied)!.d}: permission denied: the collector did not run as root${f.uid !== undefined ? ` (uid ${f.uid})` : ''}, so the medium was not read`);
    }
    if (!ok) return fail([...evidence, ...reads.map((x) => `${x.d}: read-status ${x.r!.read ?? 'none'} (the medium could not be read)`)], 'insert a medium (the fbxen CD) and check it is readable: the drive is there but reads fail');
    evidence.push(`${ok.d}: first 32 KiB read`);
    if (ok.r!.mount === 0) evidence.push(`${ok.d}: cd9660 mount ok${ok.r!.nonce ? `, /fbxen/run = ${ok.r!.nonce}${ok.r!.nonce === f.run ? ' (this run)' : ` (not this run ${f.run})`}` : ''}`);
    return pass(...evidence);
  },
  requiresXen: true,
  hint: 'attach the CD as an emulated IDE CD-ROM (xl: "hdc:cdrom", XAPI: a CD VBD) and keep hw.ata enabled; FreeBSD deliberately leaves CD vbds to the emulated drive',
});
