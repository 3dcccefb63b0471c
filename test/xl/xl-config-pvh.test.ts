/**
 * PVH xl.cfg (issue 16): golden files, each read back by the real xl parser (Debian's xl -N create under
 * the LD_PRELOAD simulation); the kernel command line checked against a model of FreeBSD's splitter
 * (sys/kern/subr_boot.c boot_parse_cmdline_delim + boot_parse_arg) with both delimiter sets FreeBSD used.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import {
  diskSpecs,
  encodePvhCmdline,
  KENV_NAME_MAX,
  KENV_VALUE_MAX,
  macForName,
  parseKernelEnvArg,
  PVH_CMDLINE_MAX,
  pvhKernelEnv,
  PVH_ROOT_MOUNTFROM,
  renderXlConfig,
  uuidForName,
  validateXlGuestSpec,
  type XlGuestSpec,
} from '../../src/core/toolstack/xl/xl-config.js';
import { buildXlHelpers, xlDryRun, xluDiskParse } from '../support/xl-preload/real-xl.js';

const work = mkdtempSync(join(tmpdir(), 'fbxen-xlcfg-pvh-'));
let n = 0;
function writeCfg(text: string): string {
  const p = join(work, `p${n++}.cfg`);
  writeFileSync(p, text);
  return p;
}

const ROOT: [string, string] = ['vfs.root.mountfrom', PVH_ROOT_MOUNTFROM];

function hvmSpec(over: Partial<XlGuestSpec> = {}): XlGuestSpec {
  const name = over.name ?? 'fbxen-pvh';
  return {
    name,
    uuid: uuidForName(name),
    mac: macForName(name),
    arch: 'amd64',
    release: '14.3-RELEASE',
    vcpus: 2,
    memoryMiB: 1024,
    image: { path: '/var/lib/fbxen/out/freebsd-14.3-amd64.raw', format: 'raw' },
    cdrom: { kind: 'iso', path: '/var/lib/fbxen/runs/fbxen-pvh/r1/fbxen-cd.iso' },
    bridge: 'xenbr0',
    ...over,
  };
}

function pvhSpec(over: Partial<XlGuestSpec> = {}, kernelEnv: [string, string][] = [ROOT]): XlGuestSpec {
  return hvmSpec({ type: 'pvh', pvh: { kernel: '/var/lib/fbxen/runs/fbxen-pvh/r1/kernel', kernelEnv }, ...over });
}

interface ParsedPvh {
  c_info: { type: string; name: string; uuid: string };
  b_info: Record<string, unknown> & { kernel?: string; cmdline?: string; ramdisk?: string; max_vcpus: number; max_memkb: number; target_memkb: number };
  disks: Record<string, unknown>[];
  nics: Record<string, unknown>[];
  on_crash: string;
  on_reboot?: string;
}

/** Asserts that real xl read a PVH guest with exactly the spec's kernel, cmdline and disks, and no HVM keys. */
function expectXlReadsPvh(s: XlGuestSpec, cfgText: string): ParsedPvh {
  const path = writeCfg(cfgText);
  const r = xlDryRun(path);
  expect(r.unexpectedStderr, `xl complained about ${path}`).toEqual([]);
  expect(r.status).toBe(0);
  const j = r.json as ParsedPvh;
  expect(j.c_info).toMatchObject({ type: 'pvh', name: s.name, uuid: s.uuid });
  expect(j.b_info.kernel).toBe(s.pvh!.kernel);
  expect(j.b_info.cmdline).toBe(encodePvhCmdline(s.pvh!.kernelEnv));
  expect(j.b_info).not.toHaveProperty('ramdisk'); // module 0 would be read as loader metadata: crash
  expect(j.b_info).not.toHaveProperty('type.hvm');
  expect(j.b_info).toHaveProperty('type.pvh');
  expect(j.b_info.max_vcpus).toBe(s.vcpus);
  expect(j.b_info.max_memkb).toBe(s.memoryMiB * 1024);
  expect(j.b_info.target_memkb).toBe(s.memoryMiB * 1024);
  expect(j.on_crash).toBe('preserve');
  expect(j.on_reboot ?? 'destroy').toBe('destroy');
  expect(j.disks).toEqual([
    { pdev_path: s.image.path, vdev: 'xvda', format: s.image.format, readwrite: 1 },
    // No is_cdrom (blkfront would drop it), no readwrite (read-only), not removable.
    { pdev_path: s.cdrom.kind === 'iso' ? s.cdrom.path : '?', vdev: 'xvdb', format: 'raw' },
  ]);
  expect(j.nics).toEqual([{ devid: 0, mac: s.mac, bridge: s.bridge, nictype: 'vif' }]);
  return j;
}

beforeAll(() => {
  buildXlHelpers();
});

