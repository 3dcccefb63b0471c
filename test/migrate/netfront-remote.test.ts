/**
 * migrate-test --host ssh://... and the network check per iteration, end to end through the real CLI: `fbxen
 * boot --keep --host` then `fbxen migrate-test --host` against a real sshd on 127.0.0.1 (GatewayPorts
 * clientspecified) with the fake xl (a SIMULATION) behind it. The boot forwarded two ports of the dom0
 * bridge's address to its listener here; migrate-test forwards the same address and ports again (the guest's
 * CD names them) to a new listener here. 127.0.0.2 stands in for xenbr0's address (a stand-in `ip` on the
 * remote PATH says so; Linux answers on all of 127/8). The guest's evidence comes over the fake ssh
 * (test/support/migrate/fake-ssh, a SIMULATION: the real collector under dash against the FreeBSD stand-ins
 * and the STUB nc); every other ssh (the dom0's master, its forwards) is the real one.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { macForName } from '../../src/core/toolstack/xl/xl-config.js';
import { FAKE_XL_DIR, fbxen, makeHost, makeImage, type Host } from '../boot/harness.js';
import { guestOverSsh, NETFRONT_FIXTURE } from '../support/migrate/guest-over-ssh.js';
import { sshdMissing, startSshd, type TestSshd } from '../support/sshd.js';

const FIXTURE = NETFRONT_FIXTURE;
const BRIDGE_ADDR = '127.0.0.2';
const REAL_SSH = execFileSync('sh', ['-c', 'command -v ssh'], { encoding: 'utf8' }).trim();
const missing = sshdMissing();
const servers: TestSshd[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function dom0(h: Host): Promise<{ sshd: TestSshd; flags: string[]; migrateFlags: string[] }> {
  const dir = join(h.dir, 'dom0-bin');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'ip'), `#!/bin/sh\nif [ "$*" = "-4 -o addr show dev xenbr0" ]; then\n  printf '7: xenbr0    inet ${BRIDGE_ADDR}/8 scope host xenbr0\\n'\n  exit 0\nfi\nexec /usr/sbin/ip "$@"\n`);
  chmodSync(join(dir, 'ip'), 0o755);
  const sshd = await startSshd({ path: [FAKE_XL_DIR, dir], env: { FAKE_XL_STATE: h.state }, config: ['GatewayPorts clientspecified'] });
  servers.push(sshd);
  h.env.FBXEN_REMOTE_ROOT = join(h.dir, 'dom0-runs');
  const common = ['--host', sshd.url, '--known-hosts', sshd.knownHosts, '--toolstack', 'xl'];
  // boot's --identity is the dom0's key; migrate-test's is the guest's, the dom0's is --host-identity
  return { sshd, flags: [...common, '--identity', sshd.identity], migrateFlags: [...common, '--host-identity', sshd.identity] };
}

type Iter = { verdict: string; network: { verdict: string; reason: string; firstByteAfterResumeMs: number | null; firstBeatAfterResumeMs?: number | null; evidence: string[] } | null; probes: { id: string; verdict: string; evidence: string[] }[] };

describe.skipIf(missing)(`migrate-test --host ssh://: the network check through the ssh forward${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('live on the dom0: the round trip after the resume byte for byte through the forward of the boot\'s address and ports, the MAC unchanged', async () => {
    const h = makeHost();
    const { sshd, flags, migrateFlags } = await dom0(h);
    const name = 'fbxen-rmig';
    writeFileSync(join(h.state, 'guest.txt'), [`@collect ${FIXTURE}`, '@hang', ''].join('\n'));
    const b = await fbxen(['boot', ...flags, '--image', makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw'), '--name', name, '--artifacts', h.artifacts, '--run-id', 'boot-1', '--timeout', '120', '--keep'], h);
    expect(b.code, b.stderr).toBe(0);
    writeFileSync(join(h.state, 'guest.txt'), '@hang\n');
    const bootDir = join(h.artifacts, name, 'boot-1');
    const net = JSON.parse(readFileSync(join(bootDir, 'net.json'), 'utf8')) as { address: string; upPort: number; downPort: number };
    expect(net.address).toBe(BRIDGE_ADDR);
    // only the guest's channel is simulated: the dom0's ssh (master, forwards, xl) is the real client
    const { runId } = guestOverSsh(h, name, bootDir, { realSsh: REAL_SSH });
    const saved = process.env.PATH;
    process.env.PATH = h.env.PATH;
    const r = await fbxen(['migrate-test', ...migrateFlags, '--domain', name, '--mode', 'live', '--iterations', '1', '--keep-going', '--evidence', 'ssh', '--ssh', 'root@guest', '--host-key-checking', 'off', '--artifacts', h.artifacts, '--run-id', runId, '--step-timeout', '60'], h).finally(() => (process.env.PATH = saved));
    const report = JSON.parse(readFileSync(join(h.artifacts, name, `migrate-${runId}`, 'report.json'), 'utf8')) as { iterations: Iter[] };
    const it1 = report.iterations[0];
    expect(it1, `${r.stdout}\n${r.stderr}`).toBeDefined();
    expect(it1!.network?.verdict, JSON.stringify(it1!.network)).toBe('ok');
    expect(it1!.network!.evidence.join('\n')).toContain(`xn0 ether ${macForName(name)} unchanged`);
    const nf = it1!.probes.find((p) => p.id === 'netfront')!;
    expect(nf.verdict, nf.evidence.join('\n')).toBe('pass');
    expect(nf.evidence.join('\n')).toContain(`round trip through xn0 to ${BRIDGE_ADDR} (forwarded to fbxen by ${sshd.url}`);
    expect(r.stdout).toMatch(/network ok, first byte \d+ ms after the resume, first beat \d+ ms/);
    // the heartbeat's network beats came through a third forward of the same address
    expect(it1!.network!.firstBeatAfterResumeMs).toBeGreaterThanOrEqual(0);
    expect(it1!.network!.evidence.join('\n')).toMatch(/first network beat after the resume: \d+ ms \(beat \d+; the guest sends one every 250 ms, stamped on arrival here\)/);
  }, 240_000);
});
