/**
 * `fbxen boot --keep` then `fbxen verify --domain NAME`: verify judges the netfront round trip on the record
 * the boot kept in its run (net-host.json: the vifs, the listener's uploads and downloads), as `boot
 * --verify` would have. End to end through the real CLI and the fake xl (a SIMULATION: the real collector
 * under dash against the FreeBSD stand-ins and the STUB nc); loopback stands in for the bridge
 * (FBXEN_NET_LISTEN=127.0.0.1). A damaged record is named, never a pass.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { macForName } from '../../src/core/toolstack/xl/xl-config.js';
import { fbxen, makeHost, makeImage, type Host } from './harness.js';

const FIXTURE = 'fixtures/probes/13.2-netfront-healthy-derived';
type Result = { id: string; verdict: string; evidence: string[] };

async function bootKept(h: Host, name: string, scenario?: Record<string, unknown>): Promise<string> {
  writeFileSync(join(h.state, 'guest.txt'), ['SeaBIOS (version 1.16.2-debian-1.16.2-1)', `@collect ${FIXTURE}`, '@hang', ''].join('\n'));
  if (scenario) writeFileSync(join(h.state, 'scenario.json'), JSON.stringify(scenario));
  const r = await fbxen(['boot', '--image', makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw'), '--name', name, '--artifacts', h.artifacts, '--run-id', 'boot-1', '--timeout', '120', '--keep'], h);
  expect(r.code, r.stderr).toBe(0);
  return join(h.artifacts, name, 'boot-1');
}

async function verifyDomain(h: Host, name: string): Promise<{ code: number | null; netfront: Result }> {
  const r = await fbxen(['--json', '--quiet', 'verify', '--domain', name, '--artifacts', h.artifacts], h);
  const report = JSON.parse(r.stdout) as { results: Result[] };
  return { code: r.code, netfront: report.results.find((x) => x.id === 'netfront')! };
}

describe('verify --domain after boot --keep: the netfront round trip from the boot run\'s record (fake xl: SIMULATION)', () => {
  it('a healthy round trip passes, with the vif\'s MAC matched (was inconclusive: no host record)', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    const name = 'fbxen-vd-ok';
    await bootKept(h, name);
    const { netfront } = await verifyDomain(h, name);
    expect(netfront.verdict, netfront.evidence.join('\n')).toBe('pass');
    const ev = netfront.evidence.join('\n');
    expect(ev).toContain('round trip through xn0 to 127.0.0.1: byte for byte both ways');
    expect(ev).toContain(macForName(name));
  }, 180_000);

  it('bytes dropped on the way down (scenario net.dropDown): netfront fails from the kept record', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    const name = 'fbxen-vd-drop';
    await bootKept(h, name, { net: { dropDown: 1000 } });
    const { code, netfront } = await verifyDomain(h, name);
    expect(netfront.verdict, netfront.evidence.join('\n')).toBe('fail');
    expect(netfront.evidence.join('\n')).toMatch(/download: the guest received 1000 bytes with sha256 .* \(bytes lost\)/);
    expect(code).toBe(1);
  }, 180_000);

  it('a damaged record: inconclusive naming the file, never a pass', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    const name = 'fbxen-vd-bad';
    const dir = await bootKept(h, name);
    const rec = JSON.parse(readFileSync(join(dir, 'net-host.json'), 'utf8')) as { roundTrip: { uploads: { outcome: string }[] } };
    rec.roundTrip.uploads[0]!.outcome = 'perfect';
    writeFileSync(join(dir, 'net-host.json'), JSON.stringify(rec));
    const { netfront } = await verifyDomain(h, name);
    expect(netfront.verdict).toBe('inconclusive');
    expect(netfront.evidence.join('\n')).toMatch(/the boot's network record cannot be used: .*net-host\.json is not a network record \(roundTrip/);
  }, 180_000);
});
