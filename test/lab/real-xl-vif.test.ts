/**
 * Real-xl test V: the netfront round trip through a REAL vif, netback and bridge (Debian's Xen 4.17 in the
 * lab VM, docs/lab.md). `fbxen boot --host lab --type pvh --verify` of the STAND-IN GUEST (a Linux PVH
 * TEST DOUBLE, test/lab/standin-guest.ts) with fbxen's vif ("vif": true): xl creates the vif on xenbr0 with
 * fbxen's MAC, Linux's netfront in the stand-in connects to dom0's netback, the stand-in names it xn0 and
 * takes 10.99.0.2/24, and fbxen's REAL collector runs its net-rt section through it: the payload from the
 * fbxen CD up to xenbr0's 10.99.0.1, where the real sshd forwards it to fbxen's listener, and the host's
 * payload back down. The rest of the evidence is a recorded FreeBSD bundle (13.2-netfront-healthy, its xn0
 * given the vif's MAC), so the netfront verdict weighs a replayed xn0 together with a REAL round trip:
 * what this proves is fbxen's vif, forward and round trip over real Xen networking, NOT FreeBSD's netfront.
 * Enabled by FBXEN_LAB_TESTS=1 (scripts/lab-test.sh); skipped with the reason otherwise.
 */
import { cpSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHostKnowledge } from '../../src/core/net/host-record.js';
import type { HostRoundTrip } from '../../src/core/net/roundtrip.js';
import { macForName } from '../../src/core/toolstack/xl/xl-config.js';
import { REPO } from '../support/verify/collector-harness.js';
import { bootShown, bootStandin, enabled, labConfig, labImageDir, labSh, SKIP, useLab, xlList } from './real-xl-support.js';
import { buildStandinGuest } from './standin-guest.js';

const FIXTURE = 'fixtures/probes/13.2-netfront-healthy-derived';
const FIXTURE_MAC = '00:16:3e:5a:01:02';
const NAME = 'fbxen-real-v';
const BRIDGE_ADDR = '10.99.0.1'; // scripts/lab/dom0-init.sh gives xenbr0 this address
const GUEST_IP = '10.99.0.2/24';
const MAC = macForName(NAME);
const started = Date.now();
const times: string[] = [];
const lab = useLab('real-xl-vif', NAME, ['/var/lib/fbxen/runs/real-v']);
let standin = '';

/** The fixture with its xn0 given the vif's MAC (fbxen's, from the name), as FreeBSD would print it. */
function bundleWithMac(to: string): string {
  cpSync(join(REPO, FIXTURE), to, { recursive: true });
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else writeFileSync(p, readFileSync(p, 'latin1').replaceAll(FIXTURE_MAC, MAC), 'latin1');
    }
  };
  walk(to);
  return to;
}

beforeAll(() => {
  if (!enabled) return;
  standin = buildStandinGuest({ imageDir: labImageDir(), bundleDir: bundleWithMac(join(lab.work, '13.2-netfront-healthy-derived')), out: lab.work, vif: { ip: GUEST_IP } });
});

afterAll(() => {
  if (enabled) process.stderr.write(`real-xl test V: ${times.join(', ')}; whole file ${Math.round((Date.now() - started) / 1000)} s\n`);
});

describe(`real xl in the lab: the round trip through a real vif and netback, with the stand-in guest (a Linux test double, not FreeBSD)${SKIP}`, () => {
  it.skipIf(!enabled)('boot --host lab --type pvh --verify: the vif with fbxen\'s MAC on xenbr0, the collector\'s payload up and the host\'s down through it byte for byte, netfront passes on that round trip; afterwards no domain, vif or forward', async () => {
    const artifacts = join(lab.work, 'runs');
    const dir = join(artifacts, NAME, 'real-v');
    const boot = await bootStandin(['--config', labConfig(lab.work), 'boot', '--host', 'lab', '--type', 'pvh', '--image', lab.image, '--name', NAME, '--run-id', 'real-v', '--vcpus', '1', '--memory', '256', '--timeout', '600', '--verify', '--artifacts', artifacts], standin, dir, `xl destroy ${NAME} 2>/dev/null; rm -rf /var/lib/fbxen/runs/real-v`, 'real-xl test V');
    const { r, console } = boot;
    times.push(...boot.attempts);
    const shown = bootShown(r, console);
    expect(r.code, shown).toBe(0);
    expect(r.stderr, shown).toContain('FBXEN_TEST_STANDIN_GUEST is set: booting the TEST-ONLY stand-in guest');
    // the xl.cfg the real xl took: fbxen's vif on xenbr0 with the MAC from the name
    expect(readFileSync(join(dir, 'xl.cfg'), 'utf8')).toContain(`vif = [ "mac=${MAC},bridge=xenbr0,type=vif" ]`);
    // the stand-in's Linux netfront came up with that MAC (xl wrote it to xenstore, netfront read it)
    expect(console, shown).toContain(`fbxen STAND-IN GUEST: xn0 (Linux netfront) ${MAC} up with ${GUEST_IP}`);
    expect(console).toMatch(/^FBXEN1 END real-v boot$/m);

    // the guest's side (net-rt, from the frame): its route through xn0, nc's statuses, what it downloaded
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { results: { id: string; verdict: string; evidence: string[] }[] };
    const netfront = report.results.find((x) => x.id === 'netfront')!;
    times.push(`verdicts ${report.results.map((x) => `${x.id} ${x.verdict}`).join(', ')}`);
    // what fbxen's listener got through the real sshd's forward on 10.99.0.1 (net-host.json)
    const known = await readHostKnowledge(dir);
    expect('reason' in known ? known.reason : '').toBe('');
    const host = (known as { roundTrip: HostRoundTrip }).roundTrip;
    expect(host).toMatchObject({ address: BRIDGE_ADDR, forwardedBy: expect.stringContaining('ssh forward') });
    expect(host.uploads.map((u) => [u.outcome, u.receivedBytes, u.firstDifference]), JSON.stringify(netfront)).toEqual([['complete', host.payloadBytes, null]]);
    expect(host.downloads.map((d) => [d.outcome, d.sentBytes])).toEqual([['sent', host.payloadBytes]]);
    const up = host.uploads[0]!;
    times.push(`upload ${host.payloadBytes} bytes: first byte ${up.firstByteAt! - up.connectedAt} ms after the connection, done ${up.endedAt - up.connectedAt} ms`);
    expect(netfront.evidence.join('\n'), JSON.stringify(netfront)).toContain(`round trip through xn0 to ${BRIDGE_ADDR} (forwarded to fbxen by`);
    expect(netfront.evidence.join('\n')).toMatch(new RegExp(`^download: the guest received ${host.payloadBytes} bytes, sha256 ${host.downSha256.slice(0, 16)}\\.\\.\\. = the host's payload$`, 'm'));
    expect(netfront.verdict, JSON.stringify(netfront)).toBe('pass');

    // afterwards: no domain, no vif on the bridge, no forward on 10.99.0.1, no run directory
    const after = await labSh(`ls /sys/class/net/xenbr0/brif; echo ---; ss -ltn | grep -c '${BRIDGE_ADDR}:' || true; echo ---; ls -A /var/lib/fbxen/runs`);
    const [brif, forwards, runs] = after.stdout.split('---\n');
    expect((brif ?? '').trim(), after.stdout).toBe('');
    expect((forwards ?? '').trim()).toBe('0');
    expect((runs ?? '').trim()).not.toContain('real-v');
    expect((await xlList()).has(NAME)).toBe(false);
  }, 1_900_000);
});
