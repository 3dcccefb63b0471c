/**
 * The xl.cfg renderer: golden files for the matrix, each one checked by the real xl parser (Debian's
 * xl -N create under the LD_PRELOAD simulation) and every disk spec by libxlutil's xlu_disk_parse;
 * hostile values are refused; property tests feed generated names and paths through the real parser.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import {
  diskSpecs,
  macForName,
  renderXlConfig,
  uuidForName,
  validateXlGuestSpec,
  type XlGuestSpec,
} from '../../src/core/toolstack/xl/xl-config.js';
import { buildXlHelpers, xlDryRun, xluDiskParse } from '../support/xl-preload/real-xl.js';

const work = mkdtempSync(join(tmpdir(), 'fbxen-xlcfg-'));
let n = 0;
function writeCfg(text: string): string {
  const p = join(work, `c${n++}.cfg`);
  writeFileSync(p, text);
  return p;
}

function spec(over: Partial<XlGuestSpec> & { name?: string } = {}): XlGuestSpec {
  const name = over.name ?? 'fbxen-test';
  return {
    name,
    uuid: uuidForName(name),
    mac: macForName(name),
    arch: 'amd64',
    release: '14.3-RELEASE',
    vcpus: 2,
    memoryMiB: 1024,
    image: { path: '/var/lib/fbxen/out/freebsd-14.3-amd64.raw', format: 'raw' },
    cdrom: { kind: 'iso', path: '/var/lib/fbxen/runs/fbxen-test/r1/fbxen-cd.iso' },
    bridge: 'xenbr0',
    ...over,
  };
}

interface Parsed {
  c_info: { type: string; name: string; uuid: string };
  b_info: { max_vcpus: number; avail_vcpus: number[]; max_memkb: number; target_memkb: number; 'type.hvm': { serial: string; nographic: string; xen_platform_pci: string; boot: string; vnc: { enable: string } } };
  disks: { vdev: string; format: string; pdev_path?: string; is_cdrom?: number; readwrite?: number; removable?: number }[];
  nics: { mac: string; bridge: string; nictype: string }[];
  on_crash: string;
  on_reboot?: string;
}

/** Asserts that real xl read exactly what the spec says. */
function expectXlReads(s: XlGuestSpec, cfgText: string): void {
  const path = writeCfg(cfgText);
  const r = xlDryRun(path);
  expect(r.unexpectedStderr, `xl complained about ${path}`).toEqual([]);
  expect(r.status).toBe(0);
  const j = r.json as Parsed;
  expect(j.c_info).toMatchObject({ type: 'hvm', name: s.name, uuid: s.uuid });
  expect(j.b_info.max_vcpus).toBe(s.vcpus);
  expect(j.b_info.avail_vcpus).toEqual([...Array(s.vcpus).keys()]);
  expect(j.b_info.max_memkb).toBe(s.memoryMiB * 1024);
  expect(j.b_info.target_memkb).toBe(s.memoryMiB * 1024);
  expect(j.b_info['type.hvm']).toMatchObject({ serial: 'pty', nographic: 'True', xen_platform_pci: 'True', boot: 'c', vnc: { enable: 'False' } });
  expect(j.on_crash).toBe('preserve');
  expect(j.on_reboot ?? 'destroy').toBe('destroy'); // xl omits fields at their default (destroy)
  expect(j.disks).toHaveLength(2);
  expect(j.disks[0]).toEqual({ pdev_path: s.image.path, vdev: 'xvda', format: s.image.format, readwrite: 1 });
  if (s.cdrom.kind === 'iso') expect(j.disks[1]).toEqual({ pdev_path: s.cdrom.path, vdev: 'hdc', format: 'raw', removable: 1, is_cdrom: 1 });
  else expect(j.disks[1]).toEqual({ vdev: 'hdc', format: 'empty', removable: 1, is_cdrom: 1 });
  expect(j.nics).toEqual([{ devid: 0, mac: s.mac, bridge: s.bridge, nictype: 'vif' }]);
}

beforeAll(() => {
  buildXlHelpers();
});

