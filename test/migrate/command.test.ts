/**
 * `fbxen migrate-test` through the commander program (src/program.ts → src/commands/migrate-test.ts):
 * option validation, and the exact --dry-run plans as golden files (fixtures/migrate/plan-*.txt).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CommandContext, GlobalOptions } from '../../src/commands/context.js';
import { ConfigError, UsageError } from '../../src/core/errors.js';
import { silentProgress } from '../../src/core/progress.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { createProgram } from '../../src/program.js';

const REPO = join(import.meta.dirname, '../..');
const GOLDEN = join(REPO, 'fixtures/migrate');

async function fbxen(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ human: string; json: unknown; calls: string[] }> {
  const out = { human: '', json: undefined as unknown, calls: [] as string[] };
  const make = (globals: GlobalOptions): CommandContext => ({
    globals,
    progress: silentProgress,
    runner: {
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
    cwd: '/srv/ci',
  });
  await createProgram(make).parseAsync(['migrate-test', ...args], { from: 'user' });
  return out;
}

const norm = (s: string) => s.split(REPO).join('<fbxen>');

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
    const r = await fbxen(['--toolstack', 'xapi', '--domain', 'fbxen-14', '--to', 'xcp-host-2', '--dest-sr', 'NFS storage', '--iterations', '2', '--run-id', 'golden4', '--dry-run'], { FBXEN_XAPI_PASSWORD: 'Secret-Pa55' });
    expect(r.calls).toEqual([]);
    expect(r.human).not.toContain('Secret-Pa55');
    await expect(norm(r.human)).toMatchFileSnapshot(join(GOLDEN, 'plan-xapi-live-dest-sr.txt'));
  });
});

describe('option validation', () => {
  it('names the flag and the fix', async () => {
    await expect(fbxen(['--iterations', '3'])).rejects.toThrow(ConfigError);
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
