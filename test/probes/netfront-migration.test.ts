/**
 * netAcrossMigration: what migrate-test will call after each iteration (issue 18, design §6.4), on the
 * healthy netfront fixture as "before" and edited copies as "after".
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readBundle, type Bundle } from '../../src/core/verify/index.js';
import type { HostRoundTrip } from '../../src/core/net/roundtrip.js';
import { firstByteAfterResume, netAcrossMigration } from '../../src/probes/netfront-migration.js';
import { FIXTURES } from '../support/verify/fixtures.js';
import { hostNet } from './netfront-support.js';

const NAME = '13.2-netfront-healthy-derived';
const edit = (b: Bundle, sections: Record<string, string>): Bundle => ({ meta: { ...b.meta, phase: 'post-migrate-1' }, index: b.index, sections: new Map([...b.sections, ...Object.entries(sections)]) });
const reconnect = (b: Bundle) => ({ dmesg: `${b.sections.get('dmesg')}xn0: backend features: feature-sg feature-gso-tcp4\n` });

describe('the network across a migration', () => {
  it('same xn0, same MAC, reconnected, round trip byte for byte after the resume: ok, with the time to the first byte', async () => {
    const before = await readBundle(join(FIXTURES, NAME));
    const net = hostNet(join(FIXTURES, NAME))!;
    const rt = net.roundTrip as HostRoundTrip;
    const r = netAcrossMigration(before, edit(before, reconnect(before)), { net, resumedAt: rt.uploads[0]!.connectedAt - 1500 });
    expect(r.verdict).toBe('ok');
    expect(r.firstByteAfterResumeMs).toBe(1502);
    expect(r.evidence).toEqual(expect.arrayContaining(['xn0 ether 00:16:3e:5a:01:02 unchanged', 'xn0 reconnected: 1 new "backend features:" line(s) after the resume', 'first byte after the resume: 1502 ms (from 192.168.122.50:61234)']));
  });

  it('the MAC changed: fail naming both', async () => {
    const before = await readBundle(join(FIXTURES, NAME));
    const after = edit(before, { ...reconnect(before), ifconfig: before.sections.get('ifconfig')!.replace('ether 00:16:3e:5a:01:02', 'ether 00:16:3e:77:77:77') });
    const r = netAcrossMigration(before, after, { net: hostNet(join(FIXTURES, NAME)) });
    expect(r.verdict).toBe('fail');
    expect(r.evidence[0]).toBe('xn0 ether 00:16:3e:5a:01:02 before, 00:16:3e:77:77:77 after');
  });

  it('xn0 gone from an ifconfig listing after the resume: fail; with no network sections after: unknown', async () => {
    const before = await readBundle(join(FIXTURES, NAME));
    const lo = before.sections.get('ifconfig')!.slice(before.sections.get('ifconfig')!.indexOf('lo0:'));
    const noXn = (s: string) => s.split('\n').filter((l) => !/^(xn0|dev\.xn)/.test(l)).join('\n');
    const gone = edit(before, { ifconfig: lo, 'dmesg-boot': noXn(before.sections.get('dmesg-boot')!), dmesg: noXn(before.sections.get('dmesg')!), sysctl: noXn(before.sections.get('sysctl')!) });
    expect(netAcrossMigration(before, gone).evidence[0]).toBe('xn0 (device/vif/0) was there before the migration and is gone after it');
    const silent: Bundle = { meta: { ...before.meta }, index: before.index, sections: new Map([...before.sections].filter(([k]) => !['ifconfig', 'dmesg', 'dmesg-boot', 'sysctl', 'net-rt'].includes(k))) };
    expect(netAcrossMigration(before, silent).verdict).toBe('unknown');
  });

  it('no new features line but the round trip is right after the resume: ok with a note (dmesg -a may have wrapped)', async () => {
    const before = await readBundle(join(FIXTURES, NAME));
    const r = netAcrossMigration(before, edit(before, {}), { net: hostNet(join(FIXTURES, NAME)) });
    expect(r.verdict).toBe('ok');
    expect(r.evidence).toContain('note: xn0: no new "backend features:" line after the resume (netfront did not reconnect, or dmesg -a wrapped)');
  });

  it('the state not Connected after the resume: fail; no round trip record: unknown', async () => {
    const before = await readBundle(join(FIXTURES, NAME));
    const stuck = edit(before, { sysctl: before.sections.get('sysctl')!.replace('xenbus_connection_state: Connected', 'xenbus_connection_state: Initialising') });
    expect(netAcrossMigration(before, stuck, { net: hostNet(join(FIXTURES, NAME)) })).toMatchObject({ verdict: 'fail', evidence: expect.arrayContaining(['dev.xn.0.xenbus_connection_state: Initialising (not Connected)']) });
    expect(netAcrossMigration(before, edit(before, reconnect(before))).verdict).toBe('unknown');
  });

  it('firstByteAfterResume takes the first upload that connected after the resume', () => {
    const up = (connectedAt: number, firstByteAt: number | null) => ({ peer: 'p', connectedAt, firstByteAt, endedAt: 0, expectedBytes: 1, receivedBytes: 1, firstDifference: null, outcome: 'complete' as const, detail: '' });
    const rt = { uploads: [up(100, 101), up(200, null), up(300, 350)] } as unknown as HostRoundTrip;
    expect(firstByteAfterResume(rt, 150)).toEqual({ ms: 200, peer: 'p' });
    expect(firstByteAfterResume(rt, 400)).toBeNull();
  });
});
