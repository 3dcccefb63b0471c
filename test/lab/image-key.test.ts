import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { imageKey, LAB_PACKAGES, parseAptPolicy, type ImageInputs } from '../../src/core/lab/image-key.js';

const base: ImageInputs = {
  suite: 'bookworm',
  mirror: '',
  packages: LAB_PACKAGES,
  scripts: { 'dom0-init.sh': '#!/bin/sh\necho a\n', 'customize.sh': '#!/bin/sh\n' },
  versions: { 'xen-hypervisor-4.17-amd64': '4.17.7', 'linux-image-amd64': '6.1.192-3' },
};

describe('the lab image key', () => {
  it('is a sha256 that does not depend on the order of packages or scripts', () => {
    const k = imageKey(base);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(imageKey({ ...base, packages: [...LAB_PACKAGES].reverse(), scripts: Object.fromEntries(Object.entries(base.scripts).reverse()) })).toBe(k);
  });

  it('changes with each input: a package, a script byte, a version, the suite, the mirror', () => {
    const k = imageKey(base);
    const variants: ImageInputs[] = [
      { ...base, packages: [...LAB_PACKAGES, 'strace'] },
      { ...base, packages: LAB_PACKAGES.filter((p) => p !== 'openssh-server') },
      { ...base, scripts: { ...base.scripts, 'dom0-init.sh': '#!/bin/sh\necho b\n' } },
      { ...base, scripts: { ...base.scripts, 'other.sh': '' } },
      { ...base, versions: { ...base.versions, 'linux-image-amd64': '6.1.193-1' } },
      { ...base, versions: { ...base.versions, 'xen-hypervisor-4.17-amd64': 'unknown' } },
      { ...base, suite: 'trixie' },
      { ...base, mirror: 'http://mirror.example/debian' },
    ];
    const keys = variants.map(imageKey);
    expect(keys).not.toContain(k);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('property: bytes cannot move between a script name and its text and give the same key', () => {
    fc.assert(
      fc.property(fc.string(), fc.string({ minLength: 1 }), fc.string(), (a, b, c) => {
        expect(imageKey({ ...base, scripts: { [a + b]: c } })).not.toBe(imageKey({ ...base, scripts: { [a]: b + c } }));
      }),
      { numRuns: 300 },
    );
  });
});

describe('apt-cache policy candidates', () => {
  it('reads the candidates of real output (bookworm with security updates)', () => {
    const text = readFileSync(join(import.meta.dirname, 'fixtures/apt-policy.txt'), 'utf8');
    expect(parseAptPolicy(text)).toEqual({ 'xen-hypervisor-4.17-amd64': '4.17.7+13-g2445b30a44-0+deb12u1', 'linux-image-amd64': '6.1.192-3' });
  });

  it('leaves out a package with no candidate and lines outside a package', () => {
    expect(parseAptPolicy('  Candidate: 1.0\nfoo:\n  Installed: (none)\n  Candidate: (none)\nbar:\n  Candidate: 2.0\n')).toEqual({ bar: '2.0' });
  });

  it('property: any text gives string candidates and never throws', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.constantFrom('pkg:', '  Candidate: 1.2', 'x:', '  Candidate: (none)')), { maxLength: 40 }), (lines) => {
        const r = parseAptPolicy(lines.join('\n'));
        for (const [k, v] of Object.entries(r)) {
          expect(k).toMatch(/^[a-z0-9][a-z0-9+.-]*$/);
          expect(v).toMatch(/^\S{1,200}$/);
        }
      }),
      { numRuns: 500 },
    );
  });
});
