/**
 * The netfront probe beyond the fixtures: evidence cut short never gives pass or fail from absence,
 * the host's knowledge decides fail versus inconclusive for a missing xn, warnings never fail, and the
 * parsers read what FreeBSD prints and nothing else (properties).
 */
import fc from 'fast-check';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readBundle, runProbes, type Bundle } from '../../src/core/verify/index.js';
import { parseIfconfig, parseKldstat, parseNetmapEvents, parseNetRt } from '../../src/probes/parsers/net.js';
import type { NetHostKnowledge } from '../../src/probes/types.js';
import { FIXTURES } from '../support/verify/fixtures.js';
import { hostNet } from './netfront-support.js';

const load = (name: string) => readBundle(join(FIXTURES, name));
const host = (name: string) => hostNet(join(FIXTURES, name))!;
const withSections = (b: Bundle, sections: Record<string, string | undefined>): Bundle => {
  const m = new Map(b.sections);
  for (const [k, v] of Object.entries(sections)) {
    if (v === undefined) m.delete(k);
    else m.set(k, v);
  }
  return { meta: { ...b.meta }, index: b.index, sections: m };
};
const nf = (b: Bundle, net?: NetHostKnowledge) => runProbes(b, { net }).results.find((r) => r.id === 'netfront')!;
const NET_SECTIONS = ['sysctl', 'dmesg-boot', 'dmesg', 'ifconfig', 'net-sysctl', 'kenv-net', 'kldstat', 'net-rt'];

describe('evidence cut short is never a verdict (properties)', () => {
  it('any netfront section of the healthy case cut at any line: never fail; pass only with the round trip\'s lines whole', async () => {
    const base = await load('13.2-netfront-healthy-derived');
    const known = host('13.2-netfront-healthy-derived');
    expect(nf(base, known).verdict).toBe('pass');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...NET_SECTIONS), fc.nat(), async (name, at) => {
        const lines = base.sections.get(name)!.split('\n');
        const k = at % lines.length;
        const head = `${lines.slice(0, k).join('\n')}\n`;
        // dmesg -a holds the same boot: cut both, as a wrapped or truncated log would be
        const cut = name.startsWith('dmesg') ? { 'dmesg-boot': head, dmesg: head } : { [name]: head };
        const r = nf(withSections(base, cut), known);
        expect({ name, k, v: r.verdict, e: r.evidence[0] }).not.toMatchObject({ v: 'fail' });
        if (name === 'net-rt' && k < lines.length - 2) expect({ name, k, v: r.verdict }).toMatchObject({ v: 'inconclusive' });
      }),
      { numRuns: 200 },
    );
  });

  it('any set of network sections missing: never fail, and pass only when the round trip, the attach and the state are all there', async () => {
    const base = await load('13.2-netfront-healthy-derived');
    const known = host('13.2-netfront-healthy-derived');
    await fc.assert(
      fc.asyncProperty(fc.subarray(NET_SECTIONS, { minLength: 1 }), async (gone) => {
        const r = nf(withSections(base, Object.fromEntries(gone.map((g) => [g, undefined]))), known);
        expect({ gone, v: r.verdict }).not.toMatchObject({ v: 'fail' });
        if (gone.includes('net-rt')) expect(r.verdict).toBe('inconclusive');
      }),
      { numRuns: 120 },
    );
  });

  it('a failing case cut at any line of its kernel messages never turns into a pass', async () => {
    const base = await load('13.2-netfront-not-connected-derived');
    const known = host('13.2-netfront-not-connected-derived');
    const boot = base.sections.get('dmesg-boot')!.split('\n');
    for (let k = 0; k <= boot.length; k++) {
      const head = `${boot.slice(0, k).join('\n')}\n`;
      expect({ k, v: nf(withSections(base, { 'dmesg-boot': head, dmesg: head }), known).verdict }).toMatchObject({ v: 'fail' });
    }
  });
});

