import { findMessage, guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
import { blkfrontDisks, diskName } from './blkfront-flush.js';
import { bootMode, isPvh, pvhWhy } from './pvh.js';
import { defineProbe, fail, inconclusive, pass, skip, type ProbeContext } from './types.js';

/** vbd numbers of the emulated IDE CD positions: hdc (22<<8) and hdd (22<<8 | 64). */
const CD_VBDS = new Set(['device/vbd/5632', 'device/vbd/5696']);

/**
 * Whether a CD was meant to be in this guest: the host's run record, or the bundle's meta (the rc.d script
 * starts the collector only when it found the fbxen medium, and says where). `undefined`: cannot be told.
 */
function cdMeant(f: GuestFacts, ctx: ProbeContext): { meant: true; why: string[] } | { meant: false; why: string } | undefined {
  const why: string[] = [];
  // The host's own record comes first: meta is written by the guest, and may not talk a fail into a skip.
  if (ctx.cdAttached) why.push(ctx.cdAttached);
  const medium = f.meta.medium?.slice(0, 200);
  if (medium) why.push(`meta medium=${medium}: the rc.d script found the fbxen CD there${/^\/dev\/cd\d+$/.test(medium) ? '' : ', not on a cdN (the CD came as a disk)'}`);
  else if (f.meta['run-source'] === 'cd') why.push('meta run-source=cd: the rc.d script read the run id from the fbxen CD');
  if (why.length) return { meant: true, why };
  if (f.meta['run-source'] !== undefined) return { meant: false, why: `meta run-source=${f.meta['run-source'].slice(0, 40)}: the collector was started by hand or over ssh, and nothing says a CD was attached` };
  return undefined;
}

export const cdrom = defineProbe<GuestFacts>({
  id: 'cdrom',
  claim: 'a CD drive is present as the emulated ATAPI cdN (blkfront left it alone) and its medium reads (HVM; PVH has no CD drive)',
  sections: ['camcontrol-devlist', 'sysctl', 'cdrom', 'dmesg-boot'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f, ctx) {
    const x = xenGuestEvidence(f);
    if (x && !x.xen) return skip(x.reason);
    const mode = bootMode(f, ctx);
    if (isPvh(mode)) {
      // The HVM claim has no object under PVH: no emulated ATAPI drive, and xbd_probe drops cdrom vbds.
      const medium = f.meta.medium?.slice(0, 200);
      return skip(
        'PVH has no emulated CD drive, and FreeBSD\'s blkfront refuses device-type=cdrom vbds (xbd_probe): fbxen gives a PVH guest its CD as a read-only disk',
        pvhWhy(mode),
        ...(medium ? [`meta medium=${medium}: the rc.d script found the fbxen medium there${/^\/dev\/cd\d+$/.test(medium) ? '' : ' (the disk, by its ISO 9660 label)'}`] : []),
      );
    }
    const cds = new Map<string, string>();
    for (const d of f.cam ?? []) for (const p of d.periphs) if (/^cd\d+$/.test(p)) cds.set(p, `camcontrol: <${d.description}> (${d.periphs.join(',')})`);
    for (const d of (f.sysctl?.values['kern.disks'] ?? '').trim().split(/\s+/)) if (/^cd\d+$/.test(d) && !cds.has(d)) cds.set(d, `kern.disks: ${d}`);
    const grabbed = blkfrontDisks(f).filter((d) => d.node !== undefined && CD_VBDS.has(d.node));
    if (cds.size === 0) {
      if (grabbed.length) {
        return fail([`no cdN device; ${grabbed.map(diskName).join(', ')} sits at the CD position: blkfront attached the CD vbd as a disk`], 'this kernel\'s blkfront does not skip device-type=cdrom vbds (xbd_probe): use a FreeBSD release whose blkfront leaves CDs to the emulated ATAPI drive, or attach the ISO as an emulated CD (xl: "hdc:cdrom")');
      }
      if (f.cam === undefined && f.sysctl?.values['kern.disks'] === undefined) {
        return inconclusive('camcontrol devlist and kern.disks are missing: cannot tell whether a CD drive exists');
      }
      const seen = `no cdN in ${[f.cam !== undefined && 'camcontrol devlist', f.sysctl?.values['kern.disks'] !== undefined && `kern.disks (${f.sysctl.values['kern.disks']!.trim() || 'empty'})`].filter(Boolean).join(' or ')}`;
      const meant = cdMeant(f, ctx);
      if (meant?.meant) {
        return fail([`a CD was attached, but the guest has ${seen}`, ...meant.why], 'the CD did not come up as the emulated ATAPI cdN: attach it as an emulated IDE CD-ROM (xl: "hdc:cdrom"; XAPI: a CD VBD), keep hw.ata enabled, and on XenServer check that the CD is not given to the guest as a disk');
      }
      if (meant) return skip(`no CD drive in this guest (${seen})`, meant.why, 'attach one to test it (fbxen boot adds the fbxen CD)');
      return inconclusive(`${seen}, and nothing says whether a CD was meant to be attached (no run-source or medium in meta, no fbxen run record)`, 'collect with fbxen-collect (it records how it was started), or verify with --domain');
    }
    const evidence = [...cds.values()];
    const ata = findMessage(f, /^cd\d+ at ata\d+/);
    if (ata) evidence.push(ata);
    if (!f.cdrom) return inconclusive(...evidence, `the cdrom section is ${f.present.has('cdrom') ? 'unreadable' : 'missing'}: the medium was not read`);
    const reads = [...cds.keys()].map((d) => ({ d, r: f.cdrom![d] })).filter((x) => x.r !== undefined);
    if (reads.length === 0) {
      const st = f.status.get('cdrom');
      return inconclusive(...evidence, `the cdrom section has no "${[...cds.keys()][0]} read-status N" line (fbxen-collect's format) for ${[...cds.keys()].join(', ')}${st !== undefined ? `; the section exited ${st} (index)` : ''}: the medium's read is not shown`);
    }
    const ok = reads.find((x) => x.r!.read === 0);
    if (!ok && reads.some((x) => x.r!.denied)) {
      return inconclusive(...evidence, `${reads.find((x) => x.r!.denied)!.d}: permission denied: the collector did not run as root${f.uid !== undefined ? ` (uid ${f.uid})` : ''}, so the medium was not read`);
    }
    if (!ok) {
      // Only a read that returned a non-zero status is a failed read; no status line is no answer.
      const failed = reads.filter((x) => x.r!.read !== null);
      if (failed.length) return fail([...evidence, ...failed.map((x) => `${x.d}: read-status ${x.r!.read} (the medium could not be read)`)], 'insert a medium (the fbxen CD) and check it is readable: the drive is there but reads fail');
      const st = f.status.get('cdrom');
      return inconclusive(...evidence, `the cdrom section has no read-status line for ${reads.map((x) => x.d).join(', ')}${st !== undefined ? ` (index status ${st}${st === 124 ? ': stopped at its time limit' : ''})` : ''}: the read did not finish`);
    }
    evidence.push(`${ok.d}: first 32 KiB read`);
    if (ok.r!.mount === 0) evidence.push(`${ok.d}: cd9660 mount ok${ok.r!.nonce ? `, /fbxen/run = ${ok.r!.nonce}${ok.r!.nonce === f.run ? ' (this run)' : ` (not this run ${f.run})`}` : ''}`);
    return pass(...evidence);
  },
  requiresXen: true,
  hint: 'attach the CD as an emulated IDE CD-ROM (xl: "hdc:cdrom", XAPI: a CD VBD) and keep hw.ata enabled; FreeBSD deliberately leaves CD vbds to the emulated drive',
});
