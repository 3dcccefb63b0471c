import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseXlInfo, summarizeXlInfo, XL_INFO_MAX_BYTES } from '../../src/core/lab/xl-info.js';

describe('xl info', () => {
  it("summarizes the lab's real answer (Xen 4.17.7 under QEMU tcg)", () => {
    const info = parseXlInfo(readFileSync(join(import.meta.dirname, 'fixtures/xl-info-4.17.txt'), 'utf8'));
    expect(summarizeXlInfo(info)).toEqual({
      xenVersion: '4.17.7',
      nrCpus: 2,
      totalMemoryMiB: 3071,
      freeMemoryMiB: 2014,
      virtCaps: 'pv hvm hap gnttab-v1 gnttab-v2',
      xenCaps: 'xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64',
    });
    expect(info.host).toBe('fbxen-lab');
  });

  it('gives null for what is missing or not a number', () => {
    expect(summarizeXlInfo(parseXlInfo('nr_cpus : lots\nfree_memory: 12\n'))).toEqual({ xenVersion: null, nrCpus: null, totalMemoryMiB: null, freeMemoryMiB: 12, virtCaps: null, xenCaps: null });
  });

  it('property: any text parses without throwing, into bounded values, reading no more than the bound', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.constantFrom('nr_cpus : 4', 'xen_major: 4', 'a:b', ':::')), { maxLength: 50 }), (lines) => {
        const info = parseXlInfo(lines.join('\n'));
        for (const [k, v] of Object.entries(info)) {
          expect(k.length).toBeLessThanOrEqual(64);
          expect(v.length).toBeLessThanOrEqual(1024);
        }
        summarizeXlInfo(info);
      }),
      { numRuns: 500 },
    );
    const flood = `${'x'.repeat(XL_INFO_MAX_BYTES)}\nnr_cpus : 9\n`;
    expect(parseXlInfo(flood).nr_cpus).toBeUndefined();
  });
});