describe('golden PVH xl.cfg files, each read back by the real xl parser', () => {
  const cases: { id: string; s: XlGuestSpec }[] = [];
  for (const format of ['raw', 'qcow2'] as const)
    for (const vcpus of [1, 4]) {
      const name = 'fbxen-freebsd-14.3-amd64';
      cases.push({
        id: `pvh-amd64-${format}-${vcpus}vcpu`,
        s: pvhSpec({
          name,
          uuid: uuidForName(name),
          mac: macForName(name),
          vcpus,
          memoryMiB: 2048,
          image: { path: `/var/lib/fbxen/out/freebsd-14.3-RELEASE-amd64.${format}`, format },
          cdrom: { kind: 'iso', path: `/var/lib/fbxen/runs/${name}/20261206T110000Z-0001/fbxen-cd.iso` },
          pvh: { kernel: `/var/lib/fbxen/runs/${name}/20261206T110000Z-0001/kernel`, kernelEnv: [ROOT] },
        }),
      });
    }
  // The first release with the PVH entry, and a kernel environment with the tunables a user would pass.
  cases.push({ id: 'pvh-12.0-first-release', s: pvhSpec({ release: '12.0-RELEASE' }) });
  cases.push({
    id: 'pvh-kernel-env',
    s: pvhSpec({}, [ROOT, ['boot_verbose', 'YES'], ['kern.hz', '100'], ['hw.xbd.xbd_enable_indirect', '1'], ['kern.geom.label.disk_ident.enable', '0'], ['vfs.root.mountfrom.options', 'rw']]),
  });
  cases.push({
    id: 'pvh-path-every-allowed-character',
    s: pvhSpec({ image: { path: '/srv/Xen images/a.b_c+d@e%f~g-h/FreeBSD 14.raw', format: 'raw' }, cdrom: { kind: 'iso', path: '/tmp/x y/cd.iso' }, pvh: { kernel: '/srv/my kernels/GENERIC+xen@1/kernel', kernelEnv: [ROOT] } }),
  });

  for (const { id, s } of cases) {
    it(id, async () => {
      const text = renderXlConfig(s);
      await expect(text).toMatchFileSnapshot(`../../fixtures/golden/xl/${id}.cfg`);
      expect(text.endsWith('\n')).toBe(true);
      for (const key of ['serial', 'boot', 'vnc', 'nographic', 'xen_platform_pci', 'device_model_version', 'ramdisk', 'root', 'extra', 'builder', 'firmware', 'bootloader']) {
        expect(text, `${key} has no meaning for a FreeBSD PVH DomU`).not.toMatch(new RegExp(`^${key}\\s*=`, 'm'));
      }
      expectXlReadsPvh(s, text);
      expect(xluDiskParse(diskSpecs(s)).every((d) => d.ok)).toBe(true);
    });
  }

  it('an HVM spec renders the same bytes with type hvm given or left out (the HVM goldens stand)', () => {
    const s = hvmSpec();
    expect(renderXlConfig({ ...s, type: 'hvm' })).toBe(renderXlConfig(s));
    expect(renderXlConfig(s)).toMatch(/^type = "hvm"$/m);
  });
});

