/**
 * `fbxen boot --verify` and the netfront round trip, end to end through the real CLI entry and the fake xl
 * (a SIMULATION, test/support/fake-xl): the guest stand-in runs the real rc.d script and collector from the
 * CD fbxen made (read back with bsdtar) against FreeBSD stand-ins and a STUB nc, and sends to the listener
 * boot opened. Loopback stands in for the bridge (FBXEN_NET_LISTEN=127.0.0.1): the fake /sys/class/net's
 * xenbr0 is no interface of this machine, so without it the bridge has no address.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { xapiNetKnowledge } from '../../src/core/boot/network-check.js';
import { macForName } from '../../src/core/toolstack/xl/xl-config.js';
import { readBundle, runProbes } from '../../src/core/verify/index.js';
import { domains, fbxen, makeHost, makeImage, REPO, type Host } from './harness.js';

const FIXTURE = 'fixtures/probes/13.2-netfront-healthy-derived';

function guest(h: Host, extra: Record<string, unknown> = {}) {
  writeFileSync(join(h.state, 'guest.txt'), ['SeaBIOS (version 1.16.2-debian-1.16.2-1)', 'Booting from Hard Disk...', `@collect ${FIXTURE}`, '@sleep 50', ''].join('\n'));
  if (Object.keys(extra).length) writeFileSync(join(h.state, 'scenario.json'), JSON.stringify(extra));
}

type Result = { id: string; verdict: string; evidence: string[]; hint: string | null };
async function bootVerify(h: Host, name: string, run: string) {
  const image = makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw');
  const r = await fbxen(['boot', '--image', image, '--name', name, '--artifacts', h.artifacts, '--run-id', run, '--timeout', '120', '--verify'], h);
  const dir = join(h.artifacts, name, run);
  const report = existsSync(join(dir, 'report.json')) ? (JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { results: Result[] }) : undefined;
  return { r, dir, netfront: report?.results.find((x) => x.id === 'netfront'), junit: existsSync(join(dir, 'report.junit.xml')) ? readFileSync(join(dir, 'report.junit.xml'), 'utf8') : '' };
}

/** Whether the listener's ports were released: a listen on the same port succeeds. */
async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

describe('boot --verify: the netfront round trip through the fake xl (SIMULATION)', () => {
  it('a healthy round trip: netfront passes, byte for byte both ways through xn0 with the vif\'s MAC; the listener is closed afterwards', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    guest(h);
    const { r, dir, netfront } = await bootVerify(h, 'fbxen-net-ok', 'run-net-ok');
    expect(netfront, r.stderr).toBeDefined();
    expect(netfront!.verdict, netfront!.evidence.join('\n')).toBe('pass');
    const ev = netfront!.evidence.join('\n');
    expect(ev).toContain('round trip through xn0 to 127.0.0.1: byte for byte both ways');
    expect(ev).toContain(macForName('fbxen-net-ok'));
    // the files the guest read are on the CD fbxen made, and kept in the run for migrate-test
    const net = JSON.parse(readFileSync(join(dir, 'net.json'), 'utf8')) as { address: string; upPort: number; downPort: number; payloadBytes: number };
    expect(net).toMatchObject({ address: '127.0.0.1', payloadBytes: 1 << 20 });
    expect(readFileSync(join(dir, 'net.bin')).length).toBe(1 << 20);
    expect(await portFree(net.upPort)).toBe(true);
    expect(await portFree(net.downPort)).toBe(true);
    expect(domains(h)).toEqual([]);
  }, 180_000);

  it('a corrupted upload (the stub nc flips byte 70000): netfront fails at that offset, exit 1, the JUnit file says so', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    guest(h, { net: { corruptUp: 70000 } });
    const { r, netfront, junit } = await bootVerify(h, 'fbxen-net-bad', 'run-net-bad');
    expect(netfront!.verdict, netfront!.evidence.join('\n')).toBe('fail');
    expect(netfront!.evidence[0]).toMatch(/^upload from 127\.0\.0\.1:\d+: corrupt: byte 70000 differs/);
    expect(junit).toMatch(/<testcase classname="fbxen.verify" name="netfront">\s*<failure message="upload from 127\.0\.0\.1/);
    expect(r.code).toBe(1);
  }, 180_000);

  it('bytes lost on the way down (scenario net.dropDown: the stub nc keeps 4096 of them): netfront fails naming the loss and the offload hint, exit 1', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    guest(h, { net: { dropDown: 4096 } });
    const { r, netfront } = await bootVerify(h, 'fbxen-net-drop', 'run-net-drop');
    expect(netfront!.verdict, netfront!.evidence.join('\n')).toBe('fail');
    expect(netfront!.evidence[0]).toMatch(/^download: the guest received 4096 bytes with sha256 [0-9a-f]{16}\.\.\., the host sent 1048576 bytes with sha256 [0-9a-f]{16}\.\.\. \(bytes lost\)$/);
    expect(netfront!.hint).toContain('-txcsum');
    // the upload was whole: only the way down is blamed
    expect(netfront!.evidence.join('\n')).toMatch(/upload: 1048576 bytes from 127\.0\.0\.1:\d+ identical to the payload/);
    expect(r.code).toBe(1);
  }, 180_000);

  it('a guest that never sends its frame (timeout, exit 6): the listener is closed all the same, its ports free again', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    writeFileSync(join(h.state, 'guest.txt'), 'SeaBIOS (version 1.16.2-debian-1.16.2-1)\n@hang\n');
    const r = await fbxen(['boot', '--image', makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw'), '--name', 'fbxen-net-hang', '--artifacts', h.artifacts, '--run-id', 'run-net-hang', '--timeout', '2', '--verify'], h);
    expect(r.code).toBe(6);
    const net = JSON.parse(readFileSync(join(h.artifacts, 'fbxen-net-hang', 'run-net-hang', 'net.json'), 'utf8')) as { upPort: number; downPort: number };
    expect(await portFree(net.upPort)).toBe(true);
    expect(await portFree(net.downPort)).toBe(true);
    expect(domains(h)).toEqual([]);
  }, 60_000);

  it('no address on the bridge: no listener, no /fbxen/net on the CD; netfront inconclusive with the reason, never a pass', async () => {
    const h = makeHost();
    guest(h);
    const { dir, netfront } = await bootVerify(h, 'fbxen-net-none', 'run-net-none');
    expect(netfront!.verdict).toBe('inconclusive');
    expect(netfront!.evidence.join('\n')).toContain('no /fbxen/net on the fbxen medium');
    expect(netfront!.evidence.join('\n')).toContain('the host: the bridge xenbr0 has no IPv4 address on this host');
    expect(existsSync(join(dir, 'net.json'))).toBe(false);
  }, 180_000);
});

describe('XAPI: what boot tells the netfront probe (xapiNetKnowledge)', () => {
  it('no listener for a pool guest: inconclusive with both reasons (the guest found no files, the host says why), never a pass', async () => {
    const b = await readBundle(join(REPO, FIXTURE));
    b.sections.set('net-rt', 'not-arranged no /fbxen/net on the fbxen medium and no --net-dir (this run arranged no round trip)\n');
    const r = runProbes(b, { net: xapiNetKnowledge('Lab network', 'fbxen boot run r (XAPI)') }).results.find((x) => x.id === 'netfront')!;
    expect(r.verdict).toBe('inconclusive');
    expect(r.evidence[0]).toMatch(/the host: XAPI: the VIF is on the pool network Lab network, and fbxen, outside the pool, has no address there/);
  });
});
