/**
 * The migrate-test report: one entry per iteration (migrate/1, migrate/2, ...) with its verdict, the
 * downtime next to the toolstack's time, the clock offsets, the probe results and where the domain is;
 * a min/median/max summary; JSON, JUnit (a testcase per iteration and per probe) and an SVG chart.
 */
import type { ProbeResult } from '../verify/index.js';
import type { DowntimeEstimate } from './heartbeat.js';
import type { DomainLocation, GuestLoad, MigrateMode } from './types.js';
import { xmlText } from '../util/xml.js';

export type IterationVerdict = 'pass' | 'fail' | 'inconclusive' | 'error';

export interface IterationResult {
  name: string;
  verdict: IterationVerdict;
  /** why, in one line (the failing probe, the toolstack error) */
  reason: string;
  downtimeMs: number | null;
  downtime: DowntimeEstimate | null;
  toolstackMs: number | null;
  clockOffsetMs: { before: number | null; after: number | null };
  probes: ProbeResult[];
  where: DomainLocation | null;
  /** --load disk|all: write + fsync + read-back rounds during the iteration, and how many differed */
  disk: { rounds: number; bad: number } | null;
  /** the network after the iteration (network-check.ts); absent when the iteration got that far */
  network?: IterationNetwork | null | undefined;
}

/** The network check of one iteration: the round trip after the resume, the MAC, the first byte's time. */
export interface IterationNetwork {
  verdict: 'ok' | 'fail' | 'unknown' | 'not-arranged';
  /** the first line of the evidence, or why no round trip was arranged */
  reason: string;
  /** ms from the end of the migration (host clock) to the first byte of the guest's next upload; an upper bound of the network gap */
  firstByteAfterResumeMs: number | null;
  /** ms from the end of the migration to the first network beat the guest's heartbeat sent that reached the host (net/beats.ts); null: none came, absent: no beats arranged */
  firstBeatAfterResumeMs?: number | null | undefined;
  evidence: string[];
  hint?: string | undefined;
}

const netText = (n: IterationNetwork | null | undefined) =>
  n ? `network ${n.verdict}${n.firstByteAfterResumeMs !== null ? `, first byte ${n.firstByteAfterResumeMs} ms after the resume` : ''}${typeof n.firstBeatAfterResumeMs === 'number' ? `, first beat ${n.firstBeatAfterResumeMs} ms` : ''}${n.verdict === 'ok' ? '' : ` (${n.reason})`}` : '';

export interface MigrateReport {
  run: string;
  toolstack: 'xl' | 'xapi';
  domain: string;
  mode: MigrateMode;
  to: string;
  load: GuestLoad;
  /** 'skip' when the preflight found migration impossible here (not a failure) */
  status: 'pass' | 'fail' | 'skip' | 'error' | 'inconclusive';
  skipReason: string | null;
  /** the error that stopped the run before its first iteration (status error or inconclusive), else null */
  stopReason: string | null;
  iterations: IterationResult[];
  summary: { iterations: number; passed: number; downtimeMs: { min: number; median: number; max: number } | null; toolstackMs: { min: number; median: number; max: number } | null };
  /** where the domain is at the end */
  where: DomainLocation | null;
  artifactsDir: string;
}

function stats(xs: number[]): { min: number; median: number; max: number } | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0]!, median: Math.round(median * 10) / 10, max: s.at(-1)! };
}

export function summarize(iterations: IterationResult[]): MigrateReport['summary'] {
  return {
    iterations: iterations.length,
    passed: iterations.filter((i) => i.verdict === 'pass').length,
    downtimeMs: stats(iterations.flatMap((i) => (i.downtimeMs === null ? [] : [i.downtimeMs]))),
    toolstackMs: stats(iterations.flatMap((i) => (i.toolstackMs === null ? [] : [i.toolstackMs]))),
  };
}

/** 0 every iteration passed (or skipped); 1 a probe or an iteration said no; 2 no answer. */
export function migrateExitCode(r: MigrateReport): 0 | 1 | 2 {
  if (r.status === 'skip' || r.status === 'pass') return 0;
  if (r.status === 'fail') return 1;
  return 2;
}