describe('PVH settings xl or FreeBSD cannot use are refused, naming the problem', () => {
  const reject = (s: XlGuestSpec, pattern: RegExp) => {
    let err: unknown;
    try {
      validateXlGuestSpec(s);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(pattern);
    expect(() => renderXlConfig(s)).toThrow(ConfigError);
  };
  it('i386', () => reject(pvhSpec({ arch: 'i386' }), /arch: FreeBSD\/i386 cannot boot PVH .*use type hvm/));
  it('a release before 12.0', () => reject(pvhSpec({ release: '11.4-RELEASE' }), /release: FreeBSD 11\.4-RELEASE cannot boot PVH: 12\.0-RELEASE amd64 is the first/));
  it('an empty CD drive', () => reject(pvhSpec({ cdrom: { kind: 'empty' } }), /cdrom: an empty CD drive has no PVH meaning/));
  it('pvh without a kernel', () => reject(hvmSpec({ type: 'pvh' }), /pvh: type pvh needs the kernel/));
  it('a kernel for an HVM guest', () => reject(hvmSpec({ pvh: { kernel: '/k', kernelEnv: [ROOT] } }), /pvh: kernel and kernel environment are for type pvh only/));
  it('no root file system', () => reject(pvhSpec({}, [['boot_verbose', 'YES']]), /vfs\.root\.mountfrom is missing.*mountroot prompt/));
  it('a hostile kernel path', () => reject(pvhSpec({ pvh: { kernel: '/k"\nramdisk = "/x', kernelEnv: [ROOT] } }), /pvh\.kernel: .*a double quote/));
  it('a relative kernel path', () => reject(pvhSpec({ pvh: { kernel: 'boot/kernel', kernelEnv: [ROOT] } }), /pvh\.kernel: must be an absolute path/));
  it.each([
    ['a comma in a value', [ROOT, ['vfs.root.mountfrom.options', 'rw,noatime']], /value of "vfs\.root\.mountfrom\.options" holds a comma: FreeBSD splits the PVH cmdline on commas/],
    ['a blank in a value', [ROOT, ['kern.msg', 'a b']], /value of "kern\.msg" holds a space: FreeBSD 14\.0\+ splits the PVH cmdline on blanks/],
    ['a tab in a value', [ROOT, ['kern.msg', 'a\tb']], /a tab \(U\+0009\): FreeBSD 14\.0\+ splits/],
    ['a double quote', [ROOT, ['k', 'a"b']], /value of "k" holds a double quote/],
    ['a backslash', [ROOT, ['k', 'a\\b']], /value of "k" holds a backslash/],
    ['non-ASCII', [ROOT, ['k', 'ü']], /value of "k" holds non-ASCII character "ü"/],
    ['a control character', [ROOT, ['k', '\u0001']], /control character U\+0001/],
    ['a flag-like key', [ROOT, ['-s', '']], /key "-s" starts with "-": FreeBSD reads it as boot flags/],
    ['an equals sign in a key', [ROOT, ['a=b', 'c']], /key "a=b" is not allowed \(an equals sign/],
    ['an empty key', [ROOT, ['', 'x']], /an empty key/],
    ['a duplicate key', [ROOT, ['kern.hz', '100'], ['kern.hz', '1000']], /key "kern\.hz" is given twice/],
    ['a long key', [ROOT, ['k'.repeat(KENV_NAME_MAX + 1), '1']], /is 129 characters; FreeBSD keeps kenv names up to 128/],
    ['a long value', [ROOT, ['k', 'v'.repeat(KENV_VALUE_MAX + 1)]], /value of "k" is 129 characters/],
    ['a cmdline over the limit', [ROOT, ...Array.from({ length: 20 }, (_, i) => [`k${i}`, 'v'.repeat(120)] as [string, string])], /the cmdline is 25\d\d bytes; fbxen allows 2048/],
  ] as [string, [string, string][], RegExp][])('kernel environment with %s', (_what, env, pattern) => reject(pvhSpec({}, env), pattern));
});

/** What FreeBSD's PVH start-of-day makes of a cmdline: kenv entries in order, and the boot-flag tokens. */
function freebsdReads(cmdline: string, delimiters: string): { env: [string, string][]; flags: string[] } {
  const env: [string, string][] = [];
  const flags: string[] = [];
  // strsep on any delimiter character; empty tokens are skipped.
  for (const token of cmdline.split(new RegExp(`[${delimiters.replace(/[\\\]^-]/g, '\\$&')}]`))) {
    if (token === '') continue;
    if (token.startsWith('-')) {
      flags.push(token);
      continue;
    }
    const eq = token.indexOf('=');
    env.push(eq < 0 ? [token, '1'] : [token.slice(0, eq), token.slice(eq + 1)]);
  }
  return { env, flags };
}

/** What getenv() then answers: the first entry of each name, entries over the kenv limits dropped. */
function kenvSeen(env: [string, string][]): Map<string, string> {
  const seen = new Map<string, string>();
  for (const [k, v] of env) if (k.length <= KENV_NAME_MAX && v.length <= KENV_VALUE_MAX && !seen.has(k)) seen.set(k, v);
  return seen;
}

const DELIMITERS = [
  [',', '12.x-13.x (pv.c before c4a4011c)'],
  [', \t\n', '14.0 and later (c4a4011c)'],
] as const;

describe('the PVH cmdline encoder against FreeBSD\'s splitter (properties)', () => {
  const hostileChar = fc.constantFrom(...'aZ09._-=,: \t\n"\'\\/#$ü\u0001');
  const hostileEntry = fc.tuple(fc.string({ unit: hostileChar, maxLength: 8 }), fc.string({ unit: hostileChar, maxLength: 8 }));

  it('anything accepted is read back by FreeBSD as exactly the entries given, no flags (both splitters, 3,000 runs)', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.array(hostileEntry, { maxLength: 5 }), (entries) => {
        let text: string;
        try {
          text = encodePvhCmdline(entries);
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          return;
        }
        accepted++;
        for (const [delimiters] of DELIMITERS) {
          const read = freebsdReads(text, delimiters);
          expect(read.flags).toEqual([]);
          expect(read.env).toEqual(entries);
          expect([...kenvSeen(read.env)]).toEqual(entries);
        }
      }),
      { numRuns: 3000, seed: 16 },
    );
    expect(accepted).toBeGreaterThan(100); // the property is not met by refusing everything
  });

  it('anything a splitter would read differently is refused (3,000 runs)', () => {
    fc.assert(
      fc.property(fc.array(hostileEntry, { minLength: 1, maxLength: 4 }), (entries) => {
        const text = entries.map(([k, v]) => `${k}=${v}`).join(',');
        const misread = DELIMITERS.some(([delimiters]) => {
          const read = freebsdReads(text, delimiters);
          return read.flags.length > 0 || JSON.stringify([...kenvSeen(read.env)]) !== JSON.stringify(entries);
        });
        if (misread) expect(() => encodePvhCmdline(entries)).toThrow(ConfigError);
      }),
      { numRuns: 3000, seed: 61 },
    );
  });

  it('every key and value of the allowed alphabets is accepted up to the limits (500 runs)', () => {
    const key = fc.tuple(fc.constantFrom(...'aZ0_.'), fc.string({ unit: fc.constantFrom(...'aZ09_.-'), maxLength: KENV_NAME_MAX - 1 })).map(([a, b]) => a + b);
    const value = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)).filter((c) => !',"\'\\'.includes(c)), maxLength: KENV_VALUE_MAX });
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(key, value), { selector: ([k]) => k, maxLength: 6 }), (entries) => {
        const length = entries.reduce((l, [k, v]) => l + k.length + v.length + 2, 0);
        fc.pre(length <= PVH_CMDLINE_MAX);
        expect(encodePvhCmdline(entries)).toBe(entries.map(([k, v]) => `${k}=${v}`).join(','));
      }),
      { numRuns: 500, seed: 3 },
    );
  });

  it('accepted cmdlines reach libxl unchanged through the real xl.cfg lexer (15 dry runs)', () => {
    const value = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)).filter((c) => !',"\'\\'.includes(c)), maxLength: 40 });
    const samples = fc.sample(fc.uniqueArray(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9_.-]{0,20}$/), value), { selector: ([k]) => k, maxLength: 5 }), { numRuns: 15, seed: 9 });
    for (const extra of samples) {
      const env: [string, string][] = [ROOT, ...extra.filter(([k]) => k !== ROOT[0])];
      const s = pvhSpec({}, env);
      const j = expectXlReadsPvh(s, renderXlConfig(s));
      expect(freebsdReads(j.b_info.cmdline!, ', \t\n').env).toEqual(env);
    }
  });
});

