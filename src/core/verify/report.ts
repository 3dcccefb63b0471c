/**
 * Runs the probes over a bundle and renders the report: a text table, a JSON document, JUnit XML.
 * runProbes never throws on bad evidence: a probe that crashes is reported `inconclusive`.
 */
import { allProbes } from '../../probes/index.js';
import { guestFacts, xenGuestEvidence } from '../../probes/facts.js';
import type { NetHostKnowledge, ProbeContext, Verdict } from '../../probes/types.js';
import type { Bundle } from './bundle.js';
import { xmlText } from '../util/xml.js';

export interface ProbeResult {
  id: string;
  verdict: Verdict;
  evidence: string[];
  hint?: string;
}

export interface Report {
  run: string;
  phase: string;
  /** FreeBSD release ("14.1-RELEASE-p3"), or null when the bundle does not say */
  release: string | null;
  arch: string | null;
  results: ProbeResult[];
  /** TEST-ONLY: set when the guest was fbxen's stand-in (core/boot/standin-guest.ts), which replays a recorded bundle */
  standin?: string | undefined;
}

export function runProbes(bundle: Bundle, opts: { before?: Bundle | undefined; only?: readonly string[] | undefined; cdAttached?: string | undefined; net?: NetHostKnowledge | undefined; bootType?: ProbeContext['bootType'] } = {}): Report {
  const facts = guestFacts(bundle);
  const ctx = { before: opts.before, cdAttached: opts.cdAttached, net: opts.net, bootType: opts.bootType };
  const results: ProbeResult[] = [];
  for (const probe of allProbes) {
    if (opts.only && !opts.only.includes(probe.id)) continue;
    let outcome;
    try {
      outcome = probe.verdict(probe.parse(bundle, ctx), ctx);
    } catch (err) {
      outcome = { verdict: 'inconclusive' as const, evidence: [`the ${probe.id} probe could not read its evidence: ${(err as Error).message}`] };
    }
    if (outcome.verdict === 'pass' && probe.requiresXen && xenGuestEvidence(facts)?.xen !== true) {
      outcome = { verdict: 'inconclusive' as const, evidence: ['no evidence that this guest runs on Xen (kern.vm_guest, the XEN: Hypervisor version line): a pass needs it', ...outcome.evidence] };
    }
    const result: ProbeResult = { id: probe.id, verdict: outcome.verdict, evidence: boundEvidence(outcome.evidence) };
    if (outcome.verdict === 'fail') result.hint = outcome.hint ?? probe.hint;
    if (outcome.verdict === 'inconclusive') result.hint = `collect the missing evidence (sections: ${probe.sections.join(', ')})`;
    results.push(result);
  }
  return { run: facts.run, phase: facts.phase, release: facts.release?.text ?? null, arch: facts.arch ?? null, results };
}

const MAX_EVIDENCE_LINES = 50;
const MAX_EVIDENCE_CHARS = 1000;

/** Evidence quotes the guest: a report stays readable (and a JUnit file small) however much the guest wrote. */
function boundEvidence(evidence: string[]): string[] {
  const cut = evidence.slice(0, MAX_EVIDENCE_LINES).map((e) => (e.length > MAX_EVIDENCE_CHARS ? `${e.slice(0, MAX_EVIDENCE_CHARS - 3)}...` : e));
  if (evidence.length > MAX_EVIDENCE_LINES) cut.push(`(+${evidence.length - MAX_EVIDENCE_LINES} more lines of evidence)`);
  return cut;
}

/** 0: nothing failed; 1: a probe failed; 2: no answer at all (every probe inconclusive or skipped, one inconclusive). */
export function reportExitCode(report: Report): 0 | 1 | 2 {
  if (report.results.some((r) => r.verdict === 'fail')) return 1;
  const answered = report.results.some((r) => r.verdict === 'pass');
  if (!answered && report.results.some((r) => r.verdict === 'inconclusive')) return 2;
  return 0;
}

export function renderReportText(report: Report): string {
  const head = `run ${report.run} (${report.phase}) — FreeBSD ${report.release ?? 'release unknown'} ${report.arch ?? ''}`.trimEnd();
  const idW = Math.max(5, ...report.results.map((r) => r.id.length));
  const rows = report.results.map((r) => {
    const first = (r.evidence[0] ?? '').replace(/\s+/g, ' ');
    const line = `${r.id.padEnd(idW)}  ${r.verdict.toUpperCase().padEnd(12)}  ${first.length > 110 ? `${first.slice(0, 107)}...` : first}`;
    return r.hint && r.verdict === 'fail' ? `${line}\n${' '.repeat(idW + 16)}hint: ${r.hint}` : line;
  });
  const counts = (['pass', 'fail', 'inconclusive', 'skip'] as const).map((v) => `${report.results.filter((r) => r.verdict === v).length} ${v}`).join(', ');
  return [head, ...(report.standin ? [`${report.standin.toUpperCase()}: a Linux test double replayed this FreeBSD bundle; nothing here is about FreeBSD`] : []), '', `${'probe'.padEnd(idW)}  ${'verdict'.padEnd(12)}  evidence`, ...rows, '', counts, ''].join('\n');
}

export function renderReportJson(report: Report): unknown {
  return {
    run: report.run,
    phase: report.phase,
    release: report.release,
    arch: report.arch,
    ...(report.standin ? { standin: report.standin } : {}),
    results: report.results.map((r) => ({ id: r.id, verdict: r.verdict, evidence: r.evidence, hint: r.hint ?? null })),
  };
}

const xml = xmlText;

/** One testcase per probe: fail → <failure>, skip and inconclusive → <skipped> with the reason. */
export function renderJunit(report: Report): string {
  const failures = report.results.filter((r) => r.verdict === 'fail').length;
  const skipped = report.results.filter((r) => r.verdict === 'skip' || r.verdict === 'inconclusive').length;
  const suite = `fbxen verify ${report.run} ${report.phase}${report.standin ? ` (${report.standin})` : ''}`;
  const cases = report.results.map((r) => {
    const name = `<testcase classname="fbxen.verify" name="${xml(r.id)}"`;
    const body = r.evidence.join('\n');
    if (r.verdict === 'fail') {
      const message = `${r.evidence[0] ?? 'failed'}`;
      return `    ${name}>\n      <failure message="${xml(message)}" type="fail">${xml(`${body}${r.hint ? `\nhint: ${r.hint}` : ''}`)}</failure>\n    </testcase>`;
    }
    if (r.verdict === 'skip' || r.verdict === 'inconclusive') {
      return `    ${name}>\n      <skipped message="${xml(`${r.verdict}: ${r.evidence[0] ?? ''}`)}"/>\n    </testcase>`;
    }
    return `    ${name}>\n      <system-out>${xml(body)}</system-out>\n    </testcase>`;
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="fbxen" tests="${report.results.length}" failures="${failures}" skipped="${skipped}">`,
    `  <testsuite name="${xml(suite)}" tests="${report.results.length}" failures="${failures}" errors="0" skipped="${skipped}">`,
    `    <properties>\n      <property name="release" value="${xml(report.release ?? '')}"/>\n      <property name="arch" value="${xml(report.arch ?? '')}"/>\n    </properties>`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