export function overallStatus(iterations: IterationResult[]): MigrateReport['status'] {
  if (iterations.some((i) => i.verdict === 'fail')) return 'fail';
  if (iterations.some((i) => i.verdict === 'error')) return 'error';
  if (iterations.some((i) => i.verdict === 'inconclusive') || iterations.length === 0) return 'inconclusive';
  return 'pass';
}

/** The most of a reason the report keeps: a toolstack's stderr can run to pages. */
export const MAX_REASON_CHARS = 2000;

/**
 * A message as one line for the report and JUnit: its lines joined (" | ", or a space after a line that
 * ends in ":"), control bytes dropped, and at most MAX_REASON_CHARS, keeping the head (what failed) and
 * the tail (where a toolstack prints its verdict, e.g. "Migration failed, resuming at sender.").
 */
export function oneLine(message: string, max = MAX_REASON_CHARS): string {
  const lines = message
    .split(/\r?\n|\r/)
    .map((l) => l.replace(/[\x00-\x1f\x7f]/g, '').trim())
    .filter((l) => l.length > 0);
  let out = '';
  lines.forEach((l, i) => (out += i === 0 ? l : lines[i - 1]!.endsWith(':') ? ` ${l}` : ` | ${l}`));
  if (out.length <= max) return out;
  const cut = ' […] ';
  const head = Math.floor((max - cut.length) / 3);
  return `${out.slice(0, head)}${cut}${out.slice(out.length - (max - cut.length - head))}`;
}

const loc = (l: DomainLocation | null) => (l ? `${l.name} (${l.id}) ${l.state} on ${l.host}${l.note ? `; ${l.note}` : ''}` : 'nowhere (vanished)');
const ms = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `${x} ms`);

export function renderMigrateText(r: MigrateReport): string {
  const head = `migrate-test ${r.run}: ${r.domain} via ${r.toolstack}, ${r.mode}${r.mode === 'live' ? ` to ${r.to}` : ''}, load ${r.load}`;
  if (r.status === 'skip') return `${head}\nSKIPPED: ${r.skipReason}\n`;
  if (r.stopReason !== null && r.iterations.length === 0) return `${head}\n${r.status.toUpperCase()} before the first iteration: ${r.stopReason}\nthe domain is now: ${loc(r.where)}\nartifacts: ${r.artifactsDir}\n`;
  const rows = r.iterations.map((i) => {
    const d = i.downtime;
    const dt = i.downtimeMs === null ? '-' : `${i.downtimeMs} ms${d?.uncertaintyMs !== null && d?.uncertaintyMs !== undefined ? ` ±${d.uncertaintyMs}` : d ? ' (upper bound)' : ''}`;
    const off = `${ms(i.clockOffsetMs.before)} → ${ms(i.clockOffsetMs.after)}`;
    const disk = i.disk ? `  disk ${i.disk.rounds} rounds, ${i.disk.bad} bad` : '';
    const net = i.network ? `\n${' '.repeat(13)}${netText(i.network)}` : '';
    return `${i.name.padEnd(12)} ${i.verdict.toUpperCase().padEnd(12)} downtime ${dt.padEnd(18)} toolstack ${ms(i.toolstackMs).padEnd(10)} clock ${off}${disk}\n${' '.repeat(13)}${i.reason}${net}`;
  });
  const s = r.summary;
  const sum = s.downtimeMs ? `downtime min/median/max: ${s.downtimeMs.min}/${s.downtimeMs.median}/${s.downtimeMs.max} ms` : 'downtime: not measured';
  const ts = s.toolstackMs ? `toolstack min/median/max: ${s.toolstackMs.min}/${s.toolstackMs.median}/${s.toolstackMs.max} ms` : '';
  return [head, '', ...rows, '', `${s.passed}/${s.iterations} iterations passed; ${sum}${ts ? `; ${ts}` : ''}`, `the domain is now: ${loc(r.where)}`, `artifacts: ${r.artifactsDir}`, ''].join('\n');
}