describe('arbitrary evidence (property)', () => {
  it('any text in the network sections: the probe never crashes and never passes', async () => {
    const base = await load('13.2-healthy-derived');
    const known = host('13.2-netfront-healthy-derived');
    const line = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.constantFrom('xn0: <Virtual Network Interface> at device/vif/0 on xenbusb_front0', 'dev.xn.0.xenbus_connection_state: Connected', 'up-status 0', 'down-bytes 1048576', '\toptions=503<RXCSUM,TXCSUM,TSO4,LRO>', 'xn0: flags=8843<UP> metric 0 mtu 1500', 'not-arranged x', 'kenv: unable to get hw.xen.disable_pv_nics'),
    );
    await fc.assert(
      fc.asyncProperty(fc.record(Object.fromEntries(NET_SECTIONS.map((n) => [n, fc.array(line, { maxLength: 12 })])) as Record<string, fc.Arbitrary<string[]>>), async (secs) => {
        const b = withSections(base, Object.fromEntries(Object.entries(secs).map(([k, v]) => [k, `${v.join('\n')}\n`])));
        const r = nf(b, known);
        expect(r.evidence.join('\n')).not.toContain('could not read its evidence');
        expect(r.verdict).not.toBe('pass');
      }),
      { numRuns: 200 },
    );
  });
});