describe('golden xl.cfg matrix, each read back by the real xl parser', () => {
  const cases: { id: string; s: XlGuestSpec }[] = [];
  for (const arch of ['amd64', 'i386'] as const)
    for (const format of ['raw', 'qcow2'] as const)
      for (const cd of ['iso', 'empty'] as const)
        for (const vcpus of [1, 4]) {
          const name = `fbxen-freebsd-14.3-${arch}`;
          cases.push({
            id: `${arch}-${format}-${cd}-${vcpus}vcpu`,
            s: spec({
              name,
              uuid: uuidForName(name),
              mac: macForName(name),
              arch,
              vcpus,
              memoryMiB: arch === 'i386' ? 768 : 2048,
              image: { path: `/var/lib/fbxen/out/freebsd-14.3-RELEASE-${arch}.${format}`, format },
              cdrom: cd === 'iso' ? { kind: 'iso', path: `/var/lib/fbxen/runs/${name}/20261123T220000Z-0001/fbxen-cd.iso` } : { kind: 'empty' },
            }),
          });
        }
  // Every character a name may hold, and the longest name.
  const every = 'A-Za.z_0-9Zy';
  cases.push({ id: 'name-every-allowed-character', s: spec({ name: every, uuid: uuidForName(every), mac: macForName(every) }) });
  const longest = `x${'Ab.9_-'.repeat(10)}xyz`;
  cases.push({ id: 'name-64-characters', s: spec({ name: longest, uuid: uuidForName(longest), mac: macForName(longest) }) });
  // Paths with every allowed path character, including an inner space; `target=` is last so all survive.
  cases.push({
    id: 'path-every-allowed-character',
    s: spec({ image: { path: '/srv/Xen images/a.b_c+d@e%f~g-h/FreeBSD 14.raw', format: 'raw' }, cdrom: { kind: 'iso', path: '/tmp/x y/cd.iso' } }),
  });

  it('has 16 matrix cases plus the name and path cases', () => expect(cases).toHaveLength(19));

  for (const { id, s } of cases) {
    it(id, async () => {
      const text = renderXlConfig(s);
      await expect(text).toMatchFileSnapshot(`../../fixtures/golden/xl/${id}.cfg`);
      expect(text.endsWith('\n')).toBe(true);
      expect(text).not.toContain('\r');
      for (const line of text.split('\n')) {
        const key = /^([^#\s][^=\s]*)\s*=/.exec(line)?.[1];
        if (key) expect(key).toMatch(/^[a-z][._0-9a-z]*$/);
        expect(line).not.toMatch(/^[a-z_]+ = 0\d/); // no leading zeros: xl reads 010 as 8
      }
      expectXlReads(s, text);
      const disks = xluDiskParse(diskSpecs(s));
      expect(disks.every((d) => d.ok)).toBe(true);
    });
  }
});

describe('derived identity', () => {
  it('is stable per name and differs between names', () => {
    expect(uuidForName('a')).toBe(uuidForName('a'));
    expect(uuidForName('a')).not.toBe(uuidForName('b'));
    expect(macForName('a')).toMatch(/^00:16:3e:[0-7][0-9a-f](:[0-9a-f]{2}){2}$/);
  });
  it('gives UUIDs with the version-8 and variant bits, MACs inside the Xen OUI half libxl uses', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 64 }), (name) => {
        expect(uuidForName(name)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect(macForName(name)).toMatch(/^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
      }),
    );
  });
});

