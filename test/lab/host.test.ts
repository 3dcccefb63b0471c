/**
 * `--host lab` (and `host: lab` in fbxen.yaml) for boot, config xl and migrate-test, against a stand-in
 * lab: a node process whose command line carries the lab's `file:SERIAL` argument as QEMU's does, and a
 * state file pointing at it. The plans must show the lab's port, key and pinned known_hosts; with no lab
 * the lab's own error (exit 4, naming `fbxen lab up`). The real lab is in real-xl-hvm.test.ts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvironmentError, UsageError } from '../../src/core/errors.js';
import { resolveHostOption } from '../../src/core/lab/host.js';
import { writeLabState, type LabStateT } from '../../src/core/lab/state.js';
import { fbxen, makeHost, makeImage, xlCalls } from '../boot/harness.js';
import { fakeLabDir, standInQemu, stopStandIns } from './fake-lab.js';

afterEach(stopStandIns);

/** A lab directory; `running` writes a ready state for a stand-in QEMU on port 40123. */
async function lab(dir: string, running: boolean): Promise<LabStateT> {
  const { state } = fakeLabDir(40123, dir);
  if (running) await writeLabState(join(dir, 'state.json'), { ...state, pid: (await standInQemu(state.serialLog)).pid! });
  return state;
}

describe('resolveHostOption', () => {
  it('leaves no host and an ssh:// host as they are', async () => {
    expect(await resolveHostOption(undefined, {})).toBeUndefined();
    const h = { url: 'ssh://root@dom0.example', knownHosts: 'kh', identity: 'id' };
    expect(await resolveHostOption(h, { labDir: '/nonexistent' })).toBe(h);
  });

  it('turns lab into the running lab: ssh://root@127.0.0.1:PORT with its key and known_hosts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-host-'));
    const state = await lab(dir, true);
    expect(await resolveHostOption({ url: 'lab' }, { labDir: dir })).toEqual({ url: 'ssh://root@127.0.0.1:40123', knownHosts: state.knownHostsFile, identity: state.identityFile, labDir: dir });
  });

  it("gives the lab's error when none runs, and refuses a key or known_hosts of the user's next to lab", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-host-'));
    await expect(resolveHostOption({ url: 'lab' }, { labDir: dir })).rejects.toThrow(EnvironmentError);
    await expect(resolveHostOption({ url: 'lab' }, { labDir: dir })).rejects.toThrow(`no lab runs in ${dir}`);
    await expect(resolveHostOption({ url: 'lab', knownHosts: 'kh' }, { labDir: dir })).rejects.toThrow(UsageError);
    await expect(resolveHostOption({ url: 'lab', identity: 'id' }, { labDir: dir, flags: { knownHosts: '--known-hosts', identity: '--host-identity' } })).rejects.toThrow(/--host-identity has no meaning with --host lab/);
  });
});

describe('the commands with --host lab', () => {
  it('boot --dry-run: the plan reaches the lab on its port with its key and known_hosts; nothing runs', async () => {
    const h = makeHost();
    const labDir = join(h.dir, 'cache', 'fbxen', 'lab'); // the default lab directory under XDG_CACHE_HOME
    const state = await lab(labDir, true);
    h.env.XDG_CACHE_HOME = join(h.dir, 'cache');
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--host', 'lab', '--dry-run', '--image', image, '--name', 'fbxen-lab', '--artifacts', h.artifacts, '--run-id', 'run-l'], h);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ssh .*-o ControlMaster=yes .*-p 40123 -l root -- 127\.0\.0\.1/);
    expect(r.stdout).toContain(`UserKnownHostsFile=${state.knownHostsFile}`);
    expect(r.stdout).toContain(state.identityFile);
    expect(r.stdout).toMatch(/ssh .* xl create -c /);
    expect(xlCalls(h)).toEqual([]);
  });

  it("host: lab in fbxen.yaml with lab: dir: - migrate-test --dry-run plans on that lab", async () => {
    const h = makeHost();
    const labDir = join(h.dir, 'my-lab');
    await lab(labDir, true);
    const config = join(h.dir, 'fbxen.yaml');
    writeFileSync(config, `lab:\n  dir: ${labDir}\nmigrate-test:\n  host: lab\n`);
    const r = await fbxen(['--config', config, 'migrate-test', '--domain', 'fbxen-g', '--mode', 'save-restore', '--dry-run', '--run-id', 'p1', '--artifacts', h.artifacts], h);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/ssh .*-o ControlMaster=yes .*-p 40123 -l root -- 127\.0\.0\.1/);
    expect(r.stdout).toMatch(/ssh .* xl save DOMID \S*migrate-p1\/checkpoint-1\.xlsave/);
  });

  it('with no lab running: exit 4 naming fbxen lab up, for boot, config xl and migrate-test', async () => {
    const h = makeHost();
    await lab(join(h.dir, 'cache', 'fbxen', 'lab'), false);
    h.env.XDG_CACHE_HOME = join(h.dir, 'cache');
    const image = makeImage(h, 'img.raw');
    const config = join(h.dir, 'fbxen.yaml');
    writeFileSync(config, 'boot:\n  host: lab\n');
    for (const args of [
      ['boot', '--host', 'lab', '--dry-run', '--image', image, '--artifacts', h.artifacts],
      ['--config', config, 'config', 'xl', '--image', image], // config xl takes the host from boot: in fbxen.yaml
      ['migrate-test', '--host', 'lab', '--domain', 'fbxen-g', '--dry-run', '--artifacts', h.artifacts],
    ]) {
      const r = await fbxen(args, h);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(4);
      expect(r.stderr).toMatch(/no lab runs in .*fbxen lab up/s);
    }
  });

  it('--host lab with --known-hosts is a usage error (exit 2): the lab pins its own host key', async () => {
    const h = makeHost();
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['boot', '--host', 'lab', '--known-hosts', '/dev/null', '--dry-run', '--image', image, '--artifacts', h.artifacts], h);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--known-hosts has no meaning with --host lab/);
  });
});
