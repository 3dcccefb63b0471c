/**
 * Issue 14 point 13: no child process (xorriso, ssh, xz, xl, ...) gets the XAPI credentials. The child
 * here is node printing its own environment, run through the one runner fbxen spawns with; the secrets
 * are both in fbxen's own environment and in the env a caller hands over (deps.env is process.env).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { childEnv, createExecaRunner } from '../../src/core/exec/runner.js';

const SECRETS = {
  FBXEN_XAPI_PASSWORD: 'Child-must-not-see-Pa55',
  FBXEN_XAPI_USER: 'root',
  FBXEN_XAPI_URL: 'https://pool.lab',
  FBXEN_XAPI_CREDENTIALS_FILE: '/root/xapi.creds',
};
const PRINT_ENV = ['-e', 'process.stdout.write(JSON.stringify(process.env))'];

const saved = new Map<string, string | undefined>();
function setProcessEnv(vars: Record<string, string>): void {
  for (const [k, v] of Object.entries(vars)) {
    if (!saved.has(k)) saved.set(k, process.env[k]);
    process.env[k] = v;
  }
}
afterEach(() => {
  for (const [k, v] of saved) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  saved.clear();
});

function expectScrubbed(text: string): Record<string, string> {
  const env = JSON.parse(text) as Record<string, string>;
  expect(Object.keys(env).filter((k) => k.startsWith('FBXEN_XAPI_'))).toEqual([]);
  expect(text).not.toContain(SECRETS.FBXEN_XAPI_PASSWORD);
  return env;
}

describe('child processes get no FBXEN_XAPI_* variable', () => {
  it('run(): neither from fbxen\'s environment nor from the env the caller passes; the rest passes through', async () => {
    setProcessEnv({ ...SECRETS, FBXEN_RUNNER_TEST_KEEP: 'kept-from-process' });
    const runner = createExecaRunner();
    const r = await runner.run(process.execPath, PRINT_ENV, { env: { ...process.env, FBXEN_RUNNER_TEST_EXTRA: 'kept-from-caller' } });
    const env = expectScrubbed(r.stdout);
    expect(env['FBXEN_RUNNER_TEST_KEEP']).toBe('kept-from-process');
    expect(env['FBXEN_RUNNER_TEST_EXTRA']).toBe('kept-from-caller');
    expect(env['PATH']).toBe(process.env['PATH']);
  });

  it('run() without an env option', async () => {
    setProcessEnv(SECRETS);
    const r = await createExecaRunner().run(process.execPath, PRINT_ENV);
    expectScrubbed(r.stdout);
  });

  it('stream(): the same for long-running children (xl create -c, ssh, xz -dc)', async () => {
    setProcessEnv(SECRETS);
    const proc = createExecaRunner().stream(process.execPath, PRINT_ENV, { env: { ...SECRETS, FBXEN_RUNNER_TEST_EXTRA: 'x' } });
    const chunks: Buffer[] = [];
    for await (const c of proc.stdout) chunks.push(c as Buffer);
    await proc.done;
    const env = expectScrubbed(Buffer.concat(chunks).toString('utf8'));
    expect(env['FBXEN_RUNNER_TEST_EXTRA']).toBe('x');
  });

  it('childEnv drops every FBXEN_XAPI_ key, unsets what the caller sets to undefined, keeps the rest', () => {
    const env = childEnv({ FBXEN_XAPI_CONSOLE_PORT: '9999', FOO: 'bar', EMPTY: undefined }, { ...SECRETS, HOME: '/root' });
    expect(env).toEqual({ HOME: '/root', FOO: 'bar' });
  });
});
