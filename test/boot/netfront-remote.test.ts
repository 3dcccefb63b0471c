/**
 * `fbxen boot --host ssh://... --verify` and the netfront round trip on a remote xl dom0: a real sshd on
 * 127.0.0.1 (test/support/sshd.ts) with the fake xl (a SIMULATION) behind it; the guest stand-in runs the real
 * collector and a STUB nc. The listener is on this machine's loopback and the run's ssh master forwards
 * two ports of the dom0 bridge's IPv4 to it (-O forward -R). 127.0.0.2 stands in for the bridge's address:
 * the fake dom0's xenbr0 is no interface of this machine, so a stand-in `ip` on the remote PATH says
 * xenbr0 has 127.0.0.2/8 (Linux answers on all of 127/8, so sshd can bind it); `ss` is the real one.
 * With sshd's default GatewayPorts (no) the forward lands on 127.0.0.1 instead: fbxen sees it and the
 * round trip is not arranged, naming the fix; with `GatewayPorts clientspecified` it passes.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sshdMissing, startSshd, type TestSshd } from '../support/sshd.js';
import { domains, FAKE_XL_DIR, fbxen, makeHost, makeImage, type Host } from './harness.js';

const FIXTURE = 'fixtures/probes/13.2-netfront-healthy-derived';
const BRIDGE_ADDR = '127.0.0.2';
const missing = sshdMissing();
const servers: TestSshd[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

/** The stand-in `ip`: xenbr0's address for the one query fbxen makes, the real ip for anything else. */
function standinIp(h: Host): string {
  const dir = join(h.dir, 'dom0-bin');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'ip'),
    `#!/bin/sh\nif [ "$*" = "-4 -o addr show dev xenbr0" ]; then\n  printf '7: xenbr0    inet ${BRIDGE_ADDR}/8 scope host xenbr0\\\\       valid_lft forever preferred_lft forever\\n'\n  exit 0\nfi\nexec /usr/sbin/ip "$@"\n`,
  );
  chmodSync(join(dir, 'ip'), 0o755);
  return dir;
}

async function remoteBoot(name: string, run: string, config: string[]) {
  const h = makeHost();
  const sshd = await startSshd({ path: [FAKE_XL_DIR, standinIp(h)], env: { FAKE_XL_STATE: h.state }, config });
  servers.push(sshd);
  h.env.FBXEN_REMOTE_ROOT = join(h.dir, 'dom0-runs');
  writeFileSync(join(h.state, 'guest.txt'), ['SeaBIOS (version 1.16.2-debian-1.16.2-1)', 'Booting from Hard Disk...', `@collect ${FIXTURE}`, '@sleep 50', ''].join('\n'));
  const image = makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw');
  const flags = ['--host', sshd.url, '--known-hosts', sshd.knownHosts, '--identity', sshd.identity, '--toolstack', 'xl'];
  const r = await fbxen(['boot', ...flags, '--image', image, '--name', name, '--artifacts', h.artifacts, '--run-id', run, '--timeout', '120', '--verify'], h);
  const dir = join(h.artifacts, name, run);
  const report = existsSync(join(dir, 'report.json')) ? (JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { results: { id: string; verdict: string; evidence: string[] }[] }) : undefined;
  return { h, sshd, r, dir, netfront: report?.results.find((x) => x.id === 'netfront') };
}

/** Whether nothing listens on address:port any more (a listen there succeeds). */
function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

describe.skipIf(missing)(`boot --host ssh:// --verify: the round trip through an ssh remote forward${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('GatewayPorts clientspecified: the forward binds the bridge address, netfront passes byte for byte; the forward is gone afterwards', async () => {
    const { sshd, r, dir, netfront, h } = await remoteBoot('fbxen-rnet', 'run-rnet', ['GatewayPorts clientspecified']);
    expect(netfront, r.stderr).toBeDefined();
    expect(netfront!.verdict, netfront!.evidence.join('\n')).toBe('pass');
    expect(netfront!.evidence.join('\n')).toContain(`round trip through xn0 to ${BRIDGE_ADDR} (forwarded to fbxen by ${sshd.url} (ssh forward: first-byte times include ssh's latency)): byte for byte both ways`);
    expect(r.code).toBe(0);
    // the CD named the dom0's address and the ports sshd allocated; the run keeps them for migrate-test
    const net = JSON.parse(readFileSync(join(dir, 'net.json'), 'utf8')) as { address: string; upPort: number; downPort: number; forward: unknown };
    expect(net).toMatchObject({ address: BRIDGE_ADDR, forward: { host: sshd.url, bridge: 'xenbr0' } });
    expect(readFileSync(join(dir, 'transcript.log'), 'utf8')).toMatch(/ssh -o ClearAllForwardings=no .* -O forward -R 127\.0\.0\.2:0:127\.0\.0\.1:\d+/);
    expect(await portFree(net.upPort, BRIDGE_ADDR)).toBe(true);
    expect(await portFree(net.downPort, BRIDGE_ADDR)).toBe(true);
    expect(domains(h)).toEqual([]);
  }, 180_000);

  it("sshd's default GatewayPorts: the forward lands on loopback, so no round trip: netfront inconclusive naming the fix, the boot goes on", async () => {
    const { r, dir, netfront, h } = await remoteBoot('fbxen-rnet-gw', 'run-rnet-gw', []);
    expect(netfront, r.stderr).toBeDefined();
    expect(netfront!.verdict).toBe('inconclusive');
    const ev = netfront!.evidence.join('\n');
    expect(ev).toMatch(/bound the forward to 127\.0\.0\.1 and ::1 port \d+, not to the bridge's 127\.0\.0\.2/);
    expect(ev).toContain('GatewayPorts clientspecified');
    // nothing arranged: no files for migrate-test, the frame collected and verified all the same
    expect(existsSync(join(dir, 'net.json'))).toBe(false);
    expect(JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'))).toMatchObject({ outcome: 'verified' });
    expect(domains(h)).toEqual([]);
  }, 180_000);
});
