/**
 * migrate-test's toolstack path on a remote dom0 (--host ssh://...): XlDriver over an SshSession to a
 * real sshd on 127.0.0.1, with the fake xl (a SIMULATION) first on the remote PATH. The domain is found,
 * its console read over the connection, migrated (new domid, the console follows it), saved into the
 * run's directory on the host and restored (the checkpoint removed there), and close() removes that
 * directory. The --dry-run plan shows the ssh lines and contacts nothing.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createExecaRunner, type CommandRecord } from '../../src/core/exec/runner.js';
import { parseHostUrl, SshSession, type SshTarget } from '../../src/core/exec/ssh.js';
import { ConsoleCapture, migrateTest, renderMigrateText } from '../../src/core/migrate/index.js';
import { silentProgress } from '../../src/core/progress.js';
import type { DomainLocation, DomainRef } from '../../src/core/toolstack/types.js';
import { XlDriver } from '../../src/core/toolstack/xl/xl-driver.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { FAKE_XL_BIN, fakeDom0 } from '../support/fake-xl/dom0.js';
import { sshdMissing, startSshd, type TestSshd } from '../support/sshd.js';

const missing = sshdMissing();
const open: Array<{ close(): Promise<void> }> = [];
const servers: TestSshd[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
  for (const s of servers.splice(0)) await s.stop();
});

const sink = (write: (chunk: Buffer) => void) => new Writable({ write: (chunk: Buffer, _e, cb) => (write(chunk), cb()) });
const ref = (where: DomainLocation | undefined): DomainRef => ({ name: where!.name, id: where!.id, host: where!.host });

async function until(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
}

/** The "dom0": the fake xl's state with domain fbxen-g running, reached through a real sshd. */
async function dom0(guest: string) {
  const { state } = fakeDom0({ prefix: 'fbxen-remote-mig-', guest });
  const sshd = await startSshd({ path: [FAKE_XL_BIN], env: { FAKE_XL_STATE: state } });
  servers.push(sshd);
  const root = join(state, 'dom0-runs');
  const commands: CommandRecord[] = [];
  const local = createExecaRunner({ onCommand: (r) => commands.push(r) });
  const session = new SshSession(parseHostUrl(sshd.url) as SshTarget, { knownHosts: sshd.knownHosts, identity: sshd.identity, remoteRoot: root }, { runner: local, env: process.env });
  const driver = new XlDriver({ runner: local, backTo: 'here', remote: { session, root, run: 'migrate-t1' } });
  open.push(driver);
  return { state, sshd, root, driver, commands };
}

describe.skipIf(missing)(`migrate-test's xl driver on a dom0 over ssh${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('finds the domain, reads its console over ssh, migrates it (the console follows), saves and restores it there', async () => {
    const { root, driver, commands } = await dom0('console line of the guest\n@hang\n');
    expect(await driver.migrationRoute('fbxen-g', 'live', 'localhost')).toEqual({ origin: 'localhost', destination: 'localhost', guestType: 'hvm' });
    const capture = new ConsoleCapture(undefined);
    const where = await driver.locate('fbxen-g');
    expect(where).toEqual({ host: 'localhost', id: '1', name: 'fbxen-g', state: 'running' });
    expect(await driver.attachConsole(ref(where), sink((c) => capture.write(c)))).toBeDefined();
    await until(() => capture.lines.length >= 1);
    const out = await driver.migrate(ref(where), 'localhost', 30_000, sink(capture.source()));
    expect(out.where).toEqual({ host: 'localhost', id: '2', name: 'fbxen-g', state: 'running' });
    await driver.attachConsole(ref(out.where), sink((c) => capture.write(c)));
    await until(() => capture.lines.length >= 2);
    expect(capture.lines.map((l) => l.text)).toEqual(['console line of the guest', 'console line of the guest']);

    const checkpoint = await driver.save(ref(out.where), '/nonexistent-local-dir', 1, 30_000);
    expect(checkpoint.file).toBe(join(root, 'migrate-t1', 'checkpoint-1.xlsave')); // on the host, not here
    expect(await driver.restore(checkpoint, 30_000)).toMatchObject({ id: '3' });
    expect(existsSync(checkpoint.file!)).toBe(false);
    // Every command went through ssh; none ran xl here.
    expect(commands.every((c) => c.command.startsWith('ssh ') || c.command.startsWith('tar '))).toBe(true);
    expect(commands.some((c) => /xl migrate -s/.test(c.command))).toBe(true);
    await driver.close();
    expect(existsSync(join(root, 'migrate-t1'))).toBe(false);
  });

  it('the report (text, JSON, JUnit) names the dom0 by its ssh URL, not localhost', async () => {
    // The guest prints no frame: the run stops at the first bundle, and the report still says where the domain is.
    const { state, sshd, root } = await dom0('@hang\n');
    const out = await migrateTest(
      { toolstack: 'xl', domain: 'fbxen-g', iterations: 1, mode: 'live', load: 'none', keepGoing: false, evidence: 'console', stepTimeoutSec: 2, artifactsRoot: join(state, 'runs'), runId: 'named-1', dryRun: false, host: { url: sshd.url, knownHosts: sshd.knownHosts, identity: sshd.identity } },
      { runner: createExecaRunner(), progress: silentProgress, signal: new AbortController().signal, cleanup: new CleanupStack(), env: { ...process.env, FBXEN_REMOTE_ROOT: root }, cwd: state },
    );
    const url = sshd.url; // ssh://root@127.0.0.1:PORT
    expect(out.report).toMatchObject({ to: url, where: { host: url, name: 'fbxen-g', state: 'running' } });
    expect(renderMigrateText(out.report!)).toContain(`on ${url}`);
    expect(renderMigrateText(out.report!)).not.toContain('localhost');
    const dir = join(state, 'runs', 'fbxen-g', 'migrate-named-1');
    expect(readFileSync(join(dir, 'report.json'), 'utf8')).toContain(url);
    expect(readFileSync(join(dir, 'report.json'), 'utf8')).not.toContain('localhost');
    expect(readFileSync(join(dir, 'report.junit.xml'), 'utf8')).not.toContain('localhost');
  });

  it('migrate-test --host --dry-run: the ssh master and xl through it, the checkpoints on the host; nothing contacted', async () => {
    const calls: string[] = [];
    const runner = {
      run: (file: string, a: readonly string[]) => (calls.push([file, ...a].join(' ')), Promise.reject(new Error('a dry run runs nothing'))),
      stream: (file: string, a: readonly string[]) => {
        calls.push([file, ...a].join(' '));
        throw new Error('a dry run runs nothing');
      },
    };
    const out = await migrateTest(
      { toolstack: 'xl', domain: 'fbxen-g', to: 'localhost', iterations: 1, mode: 'save-restore', load: 'none', keepGoing: false, evidence: 'console', stepTimeoutSec: 60, artifactsRoot: '/srv/ci/runs', runId: 'p1', dryRun: true, host: { url: 'ssh://root@dom0.example:2222' } },
      { runner, progress: silentProgress, signal: new AbortController().signal, cleanup: new CleanupStack(), env: {}, cwd: '/srv/ci' },
    );
    expect(calls).toEqual([]);
    expect(out.planText).toMatch(/ssh .*-o ControlMaster=yes .*-p 2222 -l root -- dom0\.example/);
    expect(out.planText).toMatch(/ssh .* xl save DOMID \/var\/lib\/fbxen\/runs\/migrate-p1\/checkpoint-1\.xlsave/);
    expect(existsSync('/srv/ci/runs') ? readdirSync('/srv/ci/runs') : []).toEqual([]);
  });
});
