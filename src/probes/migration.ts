import { guestFacts, xenGuestEvidence, type GuestFacts } from './facts.js';
import { flushRoundTrip } from './blkfront-flush.js';
import { ipiTotals } from './pv-ipi.js';
import { timerTicking } from './pv-timer.js';
import { defineProbe, fail, inconclusive, pass, skip, type ProbeContext } from './types.js';

const BAD_RESUME = /device_suspend failed|runtime went backwards|unable to rebind xen|Sending NMI using hypercall failed|^panic:|Xen directed crash|xctrl_suspend: .*fail/;

interface MigrationFacts {
  after: GuestFacts;
  before: GuestFacts | undefined;
  beforeBoot: string | undefined;
  afterBoot: string | undefined;
}

export const migration = defineProbe<MigrationFacts>({
  id: 'migration',
  claim: 'after a suspend/resume or migration: same boot, timers and IPIs still advance on every CPU, disk I/O works, no resume errors',
  sections: ['dmesg-boot', 'dmesg', 'vmstat-ia.0', 'vmstat-ia.1', 'flush', 'sysctl'],
  parse: (bundle, ctx: ProbeContext) => ({
    after: guestFacts(bundle),
    before: ctx.before ? guestFacts(ctx.before) : undefined,
    beforeBoot: ctx.before?.sections.get('dmesg-boot'),
    afterBoot: bundle.sections.get('dmesg-boot'),
  }),
  verdict({ after, before, beforeBoot, afterBoot }) {
    if (!before) return skip('no "before" bundle: the migration probe compares a bundle taken before and one after (fbxen migrate-test, or --before)');
    const x = xenGuestEvidence(after);
    if (x && !x.xen) return skip(x.reason);
    const evidence: string[] = [`before: ${before.phase}, after: ${after.phase}`];
    if (beforeBoot === undefined || afterBoot === undefined) return inconclusive('dmesg-boot missing in one bundle: cannot tell whether the guest rebooted', ...evidence);
    // Two copies of /var/run/dmesg.boot differ by a reboot only when both were read in full.
    const unread = ([['before', before], ['after', after]] as const).filter(([, g]) => (g.status.get('dmesg-boot') ?? 0) !== 0);
    if (unread.length && beforeBoot !== afterBoot) {
      return inconclusive(`dmesg-boot differs, but its section exited ${unread.map(([w, g]) => `${g.status.get('dmesg-boot')} (${w})`).join(' and ')}: cannot tell whether the guest rebooted`, ...evidence);
    }
    if (beforeBoot !== afterBoot) return fail(['dmesg.boot differs: the guest rebooted instead of resuming', ...evidence], 'the guest did not survive the migration: check the toolstack log and the console for a panic');
    evidence.push('same boot (identical dmesg.boot)');
    const beforeLines = new Set(before.dmesg ?? []);
    const newLines = (after.dmesg ?? []).filter((l) => !beforeLines.has(l));
    const bad = newLines.filter((l) => BAD_RESUME.test(l));
    if (bad.length) return fail([...bad.map((l) => `kernel after resume: ${l}`), ...evidence], 'a device refused to suspend or resume: see the kernel lines; before FreeBSD 10.3-p18/11.0-p9 (EN-17:05) migration recovery was broken');
    const resumeMarks = newLines.filter((l) => /backend features:|^XEN: Hypervisor version/.test(l));
    evidence.push(resumeMarks.length ? `resume traces: ${resumeMarks[0]}${resumeMarks.length > 1 ? ` (+${resumeMarks.length - 1})` : ''}` : 'no resume traces in dmesg (a non-verbose kernel prints few)');
    if (after.dmesg === undefined) return inconclusive('the dmesg section is missing after the migration', ...evidence);
    const t = timerTicking(after);
    if (t.verdict !== 'ok') return { ...t, evidence: [...t.evidence.map((e) => `after: ${e}`), ...evidence] };
    evidence.push(...t.evidence.map((e) => `after: ${e}`));
    const [b0, b1] = before.vmstat;
    const [a0, a1] = after.vmstat;
    const bIpi = b1 ?? b0;
    const aIpi = a1 ?? a0;
    if (bIpi && aIpi && after.ncpu && after.ncpu > 1) {
      const pre = ipiTotals(bIpi);
      const post = ipiTotals(aIpi);
      if (pre.size > 0) {
        const gone = [...pre.keys()].filter((c) => !post.has(c));
        if (gone.length && !aIpi.complete) return inconclusive(`the vmstat -ia after the migration ends before its "Total" row: the PV IPI rows of CPU ${gone.join(', ')} may just be cut off`, ...evidence);
        if (gone.length) return fail([`no PV IPI rows for CPU ${gone.join(', ')} after the migration (they were there before)`, ...evidence]);
        const stuck = [...pre.keys()].filter((c) => post.get(c)! <= pre.get(c)!);
        if (stuck.length) return fail([`PV IPI counters of CPU ${stuck.join(', ')} did not advance after the migration`, ...evidence]);
        evidence.push(`PV IPIs advanced on all ${pre.size} CPUs since before`);
      }
    }
    const rt = flushRoundTrip(after);
    if (rt.verdict === 'fail') return fail([...rt.evidence.map((e) => `disk I/O after the migration failed: ${e}`), ...evidence]);
    if (rt.verdict === 'unknown') return inconclusive(...rt.evidence.map((e) => `after the migration: ${e}`), ...evidence);
    evidence.push('disk write + fsync after the migration succeeded');
    return pass(...evidence);
  },
  requiresXen: true,
  hint: 'compare the console of the migration with the kernel lines above; FreeBSD must be 10.3-RELEASE-p18 / 11.0-RELEASE-p9 or later for reliable migration (FreeBSD-EN-17:05.xen)',
});