export function renderMigrateJson(r: MigrateReport): unknown {
  return {
    run: r.run,
    toolstack: r.toolstack,
    domain: r.domain,
    mode: r.mode,
    to: r.to,
    load: r.load,
    status: r.status,
    skipReason: r.skipReason,
    stopReason: r.stopReason,
    iterations: r.iterations.map((i) => ({
      name: i.name,
      verdict: i.verdict,
      reason: i.reason,
      downtimeMs: i.downtimeMs,
      downtime: i.downtime,
      toolstackMs: i.toolstackMs,
      clockOffsetMs: i.clockOffsetMs,
      probes: i.probes.map((p) => ({ id: p.id, verdict: p.verdict, evidence: p.evidence, hint: p.hint ?? null })),
      where: i.where,
      disk: i.disk,
      network: i.network ?? null,
    })),
    summary: r.summary,
    where: r.where,
    artifactsDir: r.artifactsDir,
  };
}

const xml = xmlText;

/** A testcase per iteration (its downtime as the time) and one per probe of that iteration. */
export function renderMigrateJunit(r: MigrateReport): string {
  const cases: string[] = [];
  let failures = 0;
  let errors = 0;
  let skipped = 0;
  const tc = (classname: string, name: string, seconds: number | null, body: string) =>
    `    <testcase classname="${xml(classname)}" name="${xml(name)}"${seconds !== null ? ` time="${seconds.toFixed(3)}"` : ''}>\n${body}    </testcase>`;
  if (r.status === 'skip') {
    skipped++;
    cases.push(tc('fbxen.migrate', 'preflight', null, `      <skipped message="${xml(r.skipReason ?? '')}"/>\n`));
  } else if (r.stopReason !== null && r.iterations.length === 0) {
    // Stopped before any iteration: an error testcase, also for no answer (a skipped testcase would
    // read as green where nothing was tested).
    const message = r.status === 'inconclusive' ? `inconclusive: ${r.stopReason}` : r.stopReason;
    errors++;
    cases.push(tc('fbxen.migrate', 'preflight', null, `      <error message="${xml(message)}" type="${r.status === 'inconclusive' ? 'inconclusive' : 'error'}">${xml(r.stopReason)}</error>\n`));
  }
  for (const i of r.iterations) {
    const props = `downtime ${ms(i.downtimeMs)}${i.downtime?.uncertaintyMs !== undefined && i.downtime?.uncertaintyMs !== null ? ` ±${i.downtime.uncertaintyMs} ms` : ''}, toolstack ${ms(i.toolstackMs)}, clock offset ${ms(i.clockOffsetMs.before)} → ${ms(i.clockOffsetMs.after)}${i.disk ? `, disk read-back ${i.disk.rounds} rounds, ${i.disk.bad} bad` : ''}${i.network ? `, ${netText(i.network)}` : ''}, domain: ${loc(i.where)}`;
    let body: string;
    if (i.verdict === 'fail') {
      failures++;
      body = `      <failure message="${xml(i.reason)}" type="fail">${xml(props)}</failure>\n`;
    } else if (i.verdict === 'error') {
      errors++;
      body = `      <error message="${xml(i.reason)}" type="error">${xml(props)}</error>\n`;
    } else if (i.verdict === 'inconclusive') {
      skipped++;
      body = `      <skipped message="${xml(`inconclusive: ${i.reason}`)}"/>\n`;
    } else body = `      <system-out>${xml(props)}</system-out>\n`;
    cases.push(tc('fbxen.migrate', i.name, i.toolstackMs !== null ? i.toolstackMs / 1000 : null, body));
    for (const p of i.probes) {
      let pb: string;
      if (p.verdict === 'fail') {
        failures++;
        pb = `      <failure message="${xml(p.evidence[0] ?? 'failed')}" type="fail">${xml(`${p.evidence.join('\n')}${p.hint ? `\nhint: ${p.hint}` : ''}`)}</failure>\n`;
      } else if (p.verdict === 'skip' || p.verdict === 'inconclusive') {
        skipped++;
        pb = `      <skipped message="${xml(`${p.verdict}: ${p.evidence[0] ?? ''}`)}"/>\n`;
      } else pb = `      <system-out>${xml(p.evidence.join('\n'))}</system-out>\n`;
      cases.push(tc(`fbxen.migrate.${i.name.replace('/', '-')}`, p.id, null, pb));
    }
  }
  const n = cases.length;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="fbxen" tests="${n}" failures="${failures}" errors="${errors}" skipped="${skipped}">`,
    `  <testsuite name="${xml(`fbxen migrate-test ${r.run} ${r.domain}`)}" tests="${n}" failures="${failures}" errors="${errors}" skipped="${skipped}">`,
    `    <properties>\n      <property name="toolstack" value="${r.toolstack}"/>\n      <property name="mode" value="${r.mode}"/>\n      <property name="to" value="${xml(r.to)}"/>\n      <property name="load" value="${r.load}"/>\n    </properties>`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

/** Downtime per iteration as a bar chart (SVG 1.1, no script, no external reference). */
export function renderDowntimeSvg(r: MigrateReport): string {
  const W = 640;
  const H = 320;
  const left = 64;
  const right = 16;
  const top = 40;
  const bottom = 48;
  const its = r.iterations;
  const values = its.map((i) => i.downtimeMs ?? 0);
  const maxV = Math.max(10, ...its.map((i) => (i.downtimeMs ?? 0) + (i.downtime?.uncertaintyMs ?? 0)));
  // A "nice" axis maximum: 1, 2 or 5 times a power of ten.
  const pow = 10 ** Math.floor(Math.log10(maxV));
  const axisMax = [1, 2, 5, 10].map((k) => k * pow).find((v) => v >= maxV)!;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const slot = plotW / Math.max(1, its.length);
  const barW = Math.max(2, Math.min(48, slot * 0.6));
  const y = (v: number) => top + plotH - (v / axisMax) * plotH;
  const colour: Record<IterationVerdict, string> = { pass: '#2e7d32', fail: '#c62828', inconclusive: '#9e9e9e', error: '#ef6c00' };
  const parts: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `  <title>${xml(`migration downtime per iteration: ${r.domain} (${r.toolstack}, ${r.mode})`)}</title>`,
    `  <text x="${W / 2}" y="20" text-anchor="middle" font-size="13">${xml(`Downtime per iteration — ${r.domain}, ${r.toolstack} ${r.mode}`)}</text>`,
    `  <line x1="${left}" y1="${top + plotH}" x2="${W - right}" y2="${top + plotH}" stroke="#000"/>`,
    `  <line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#000"/>`,
  ];
  for (let k = 0; k <= 5; k++) {
    const v = (axisMax * k) / 5;
    parts.push(`  <line x1="${left - 4}" y1="${y(v).toFixed(1)}" x2="${W - right}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`  <text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Math.round(v)}</text>`);
  }
  parts.push(`  <text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">downtime (ms)</text>`);
  its.forEach((it, k) => {
    const cx = left + slot * (k + 0.5);
    const v = values[k]!;
    const measured = it.downtimeMs !== null;
    parts.push(
      `  <rect x="${(cx - barW / 2).toFixed(1)}" y="${y(v).toFixed(1)}" width="${barW.toFixed(1)}" height="${(top + plotH - y(v)).toFixed(1)}" fill="${measured ? colour[it.verdict] : 'none'}" stroke="${colour[it.verdict]}"><title>${xml(`${it.name}: ${measured ? `${v} ms` : 'not measured'} (${it.verdict})`)}</title></rect>`,
    );
    const u = it.downtime?.uncertaintyMs;
    if (measured && u) parts.push(`  <line x1="${cx.toFixed(1)}" y1="${y(v + u).toFixed(1)}" x2="${cx.toFixed(1)}" y2="${y(Math.max(0, v - u)).toFixed(1)}" stroke="#000"/>`);
    if (its.length <= 40) parts.push(`  <text x="${cx.toFixed(1)}" y="${top + plotH + 14}" text-anchor="middle">${k + 1}</text>`);
  });
  parts.push(`  <text x="${left + plotW / 2}" y="${H - 12}" text-anchor="middle">iteration</text>`, '</svg>', '');
  return parts.join('\n');
}

/**
 * The report with the dom0 fbxen drove named `dom0` (its ssh URL) where the driver calls it 'localhost':
 * on a remote dom0, 'localhost' would read as the machine that ran fbxen. Unchanged without `dom0`.
 */
export function nameDom0(r: MigrateReport, dom0: string | undefined): MigrateReport {
  if (dom0 === undefined || dom0 === 'localhost') return r;
  const host = (h: string) => (h === 'localhost' ? dom0 : h);
  const at = <T extends { host: string } | null>(l: T): T => (l ? { ...l, host: host(l.host) } : l);
  return { ...r, to: host(r.to), where: at(r.where), iterations: r.iterations.map((i) => ({ ...i, where: at(i.where) })) };
}