describe('what the host knows decides fail versus inconclusive', () => {
  it('the 11.1 real capture (igb0 passed through, no vif in its published config): inconclusive without a run record, skip with one that gave no vif', async () => {
    const b = await load('11.1-xl-real-dmesg');
    expect(nf(b).verdict).toBe('inconclusive');
    const r = nf(b, { source: 'run record: vif=[] (the published xl config has pci=[...] and no vif)', vifs: [] });
    expect(r.verdict).toBe('skip');
    expect(r.evidence[0]).toContain('the run gave this guest no vif');
    // its native netmap line (igb0: netmap queues/slots) is no emulated adapter
    expect(parseNetmapEvents(b.sections.get('dmesg-boot')!.split('\n'))).toEqual([]);
  });

  it('a vif given, no xn and no emulated NIC in a complete boot log: fail naming the vif', async () => {
    const b = await load('13.2-healthy-derived');
    const r = nf(b, { source: 'run r1', vifs: [{ mac: '00:16:3e:00:00:01' }] });
    expect(r.verdict).toBe('fail');
    expect(r.evidence[0]).toBe("vif 0 00:16:3e:00:00:01 (run r1) has no xn interface (sysctl: unknown oid 'dev.xn')");
  });

  it('a vif given but the boot log cut and dev.xn unread: inconclusive', async () => {
    const b = await load('13.2-disk-dmesg-cut-derived');
    const noXnSysctl = b.sections.get('sysctl')!.replace(/^sysctl: unknown oid 'dev\.xn'\n?/m, '');
    const r = nf(withSections(b, { sysctl: noXnSysctl }), { source: 'run r1', vifs: [{ mac: '00:16:3e:00:00:01' }] });
    expect(r.verdict).toBe('inconclusive');
  });

  it('the MAC the guest attached with differs from the vif\'s (matched by devid): fail', async () => {
    const b = await load('13.2-netfront-healthy-derived');
    const known = host('13.2-netfront-healthy-derived');
    const r = nf(b, { ...known, vifs: [{ mac: '00:16:3e:99:99:99', devid: 0 }] });
    expect(r.verdict).toBe('fail');
    expect(r.evidence[0]).toContain('xn0 has ether 00:16:3e:5a:01:02, but the host gave vif 0 (devid 0) 00:16:3e:99:99:99');
  });

  it('the round trip from another run\'s files, through re0, or not arranged by the host: inconclusive with the reason', async () => {
    const b = await load('13.2-netfront-healthy-derived');
    const known = host('13.2-netfront-healthy-derived');
    const rt = known.roundTrip as Extract<NetHostKnowledge['roundTrip'], { upPort: number }>;
    expect(nf(b, { ...known, roundTrip: { ...rt, upPort: 1 } }).evidence[0]).toMatch(/not this run's listener 192\.168\.122\.1 ports 1\/40002/);
    const viaRe = withSections(b, { 'net-rt': b.sections.get('net-rt')!.replace('interface: xn0', 'interface: re0') });
    const re = nf(viaRe, known);
    expect(re.verdict).toBe('inconclusive');
    expect(re.evidence[0]).toBe('the round trip went through re0, not through an xn interface: it does not show the PV network path');
    expect(nf(b, { ...known, roundTrip: { arranged: false, reason: 'no bridge address on this host' } }).evidence[0]).toBe('the host could not arrange the round trip: no bridge address on this host');
    expect(nf(b, { source: 'x', vifs: known.vifs }).verdict).toBe('inconclusive');
  });
});

describe('errors fail, warnings never do', () => {
  it('a netfront error line fails, quoted', async () => {
    const b = await load('13.2-netfront-healthy-derived');
    const err = 'xn0: Error 2 parsing /local/domain/0/backend/vif/5/0/mac';
    const r = nf(withSections(b, { dmesg: `${b.sections.get('dmesg')}${err}\n` }), host('13.2-netfront-healthy-derived'));
    expect(r.verdict).toBe('fail');
    expect(r.evidence[0]).toBe(`netfront error: ${err}`);
  });

  it('offloads off on the router: no warning; TXCSUM on an xn that is a bridge member: the warning names the bridge', async () => {
    const b = await load('14.1-netfront-offload-forwarding-derived');
    const known = host('14.1-netfront-offload-forwarding-derived');
    const off = withSections(b, { ifconfig: b.sections.get('ifconfig')!.replace('options=503<RXCSUM,TXCSUM,TSO4,LRO>', 'options=400<LRO>') });
    const r = nf(off, known);
    expect(r.verdict).toBe('pass');
    expect(r.evidence.filter((e) => e.startsWith('warning:'))).toEqual([]);
    const healthy = await load('13.2-netfront-healthy-derived');
    const bridged = withSections(healthy, { ifconfig: `${healthy.sections.get('ifconfig')}bridge0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\tether 58:9c:fc:10:ff:01\n\tmember: xn0 flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>\n` });
    const w = nf(bridged, host('13.2-netfront-healthy-derived'));
    expect(w.verdict).toBe('pass');
    expect(w.evidence[0]).toMatch(/^warning: xn0 offloads TXCSUM, TSO4 .*\(member of bridge0\).*ifconfig xn0 -txcsum -tso -lro/);
  });

  it('an emulated NIC beside xn0 with the same MAC (unplug not honoured): pass with a warning', async () => {
    const b = await load('13.2-netfront-healthy-derived');
    const twin = ['re0: <RealTek 8139C+ 10/100BaseTX> port 0xc000-0xc0ff irq 32 at device 4.0 on pci0', 're0: Ethernet address: 00:16:3e:5a:01:02'].join('\n');
    const r = nf(withSections(b, { dmesg: `${b.sections.get('dmesg')}${twin}\n` }), host('13.2-netfront-healthy-derived'));
    expect(r.verdict).toBe('pass');
    expect(r.evidence[0]).toMatch(/^warning: re0 <RealTek 8139C\+ 10\/100BaseTX> and xn0 carry the same MAC 00:16:3e:5a:01:02/);
  });

  it('netmap adapter destroyed again after one cycle: no warning; NETMAP in the options: a warning', async () => {
    const b = await load('13.2-netfront-healthy-derived');
    const known = host('13.2-netfront-healthy-derived');
    const once = '1.0 [ 324] generic_netmap_attach     Emulated adapter for xn0 created (prev was NULL)\n1.1 [ 294] generic_netmap_dtor       Emulated netmap adapter for xn0 destroyed\n';
    expect(nf(withSections(b, { dmesg: `${b.sections.get('dmesg')}${once}` }), known).evidence.filter((e) => e.startsWith('warning:'))).toEqual([]);
    const opt = withSections(b, { ifconfig: b.sections.get('ifconfig')!.replace('options=503<RXCSUM,TXCSUM,TSO4,LRO>', 'options=100503<RXCSUM,TXCSUM,TSO4,LRO,NETMAP>') });
    expect(nf(opt, known).evidence[0]).toMatch(/^warning: netmap uses its emulated \(generic\) adapter on xn0 .*: NETMAP in options/);
  });
});

describe('parsers (properties)', () => {
  const name = fc.constantFrom('xn0', 'xn1', 're0', 'em0', 'lo0', 'bridge0');
  const cap = fc.subarray(['RXCSUM', 'TXCSUM', 'TSO4', 'LRO', 'LINKSTATE', 'NETMAP']);
  const mac = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }).map((b) => b.map((x) => x.toString(16).padStart(2, '0')).join(':'));
  const ipv4 = fc.ipV4();

  it('ifconfig -a: any list of interfaces reads back (name, options, ether, inet, members), other lines ignored', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.record({ name, options: cap, ether: fc.option(mac), inet: fc.array(ipv4, { maxLength: 2 }), members: fc.subarray(['xn0', 'xn1']) }), { selector: (i) => i.name, maxLength: 5 }), (ifs) => {
        const text = ifs
          .map((i) =>
            [
              `${i.name}: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500`,
              `\toptions=${i.options.length}<${i.options.join(',')}>`,
              ...(i.ether ? [`\tether ${i.ether}`] : []),
              ...i.inet.map((a) => `\tinet ${a} netmask 0xffffff00 broadcast 10.0.0.255`),
              '\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>',
              ...i.members.map((m) => `\tmember: ${m} flags=143<LEARNING,DISCOVER,AUTOEDGE,AUTOPTP>`),
            ].join('\n'),
          )
          .join('\n');
        const got = parseIfconfig(text);
        expect(got.map((g) => ({ name: g.name, options: g.options?.names, ether: g.ether, inet: g.inet, members: g.members }))).toEqual(ifs.map((i) => ({ name: i.name, options: i.options, ether: i.ether, inet: i.inet, members: i.members })));
      }),
      { numRuns: 200 },
    );
  });

  it('net-rt: arbitrary text never throws, and a value is taken only from a whole line of its grammar', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ maxLength: 60 }), fc.constantFrom('up-status 0', 'down-bytes 12', 'down-bytes 12x', 'up-status -1', `down-sha256 ${'a'.repeat(64)}`, `down-sha256 ${'a'.repeat(63)}`, 'config host=1.2.3.4 up=1 down=2 bytes=3', 'config host=1.2.3.4 up=123456 down=2 bytes=3')), { maxLength: 20 }), (lines) => {
        const r = parseNetRt(lines.join('\n'));
        if (r.upStatus !== null) expect(lines).toContain(`up-status ${r.upStatus}`);
        if (r.downBytes !== null) expect(lines).toContain(`down-bytes ${r.downBytes}`);
        if (r.downSha256 !== null) expect(r.downSha256).toMatch(/^[0-9a-f]{64}$/);
        if (r.config) expect(r.config.up).toBeLessThan(100_000);
        expect(r.messages.length).toBeLessThanOrEqual(8);
      }),
      { numRuns: 300 },
    );
  });

  it('kldstat -v: module names with the files, compiled-in ones included; another format is no evidence', () => {
    const text = 'Id Refs Address                Size Name\n 1   23 0xffffffff80200000  1f3e2d8 kernel (/boot/kernel/kernel)\n\tContains modules:\n\t\t Id Name\n\t\t 96 netmap\n 2    1 0xffffffff82120000    5c0d8 ipfw.ko (/boot/kernel/ipfw.ko)\n';
    expect(parseKldstat(text)?.sort()).toEqual(['ipfw', 'kernel', 'netmap']);
    expect(parseKldstat('kldstat: not found\n')).toBeUndefined();
  });
});
