/**
 * `fbxen boot --host ssh://root@127.0.0.1:PORT --toolstack xl`: the whole remote path end to end
 * against a real sshd on loopback (test/support/sshd.ts: its own config, host key and authorized key)
 * with the fake xl (a SIMULATION) first on the remote PATH: the run's directory made on the host, the
 * image and CD copied, xl.cfg copied and `xl create -c` run there with the console read over the same
 * connection, the frame collected and verified, the domain shut down and the directory removed; Ctrl-C
 * destroys the remote domain; --dry-run shows every ssh, copy and xl command and touches nothing.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sshdMissing, startSshd, type TestSshd } from '../support/sshd.js';
import { domains, FAKE_XL_DIR, fbxen, makeHost, makeImage, until, writeGuest, xlCalls, type Host } from './harness.js';

const missing = sshdMissing();
const servers: TestSshd[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

async function remoteHost(): Promise<{ h: Host; sshd: TestSshd; remoteRoot: string; flags: string[] }> {
  const h = makeHost();
  const sshd = await startSshd({ path: [FAKE_XL_DIR], env: { FAKE_XL_STATE: h.state } });
  servers.push(sshd);
  const remoteRoot = join(h.dir, 'dom0-runs');
  h.env.FBXEN_REMOTE_ROOT = remoteRoot;
  return { h, sshd, remoteRoot, flags: ['--host', sshd.url, '--known-hosts', sshd.knownHosts, '--identity', sshd.identity, '--toolstack', 'xl'] };
}

describe.skipIf(missing)(`boot --host ssh:// against a real sshd${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('copies, creates, captures the console, verifies, shuts down and removes the remote run directory', async () => {
    const { h, sshd, remoteRoot, flags } = await remoteHost();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-r' });
    const r = await fbxen(['boot', ...flags, '--image', image, '--name', 'fbxen-remote', '--artifacts', h.artifacts, '--run-id', 'run-r', '--verify', '--timeout', '60'], h);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    const dir = join(h.artifacts, 'fbxen-remote', 'run-r');
    expect(JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'))).toMatchObject({ run: 'run-r' });
    // run.json names the dom0 the guest ran on by its ssh URL (the machine that ran fbxen is not it).
    expect(JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'))).toMatchObject({ host: sshd.url, outcome: 'verified' });
    expect(readFileSync(join(dir, 'console.log'), 'utf8').startsWith('SeaBIOS (version')).toBe(true); // from the first byte, over ssh
    // xl ran on the "dom0" with the copies in the run's directory there, and the config naming them.
    const hostDir = join(remoteRoot, 'run-r');
    expect(xlCalls(h)).toContainEqual(['create', '-c', join(hostDir, 'xl.cfg')]);
    const cfg = readFileSync(join(dir, 'xl.cfg'), 'utf8');
    expect(cfg).toContain(`target=${join(hostDir, 'img.raw')}`);
    expect(cfg).toContain(`target=${join(hostDir, 'fbxen-cd.iso')}`);
    expect(readFileSync(join(dir, 'transcript.log'), 'utf8')).toMatch(/exit=0 ssh .*-o BatchMode=yes/);
    // Shut down cleanly, nothing destroyed, nothing left on the host.
    expect(domains(h)).toEqual([]);
    expect(xlCalls(h).some((a) => a[0] === 'destroy')).toBe(false);
    expect(existsSync(hostDir)).toBe(false);
  });

  it('--keep: the kept domain keeps its files in the run directory on the host (a save, restore or migration opens them again)', async () => {
    const { h, remoteRoot, flags } = await remoteHost();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-k' });
    const r = await fbxen(['boot', ...flags, '--image', image, '--name', 'fbxen-kept', '--artifacts', h.artifacts, '--run-id', 'run-k', '--keep', '--timeout', '60'], h);
    expect(r.code, r.stderr).toBe(0);
    const hostDir = join(remoteRoot, 'run-k');
    expect(domains(h).map((d) => d.name)).toEqual(['fbxen-kept']);
    expect(readdirSync(hostDir).sort()).toEqual(['fbxen-cd.iso', 'img.raw', 'xl.cfg']);
  });

  it('Ctrl-C destroys the remote domain of the run and removes its directory there; exit 130', async () => {
    const { h, remoteRoot, flags } = await remoteHost();
    const image = makeImage(h, 'img.raw');
    await writeGuest(h, { run: 'run-c', frame: false, tail: ['@hang'] });
    const r = await fbxen(['boot', ...flags, '--image', image, '--name', 'fbxen-rc', '--artifacts', h.artifacts, '--run-id', 'run-c', '--timeout', '60'], h, async () => {
      await until('the remote domain to run and print', () => domains(h).some((d) => d.state === 'r') && readFileSync(join(h.artifacts, 'fbxen-rc', 'run-c', 'console.log'), 'utf8').includes('xn0'), 30_000);
      process.kill(process.pid, 'SIGINT');
    });
    expect(r.code).toBe(130);
    expect(domains(h)).toEqual([]);
    expect(xlCalls(h)).toContainEqual(['destroy', '1']);
    expect(existsSync(join(remoteRoot, 'run-c'))).toBe(false);
  });

  it('--dry-run shows every ssh, copy and xl command, and contacts nothing', async () => {
    const { h, remoteRoot, flags } = await remoteHost();
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', ...flags, '--dry-run', '--image', image, '--name', 'fbxen-plan', '--artifacts', h.artifacts, '--run-id', 'run-p'], h);
    expect(r.code).toBe(0);
    const plan = r.stdout;
    expect(plan).toMatch(/ssh .*-o ControlMaster=yes/); // the one connection
    expect(plan).toMatch(/tar --create --file=- --sparse .* \| ssh /); // the sparse copies
    expect(plan).toMatch(/ssh .* xl create -c .*dom0-runs\/run-p\/xl\.cfg/);
    expect(plan).toMatch(/ssh .* xl shutdown -w DOMID/);
    expect(plan).toMatch(/rm -rf/); // the run's directory goes at the end
    // the netfront round trip's forward from the dom0's bridge, named but not made
    expect(plan).toMatch(/netfront round trip: listen on 127\.0\.0\.1 here .*ssh -O forward -R ADDR:0:127\.0\.0\.1:PORT.*GatewayPorts clientspecified/);
    expect(plan).toContain(`target=${join(remoteRoot, 'run-p', 'img.raw')}`);
    expect(xlCalls(h)).toEqual([]);
    expect(existsSync(remoteRoot) ? readdirSync(remoteRoot) : []).toEqual([]);
    expect(existsSync(h.artifacts)).toBe(false);
  });

  it('an unpinned host key stops before anything is copied or created (exit 4), naming the fix', async () => {
    const { h, sshd } = await remoteHost();
    const image = makeImage(h, 'img.raw');
    const empty = join(h.dir, 'empty_known_hosts');
    (await import('node:fs')).writeFileSync(empty, '');
    const r = await fbxen(['boot', '--host', sshd.url, '--known-hosts', empty, '--identity', sshd.identity, '--image', image, '--name', 'fbxen-k', '--artifacts', h.artifacts, '--run-id', 'run-k'], h);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/host key is not in/);
    expect(xlCalls(h)).toEqual([]);
  });
});
