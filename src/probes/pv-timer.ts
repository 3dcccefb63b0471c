import { cpuList, findMessage, guestFacts, sysctlAbsent, xenGuestEvidence, type GuestFacts } from './facts.js';
import { rowsBySource } from './parsers/vmstat.js';
import { defineProbe, fail, inconclusive, pass, skip, type ProbeOutcome } from './types.js';

const ET_FLAGS_PERCPU = 4;

/** Shared with the migration probe: every CPU has a xen_et0:cN row that advanced between the two samples. */
export function timerTicking(f: GuestFacts): ProbeOutcome | { verdict: 'ok'; evidence: string[] } {
  const [v0, v1] = f.vmstat;
  if (f.ncpu === undefined) return inconclusive(`${sysctlAbsent(f, 'hw.ncpu')}: cannot tell whether every CPU has a PV timer`);
  if (!v1 && !v0) return inconclusive('vmstat -ia sections are missing: cannot see the per-CPU timer interrupts');
  const latest = (v1 ?? v0)!;
  const rows1 = rowsBySource(latest, /^xen_et0:c\d+$/);
  const missing = cpuList(f.ncpu).filter((c) => !rows1.has(`xen_et0:c${c}`));
  if (missing.length) {
    const which = latest === v1 ? 'vmstat-ia.1' : 'vmstat-ia.0';
    // Absent only when the listing reached its Total row; a cut-off listing proves nothing by what it lacks.
    if (!latest.complete) return inconclusive(`${which} ends before its "Total" row: the xen_et0:c${missing.join(', xen_et0:c')} row(s) may just be cut off`);
    return fail([`hw.ncpu: ${f.ncpu}`, `no xen_et0:c${missing.join(', xen_et0:c')} row in vmstat -ia: CPU ${missing.join(', ')} has no PV timer`]);
  }
  if (!v0 || !v1) return inconclusive('only one vmstat -ia sample: cannot tell whether the PV timers tick');
  const rows0 = rowsBySource(v0, /^xen_et0:c\d+$/);
  const stalled: string[] = [];
  const ticks: string[] = [];
  const unseen: string[] = [];
  for (const c of cpuList(f.ncpu)) {
    const a = rows0.get(`xen_et0:c${c}`)?.total;
    const b = rows1.get(`xen_et0:c${c}`)!.total;
    if (a === undefined) unseen.push(`xen_et0:c${c}`);
    else if (b <= a) stalled.push(`xen_et0:c${c} ${a} -> ${b}`);
    else ticks.push(`c${c}+${b - a}`);
  }
  if (stalled.length) return fail([`not ticking between the two samples: ${stalled.join(', ')}`]);
  // A row only in the second sample has no earlier count to compare with.
  if (unseen.length) return inconclusive(`${unseen.join(', ')} not in the first vmstat -ia sample: cannot tell whether it ticks`, ...(ticks.length ? [`ticking: ${ticks.join(' ')}`] : []));
  return { verdict: 'ok', evidence: [`xen_et0 ticks on all ${f.ncpu} CPUs: ${ticks.join(' ')}`] };
}

export const pvTimer = defineProbe<GuestFacts>({
  id: 'pv-timer',
  claim: 'XENTIMER is the event timer, per-CPU (flags include PERCPU), ticking on every CPU',
  sections: ['sysctl', 'vmstat-ia.0', 'vmstat-ia.1', 'dmesg-boot'],
  parse: (bundle) => guestFacts(bundle),
  verdict(f) {
    const x = xenGuestEvidence(f);
    if (x && !x.xen) return skip(x.reason);
    const timer = f.sysctl?.values['kern.eventtimer.timer']?.trim();
    const probeFailed = findMessage(f, /^xen_et0: (vector callbacks|HVM safe pvclock|shared info page|VCPUOPs interface) unavailable/);
    if (timer === undefined || timer === '') {
      if (timer === '' && !probeFailed) return inconclusive('kern.eventtimer.timer has an empty value in the sysctl section (the line is cut short): cannot tell the event timer');
      if (probeFailed) return fail([probeFailed]);
      return inconclusive(sysctlAbsent(f, 'kern.eventtimer.timer'));
    }
    if (timer !== 'XENTIMER') {
      const choice = f.sysctl?.values['kern.eventtimer.choice']?.trim();
      return fail([`kern.eventtimer.timer: ${timer}`, ...(choice ? [`kern.eventtimer.choice: ${choice}`] : []), ...(probeFailed ? [probeFailed] : [])]);
    }
    const evidence = ['kern.eventtimer.timer: XENTIMER'];
    const flagsText = f.sysctl?.values['kern.eventtimer.et.XENTIMER.flags']?.trim();
    if (flagsText !== undefined && /^\d+$/.test(flagsText)) {
      if ((Number(flagsText) & ET_FLAGS_PERCPU) === 0) return fail([...evidence, `kern.eventtimer.et.XENTIMER.flags: ${flagsText} (no PERCPU bit 4)`]);
      evidence.push(`kern.eventtimer.et.XENTIMER.flags: ${flagsText} (PERCPU)`);
    }
    const t = timerTicking(f);
    if (t.verdict !== 'ok') return { ...t, evidence: [...t.evidence, ...evidence] };
    return pass(...t.evidence, ...evidence);
  },
  requiresXen: true,
  hint: 'XENTIMER needs the vector callback and Xen\'s HVM safe pvclock; check dmesg for "xen_et0: ... unavailable" and do not set kern.eventtimer.timer in loader.conf/sysctl.conf',
});