describe('hostile kernel environments give bounded errors', () => {
  it('a 1 MiB key or value is quoted by its first 40 characters; 10,000 bad entries list 20 problems and a count', () => {
    let err: unknown;
    try {
      encodePvhCmdline([['k'.repeat(1 << 20), 'v,'.repeat(1 << 19)]]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message.length).toBeLessThan(2000);
    expect((err as Error).message).toContain(`key "${'k'.repeat(40)}"... is 1048576 characters`);
    let many: unknown;
    try {
      encodePvhCmdline(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 'a,b'] as [string, string]));
    } catch (e) {
      many = e;
    }
    expect((many as ConfigError).issues).toHaveLength(21);
    expect((many as ConfigError).issues.at(-1)).toMatch(/^and 99\d\d more problems$/);
  });
});

describe('--kernel-env and the kernel environment of a PVH boot', () => {
  it('splits KEY=VALUE at the first "=", as FreeBSD does', () => {
    expect(parseKernelEnvArg('boot_verbose=YES')).toEqual(['boot_verbose', 'YES']);
    expect(parseKernelEnvArg('k=a=b')).toEqual(['k', 'a=b']);
    expect(parseKernelEnvArg('k=')).toEqual(['k', '']);
  });
  it.each(['boot_verbose', '=x', ''])('refuses %j, naming the form', (arg) => {
    expect(() => parseKernelEnvArg(arg)).toThrow(/is not KEY=VALUE/);
  });
  it('puts fbxen\'s root first; a user\'s vfs.root.mountfrom replaces it instead of a second entry', () => {
    expect(pvhKernelEnv([])).toEqual([ROOT]);
    expect(pvhKernelEnv([['boot_verbose', 'YES']])).toEqual([ROOT, ['boot_verbose', 'YES']]);
    const mine: [string, string] = ['vfs.root.mountfrom', 'ufs:/dev/xbd0p2'];
    expect(pvhKernelEnv([['kern.hz', '100'], mine])).toEqual([mine, ['kern.hz', '100']]);
    expect(encodePvhCmdline(pvhKernelEnv([['kern.hz', '100'], mine]))).toBe('vfs.root.mountfrom=ufs:/dev/xbd0p2,kern.hz=100');
  });
});
