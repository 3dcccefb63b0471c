/**
 * Property tests of the section parsers and probes: arbitrary input never throws, and unknown input is
 * never `pass` (a pass needs positive evidence).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIndex, parseMeta, runProbes, type Bundle } from '../../src/core/verify/index.js';
import { parseSysctl } from '../../src/probes/parsers/sysctl.js';
import { parseCamDevlist, parseCdromSection, parseConftxt, parseCpuidSection, parseFlushSection, parseRelease, parseUname } from '../../src/probes/parsers/text-sections.js';
import { parseVmstat } from '../../src/probes/parsers/vmstat.js';

const SECTIONS = ['uname', 'freebsd-version', 'sysctl', 'conftxt', 'dmesg-boot', 'dmesg', 'vmstat-ia.0', 'vmstat-ia.1', 'camcontrol-devlist', 'cdrom', 'flush', 'cpuid-xen'];

// Text shaped like FreeBSD output but with random names and values: "a.b: c", "irqN: x  1  2", "<...> at scbus".
const lineish = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.tuple(fc.stringMatching(/^[a-z][a-z0-9_]{0,6}(\.[A-Za-z0-9_%]{1,6}){1,3}$/), fc.string({ maxLength: 30 })).map(([k, v]) => `${k}: ${v}`),
  fc.tuple(fc.nat(999), fc.string({ maxLength: 12 }), fc.nat(), fc.nat()).map(([i, s, a, b]) => `irq${i}: ${s}   ${a}   ${b}`),
  fc.tuple(fc.string({ maxLength: 20 }), fc.nat(9)).map(([d, n]) => `<${d}>  at scbus${n} target 0 lun 0 (cd${n},pass${n})`),
  fc.constantFrom('write-status 0', 'kernel-messages-begin', 'kernel-messages-end', 'cd0 read-status 0', 'cpuid level 0x40000000: 0x1 0x2 0x3 0x4', 'Total 5 5'),
);
const text = fc.array(lineish, { maxLength: 40 }).map((l) => l.join('\n'));

describe('parsers on arbitrary input (property)', () => {
  it('never throw', () => {
    const parsers: ((t: string) => unknown)[] = [parseSysctl, parseVmstat, parseUname, parseConftxt, parseCamDevlist, parseCdromSection, parseFlushSection, parseCpuidSection, parseMeta, parseIndex, (t) => parseRelease(t)];
    fc.assert(
      fc.property(fc.oneof(text, fc.string({ maxLength: 2000 })), (t) => {
        for (const p of parsers) p(t);
      }),
      { numRuns: 400 },
    );
  });

  it('probes over arbitrary sections never throw and never pass', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...SECTIONS), fc.oneof(text, fc.string({ maxLength: 500 }))), fc.boolean(), (sections, withBefore) => {
        const bundle: Bundle = { meta: { bundle: 'fbxen-bundle/1', run: 'r', phase: 'p' }, index: [], sections: new Map(Object.entries(sections)) };
        const before: Bundle | undefined = withBefore ? { meta: { bundle: 'fbxen-bundle/1' }, index: [], sections: new Map(Object.entries(sections)) } : undefined;
        const report = runProbes(bundle, { before });
        for (const r of report.results) {
          expect(r.verdict).not.toBe('pass');
          expect(r.evidence.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('vmstat rows round trip: any name, any counts', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.stringMatching(/^(irq[0-9]{1,3}: )?[a-z][a-z0-9_]{0,8}(:[a-z0-9]{1,4})?$/), fc.nat(), fc.nat()), { maxLength: 30 }),
        (rows) => {
          const t = ['interrupt                          total       rate', ...rows.map(([n, a, b]) => `${n.padEnd(30)} ${String(a).padStart(12)} ${String(b).padStart(10)}`), 'Total 1 1'].join('\n');
          const parsed = parseVmstat(t);
          expect(parsed.rows.map((r) => [r.name, r.total])).toEqual(rows.map(([n, a]) => [n, a]));
        },
      ),
    );
  });

  it('sysctl lines round trip: names with %, dots and empty values', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_]{0,6}(\.[A-Za-z0-9_%]{1,6}){1,4}$/), fc.stringMatching(/^[^\n]{0,40}$/)), (kv) => {
        const t = Object.entries(kv).map(([k, v]) => `${k}: ${v}`).join('\n');
        const parsed = parseSysctl(t);
        for (const [k, v] of Object.entries(kv)) expect(parsed.values[k]).toBe(v);
      }),
    );
  });
});
