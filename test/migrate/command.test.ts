/**
 * `fbxen migrate-test` through the commander program (src/program.ts → src/commands/migrate-test.ts):
 * option validation, and the exact --dry-run plans as golden files (fixtures/migrate/plan-*.txt).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CommandContext, GlobalOptions } from '../../src/commands/context.js';
import { UsageError } from '../../src/core/errors.js';
import { silentProgress } from '../../src/core/progress.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { createProgram } from '../../src/program.js';
import type { Runner } from '../../src/core/exec/runner.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { advanced, fixturePair } from '../support/migrate/bundles.js';
import { SimXl } from '../support/migrate/sim-xl.js';

const REPO = join(import.meta.dirname, '../..');
const GOLDEN = join(REPO, 'fixtures/migrate');

async function fbxen(args: string[], env: NodeJS.ProcessEnv = {}, runner?: Runner, cwd = '/srv/ci', globalArgs: string[] = []): Promise<{ human: string; json: unknown; calls: string[] }> {
  const out = { human: '', json: undefined as unknown, calls: [] as string[] };
  const make = (globals: GlobalOptions): CommandContext => ({
    globals,
    progress: silentProgress,
    runner: runner ?? {
      run: (file, a) => (out.calls.push([file, ...a].join(' ')), Promise.reject(new Error('a dry run runs nothing'))),
      stream: (file, a) => {
        out.calls.push([file, ...a].join(' '));
        throw new Error('a dry run runs nothing');
      },
    },
    signal: new AbortController().signal,
    cleanup: new CleanupStack(),
    configSection: () => ({}),
    result: (human, json) => {
      out.human = human;
      out.json = json;
    },
    env,
    cwd,
  });
  await createProgram(make).parseAsync([...globalArgs, 'migrate-test', ...args], { from: 'user' });
  return out;
}

const norm = (s: string) => s.split(REPO).join('<fbxen>');
const XAPI_ENV = { FBXEN_XAPI_URL: 'https://xcp-master.example', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'Secret-Pa55' };

describe('fbxen migrate-test --dry-run (golden plans)', () => {
  it('xl, live to localhost, x3, console evidence', async () => {
    const r = await fbxen(['--domain', 'fbxen-14', '--iterations', '3', '--run-id', 'golden1', '--dry-run', '--load', 'cpu']);
    expect(r.calls).toEqual([]);
    await expect(norm(r.human)).toMatchFileSnapshot(join(GOLDEN, 'plan-xl-live-localhost-x3.txt'));
  });

  it('xl, live to another host and back, ssh evidence', async () => {
    const r = await fbxen(['--domain', 'fbxen-14', '--to', 'dom0-b', '--back-to', 'dom0-a', '--iterations', '2', '--ssh', 'root@192.0.2.10', '--run-id', 'golden2', '--dry-run', '--step-timeout', '120']);
    await expect(norm(r.human)).toMatchFileSnapshot(join(GOLDEN, 'plan-xl-live-remote-ssh.txt'));
  });

  it('xl, save-restore', async () => {
    const r = await fbxen(['--domain', 'fbxen-14', '--mode', 'save-restore', '--iterations', '1', '--run-id', 'golden3', '--dry-run', '--load', 'disk']);
    await expect(norm(r.human)).toMatchFileSnapshot(join(GOLDEN, 'plan-xl-save-restore.txt'));
  });

  it('xapi, live with storage motion, contacts nothing and shows no secret', async () => {
    const r = await fbxen(['--toolstack', 'xapi', '--domain', 'fbxen-14', '--to', 'xcp-host-2', '--dest-sr', 'NFS storage', '--iterations', '2', '--run-id', 'golden4', '--dry-run'], XAPI_ENV);
    expect(r.calls).toEqual([]);
    expect(r.human).not.toContain('Secret-Pa55');
    await expect(norm(r.human)).toMatchFileSnapshot(join(GOLDEN, 'plan-xapi-live-dest-sr.txt'));
  });
});

describe('--dry-run refuses what the run refuses (xapi)', () => {
  const args = ['--toolstack', 'xapi', '--domain', 'fbxen-14', '--to', 'xcp-host-2', '--dry-run'];
  it('incomplete credentials', async () => {
    await expect(fbxen(args, { FBXEN_XAPI_PASSWORD: 'Secret-Pa55' })).rejects.toThrow(/XAPI credentials are incomplete/);
  });
  it('plain http without --insecure-http', async () => {
    await expect(fbxen(args, { ...XAPI_ENV, FBXEN_XAPI_URL: 'http://xcp-master.example' })).rejects.toThrow(/http/);
    const r = await fbxen([...args, '--insecure-http'], { ...XAPI_ENV, FBXEN_XAPI_URL: 'http://xcp-master.example' });
    expect(r.calls).toEqual([]);
  });
  it('an unreadable --ca-file', async () => {
    await expect(fbxen([...args, '--ca-file', '/nonexistent/pool-ca.pem'], XAPI_ENV)).rejects.toThrow(/the CA file \/nonexistent\/pool-ca.pem cannot be read/);
  });
});

describe('option validation', () => {
  it('names the flag and the fix', async () => {
    await expect(fbxen(['--iterations', '3'])).rejects.toThrow(UsageError);
    await expect(fbxen(['--domain', 'd', '--evidence', 'ssh'])).rejects.toThrow(/--evidence: ssh needs --ssh user@host/);
    await expect(fbxen(['--domain', 'd', '--iterations', '0'])).rejects.toThrow(/--iterations/);
    await expect(fbxen(['--domain', 'd', '--mode', 'save-restore', '--to', 'h2'])).rejects.toThrow(/save-restore stays on this host/);
    await expect(fbxen(['--domain', 'd', '--dest-sr', 'x'])).rejects.toThrow(/only with --toolstack xapi/);
    await expect(fbxen(['--domain', 'bad name'])).rejects.toThrow(/--domain/);
  });

  it('refuses a console channel for a domain that will live on another host', async () => {
    await expect(fbxen(['--domain', 'd', '--to', 'dom0-b', '--dry-run'])).rejects.toThrow(UsageError);
  });
});

describe('a run through the command (simulated xl and guest: SIMULATION)', () => {
  it('xl installed but no hypervisor: exits as boot does (4, `xl info` failed, naming the cause), never "SKIPPED"', async () => {
    const ok = await fixturePair('migration-14.1-ok-derived');
    const sim = new SimXl({ name: 'fbxen-guest', before: ok.before, after: () => ok.after, noHypervisor: true });
    const cwd = mkdtempSync(join(tmpdir(), 'fbxen-mcmd-'));
    try {
      let printed = '';
      const err = await fbxen(['--domain', 'fbxen-guest', '--iterations', '1', '--step-timeout', '5', '--run-id', 'nohv'], {}, sim, cwd)
        .then((r) => ((printed = r.human), undefined))
        .catch((e: unknown) => e as { exitCode: number; message: string; hint?: string });
      expect(printed).not.toMatch(/SKIPPED/);
      expect(err?.exitCode).toBe(4);
      expect(err?.message).toMatch(/`xl info` failed \(status 1\): ERROR: +Can't find hypervisor information in sysfs!/);
      expect(err?.hint).toMatch(/Xen hypervisor booted/);
      expect(sim.calls[0]).toBe('xl info');
      expect(sim.calls.filter((c) => !/^xl (info|list)$/.test(c))).toEqual([]); // nothing else ran: no help, no console, no migrate
    } finally {
      sim.stopAll();
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('--json prints the report document; a stuck timer after the migration throws exit 1 after printing', async () => {
    const ok = await fixturePair('migration-14.1-ok-derived');
    const sim = new SimXl({ name: 'fbxen-guest', before: ok.before, after: (n) => advanced(ok.after, n) });
    const cwd = mkdtempSync(join(tmpdir(), 'fbxen-mcmd-'));
    try {
      const r = await fbxen(['--domain', 'fbxen-guest', '--iterations', '2', '--step-timeout', '5', '--run-id', 'cmd1'], {}, sim, cwd, ['--json']);
      const doc = r.json as { status: string; iterations: Array<{ name: string; verdict: string; downtimeMs: number }>; summary: { downtimeMs: { median: number } } };
      expect(doc.status).toBe('pass');
      expect(doc.iterations.map((i) => [i.name, i.verdict])).toEqual([['migrate/1', 'pass'], ['migrate/2', 'pass']]);
      // (The values are not checked here: the command stamps console lines with the real clock while the
      // simulated guest's clock runs 20 times faster; flow.test.ts checks them with one clock.)
      expect(doc.summary.downtimeMs.median).toEqual(expect.any(Number));
      expect(r.human).toMatch(/2\/2 iterations passed; downtime min\/median\/max: /);
    } finally {
      sim.stopAll();
    }
    const stuck = await fixturePair('migration-14.1-timer-stalled-after-derived');
    const sim2 = new SimXl({ name: 'fbxen-guest', before: stuck.before, after: () => stuck.after });
    try {
      const err = await fbxen(['--domain', 'fbxen-guest', '--iterations', '3', '--step-timeout', '5', '--run-id', 'cmd2'], {}, sim2, cwd).catch((e: unknown) => e);
      expect((err as { exitCode: number }).exitCode).toBe(1);
      expect(String((err as Error).message)).toMatch(/migrate-test failed: migrate\/1/);
    } finally {
      sim2.stopAll();
    }
  });
});