describe('hostile values are refused with a message naming the problem', () => {
  const reject = (over: Partial<XlGuestSpec>, pattern: RegExp) => {
    let err: unknown;
    try {
      validateXlGuestSpec(spec(over));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(3);
    expect((err as Error).message).toMatch(pattern);
    expect(() => renderXlConfig(spec(over))).toThrow(ConfigError);
  };
  it.each([
    ['quote', 'a"b', /name: .*a double quote: xl.cfg would need an escape/],
    ['comma', 'a,b', /name: .*a comma: xl splits disk and vif specs on commas/],
    ['equals', 'a=b', /name: .*an equals sign: xl reads "=" as a key separator/],
    ['newline', 'a\nname = "evil"', /name: .*a newline \(U\+000a\): xl.cfg strings cannot hold a line break/],
    ['non-ASCII', 'fbxen-ü', /name: .*non-ASCII character "ü"/],
    ['backslash', 'a\\b', /name: .*a backslash: xl.cfg would need an escape/],
    ['space', 'a b', /name: .*a space/],
    ['all digits', '123', /read by xl as a domain id/],
    ['migration suffix', 'a--incoming', /migration/],
    ['Domain-0', 'Domain-0', /control domain/],
    ['too long', 'a'.repeat(65), /name/],
    ['empty', '', /name/],
    ['leading dash', '-a', /name/],
  ])('name with %s', (_what, name, pattern) => reject({ name }, pattern));

  it.each([
    ['quote', '/img/a"b.raw', /image\.path: .*a double quote: xl.cfg would need an escape/],
    ['comma', '/img/a,b.raw', /image\.path: .*a comma: xl splits disk and vif specs on commas/],
    ['equals', '/img/vdev=xvdb.raw', /image\.path: .*an equals sign: xl reads "="/],
    ['newline', '/img/a\n.raw', /image\.path: .*a newline \(U\+000a\)/],
    ['non-ASCII', '/img/ß.raw', /image\.path: .*non-ASCII character "ß"/],
    ['relative', 'img/a.raw', /image\.path: must be an absolute path/],
    ['trailing space', '/img/a.raw ', /image\.path/],
    ['colon', '/img/phy:a.raw', /image\.path: .*":"/],
  ])('image path with %s', (_what, path, pattern) => reject({ image: { path, format: 'raw' } }, pattern));

  it('refuses a hostile CD path the same way', () => reject({ cdrom: { kind: 'iso', path: '/x/a,target=/etc/shadow' } }, /cdrom\.path: .*a comma/));

  it.each([
    ['comma', 'xenbr0,type=ioemu', /bridge: .*a comma/],
    ['equals', 'br=0', /bridge: .*an equals sign/],
    ['too long', 'a-very-long-bridge0', /bridge/],
    ['space', 'xen br0', /bridge: .*a space/],
  ])('bridge with %s', (_what, bridge, pattern) => reject({ bridge }, pattern));

  it.each([
    [{ vcpus: 0 }, /vcpus/],
    [{ vcpus: 1.5 }, /vcpus/],
    [{ memoryMiB: -1 }, /memoryMiB/],
    [{ memoryMiB: 64 }, /memoryMiB/],
    [{ memoryMiB: 0x7fffffff }, /memoryMiB/],
  ] as [Partial<XlGuestSpec>, RegExp][])('sizes %o', (over, pattern) => reject(over, pattern));

  it('a disk spec xl would misread is exactly what validation prevents (real xlu_disk_parse)', () => {
    // What an escaping generator would produce for image path "/a, vdev=xvdb": xl reads a different disk.
    const [bad] = xluDiskParse(['format=raw, target=/a, vdev=xvdb, vdev=xvda']);
    expect(bad?.ok).toBe(false);
  });
});

describe('properties, checked by the real parsers', () => {
  const nameArb = fc
    .tuple(fc.constantFrom(...'ABCXYZabcxyz0189'), fc.string({ unit: fc.constantFrom(...'Aa0Zz9._-'), maxLength: 40 }))
    .map(([a, b]) => (a + b).replace(/--+/g, '-'))
    .filter((s) => !/^\d+$/.test(s));
  const segment = fc.string({ unit: fc.constantFrom(...'Aa0Zz9._+@%~- '), minLength: 1, maxLength: 12 });
  const pathArb = fc
    .array(segment, { minLength: 1, maxLength: 5 })
    .map((parts) => `/${parts.join('/')}x.img`)
    .filter((p) => !p.includes('//'));

  it('every valid path reaches xl as exactly that path (xlu_disk_parse, 300 paths)', () => {
    const paths = fc.sample(pathArb, { numRuns: 300, seed: 42 });
    const specs = paths.flatMap((p) => {
      const s = validateXlGuestSpec(spec({ image: { path: p, format: 'qcow2' }, cdrom: { kind: 'iso', path: p } }));
      return diskSpecs(s);
    });
    const parsed = xluDiskParse(specs);
    expect(parsed).toHaveLength(specs.length);
    parsed.forEach((d, i) => {
      expect(d.ok, specs[i]).toBe(true);
      if (d.ok) expect(d.disk.pdev_path).toBe(paths[Math.floor(i / 2)]);
    });
  });

  it('every valid name and size renders a config real xl reads back exactly (25 full dry runs)', () => {
    fc.assert(
      fc.property(nameArb, fc.integer({ min: 1, max: 128 }), fc.integer({ min: 128, max: 65536 }), pathArb, (name, vcpus, memoryMiB, path) => {
        const s = spec({ name, uuid: uuidForName(name), mac: macForName(name), vcpus, memoryMiB, image: { path, format: 'raw' } });
        expectXlReads(s, renderXlConfig(s));
      }),
      { numRuns: 25, seed: 7 },
    );
  });

  it('any string is either refused or renders without an escape or a line break inside a value', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }), (name, path) => {
        let text: string;
        try {
          text = renderXlConfig(spec({ name, image: { path: `/${path}`, format: 'raw' } }));
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          return;
        }
        expect(text).not.toMatch(/\\/);
        expect(text.split('\n').filter((l) => l.includes('name = '))).toEqual([`name = "${name}"`]);
      }),
      { numRuns: 500 },
    );
  });
});
