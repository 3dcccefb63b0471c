/**
 * migrate-test's network check per iteration, end to end through the real CLI entry: `fbxen boot --keep`
 * and `fbxen migrate-test` on the fake xl (a SIMULATION, test/support/fake-xl), the evidence over the fake
 * ssh (test/support/migrate/fake-ssh, a SIMULATION: the real collector and heartbeat run here under dash
 * against the FreeBSD stand-ins and the STUB nc). The guest's CD is the one boot made, read with bsdtar;
 * loopback stands in for the bridge (FBXEN_NET_LISTEN=127.0.0.1). migrate-test listens again where the
 * boot did (its net.json and net.bin) and checks the round trip, the MAC and the first byte after each resume.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { macForName } from '../../src/core/toolstack/xl/xl-config.js';
import { fbxen, makeHost, makeImage, type Host } from '../boot/harness.js';
import { guestOverSsh, NETFRONT_FIXTURE } from '../support/migrate/guest-over-ssh.js';

const FIXTURE = NETFRONT_FIXTURE;

/** Boots NAME with --keep (the guest runs its round trip at boot) and returns the run directory. */
async function bootKept(h: Host, name: string, more: string[] = []): Promise<string> {
  writeFileSync(join(h.state, 'guest.txt'), [`@collect ${FIXTURE}`, '@hang', ''].join('\n'));
  const r = await fbxen(['boot', '--image', makeImage(h, 'freebsd-13.2-RELEASE-amd64.raw'), '--name', name, '--artifacts', h.artifacts, '--run-id', 'boot-1', '--timeout', '120', '--keep', ...more], h);
  expect(r.code, r.stderr).toBe(0);
  // from now on an attached console shows nothing more (the fake replays its script on each attach)
  writeFileSync(join(h.state, 'guest.txt'), '@hang\n');
  return join(h.artifacts, name, 'boot-1');
}

type Iter = { name: string; verdict: string; reason: string; downtimeMs: number | null; network: { verdict: string; reason: string; firstByteAfterResumeMs: number | null; firstBeatAfterResumeMs?: number | null; evidence: string[] } | null; probes: { id: string; verdict: string; evidence: string[] }[] };

/** The stand-ins replay one static bundle, so pv-timer and migration fail every iteration (no counter moves): the tests look at the network; --keep-going runs both iterations anyway. */
async function migrate(h: Host, name: string, runId: string, mode: 'live' | 'save-restore', more: string[] = []) {
  // execa resolves ssh on this process's PATH
  const saved = process.env.PATH;
  process.env.PATH = h.env.PATH;
  const r = await fbxen(['migrate-test', '--domain', name, '--mode', mode, '--iterations', '2', '--evidence', 'ssh', '--ssh', 'root@guest', '--host-key-checking', 'off', '--artifacts', h.artifacts, '--run-id', runId, '--step-timeout', '60', ...more], h).finally(() => (process.env.PATH = saved));
  const dir = join(h.artifacts, name, `migrate-${runId}`);
  const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as { status: string; iterations: Iter[] };
  return { r, report, junit: readFileSync(join(dir, 'report.junit.xml'), 'utf8') };
}

describe('migrate-test: the network after each iteration (fake xl and fake ssh: SIMULATION)', () => {
  it('live x2: each iteration\'s round trip byte for byte through xn0, the MAC unchanged, the first byte after the resume next to the downtime (text, JSON, JUnit)', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    const name = 'fbxen-mig-net';
    const bootDir = await bootKept(h, name);
    const { runId } = guestOverSsh(h, name, bootDir);
    const { r, report, junit } = await migrate(h, name, runId, 'live', ['--keep-going']);
    expect(report.iterations, `${r.stdout}\n${r.stderr}`).toHaveLength(2);
    for (const it of report.iterations) {
      expect(it.network?.verdict, JSON.stringify(it.network)).toBe('ok');
      expect(it.network!.firstByteAfterResumeMs).toBeGreaterThanOrEqual(0);
      // the heartbeat's network beats: the first after the resume, stamped by the host (docs/netfront-design.md §6.5)
      expect(it.network!.firstBeatAfterResumeMs, it.network!.evidence.join('\n')).toBeGreaterThanOrEqual(0);
      expect(it.network!.evidence.join('\n')).toContain(`xn0 ether ${macForName(name)} unchanged`);
      expect(it.probes.find((p) => p.id === 'netfront')?.verdict).toBe('pass');
    }
    expect(r.stdout).toMatch(/migrate\/1 .*downtime .*\n.*\n +network ok, first byte \d+ ms after the resume/);
    expect(junit).toMatch(/network ok, first byte \d+ ms after the resume/);
  }, 240_000);

  it('the TEST-ONLY stand-in guest booted with "vif": true: its migrate-test checks the network too (was: "not checked", for every stand-in)', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    // a stand-in description (any kernel and ramdisk bytes: the fake xl only opens the kernel), as the lab's test V boots it
    writeFileSync(join(h.dir, 'vmlinuz'), 'stand-in kernel bytes');
    writeFileSync(join(h.dir, 'initrd.gz'), 'stand-in ramdisk bytes');
    writeFileSync(join(h.dir, 'standin.json'), JSON.stringify({ kernel: 'vmlinuz', ramdisk: 'initrd.gz', cmdline: 'console=hvc0', vif: true }));
    h.env.FBXEN_TEST_STANDIN_GUEST = join(h.dir, 'standin.json');
    const name = 'fbxen-mig-si';
    const bootDir = await bootKept(h, name, ['--type', 'pvh']);
    const { runId } = guestOverSsh(h, name, bootDir);
    const { r, report } = await migrate(h, name, runId, 'live', ['--keep-going']);
    expect(r.stderr).toContain('FBXEN_TEST_STANDIN_GUEST is set');
    expect(r.stderr).not.toContain('network: not checked');
    expect(report.iterations, `${r.stdout}\n${r.stderr}`).toHaveLength(2);
    for (const it of report.iterations) {
      expect(it.network?.verdict, JSON.stringify(it.network)).toBe('ok');
      expect(it.network!.evidence.join('\n')).toContain(`xn0 ether ${macForName(name)} unchanged`);
      expect(it.probes.find((p) => p.id === 'netfront')?.verdict).toBe('pass');
    }
  }, 240_000);

  it('save-restore with bytes corrupted on the way up after the boot: the iteration fails on the network (exit 1), naming the offset', async () => {
    const h = makeHost();
    h.env.FBXEN_NET_LISTEN = '127.0.0.1';
    const name = 'fbxen-mig-bad';
    const bootDir = await bootKept(h, name);
    const { runId } = guestOverSsh(h, name, bootDir, { ncEnv: { FBXEN_STUB_NC_CORRUPT_UP: '4096' } });
    const { r, report } = await migrate(h, name, runId, 'save-restore');
    const first = report.iterations[0]!;
    expect(first.verdict).toBe('fail');
    expect(first.reason).toMatch(/^probe [a-z-, ]*\bnetfront\b[a-z-, ]* failed/);
    expect(first.network?.verdict).toBe('fail');
    expect(first.network!.evidence.join('\n')).toMatch(/corrupt: byte 4096 differs/);
    expect(report.iterations).toHaveLength(1); // stops at the first failure
    expect(r.code).toBe(1);
  }, 240_000);
});
