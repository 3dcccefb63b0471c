/**
 * Issue 14 point 14: FBXEN_XAPI_URL=http://... would send the password in clear. fbxen refuses plain
 * http unless --insecure-http says so, and then warns once on stderr. The refusal comes before any
 * contact, and --dry-run refuses it too (a plan never promises what the run refuses). The simulator
 * serves plain http on loopback, so these tests pass the flag wherever they mean to talk to it.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BootOptions, runBoot } from '../../src/commands/boot.js';
import type { CommandContext } from '../../src/commands/context.js';
import { ConfigError } from '../../src/core/errors.js';
import type { Progress } from '../../src/core/progress.js';
import { loadXapiCredentials } from '../../src/core/toolstack/xapi/credentials.js';
import { boot as bootFlow, type BootDeps, type BootRequest } from '../../src/core/boot/boot.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { XapiSim } from '../support/xapi-sim/sim.js';

const PASSWORD = 'Plain-http-Pa55';
const dir = mkdtempSync(join(tmpdir(), 'fbxen-xapi-http-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const image = join(dir, 'disk.raw');
const disk = Buffer.alloc(2 * 1024 * 1024);
disk.writeUInt16LE(0xaa55, 510);
writeFileSync(image, disk);

const sims: XapiSim[] = [];
afterEach(async () => {
  while (sims.length) await sims.pop()!.stop();
});

function recorder() {
  const warnings: string[] = [];
  const progress: Progress = { step: (_t, run) => run({ output: () => undefined }), info: () => undefined, warn: (m) => void warnings.push(m) };
  return { warnings, progress };
}

type XapiBootRequest = Omit<BootRequest, 'toolstack' | 'xapi'> & { insecure: boolean; insecureHttp?: boolean };

/** `fbxen boot --toolstack xapi` through the one boot flow (core/boot/boot.ts), with the simulator's seams. */
function runXapiBoot(r: XapiBootRequest, d: Omit<BootDeps, 'cwd'>, i: { cwd: string; consoleHost?: string; pollMs?: number; clientOptions?: { pollIntervalMs: number } }) {
  const { insecure, insecureHttp, ...rest } = r;
  return bootFlow({ ...rest, toolstack: 'xapi', xapi: { insecure, insecureHttp } }, { ...d, cwd: i.cwd, pollMs: i.pollMs, xapi: { consoleHost: i.consoleHost, clientOptions: i.clientOptions } });
}

function request(over: Partial<XapiBootRequest> = {}): XapiBootRequest {
  return { image, name: 'fbsd-http', vcpus: 1, memoryMiB: 256, emptyCdrom: true, keep: false, timeoutSec: 5, dryRun: false, verify: false, artifactsRoot: join(dir, 'runs'), insecure: false, ...over };
}

const env = (url: string) => ({ FBXEN_XAPI_URL: url, FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: PASSWORD });
const noRunner = { run: () => Promise.reject(new Error('no subprocess')), stream: () => { throw new Error('no subprocess'); } };

describe('plain http to XAPI', () => {
  it('the credentials are refused for an http:// URL unless insecureHttp, from the environment or the file', async () => {
    const err = await loadXapiCredentials(env('http://pool.lab')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/FBXEN_XAPI_URL http:\/\/pool\.lab is plain http: the password would cross the network in clear/);
    expect((err as ConfigError).hint).toMatch(/https:\/\/.*--insecure-http/);
    expect(`${(err as Error).message}${(err as ConfigError).hint}`).not.toContain(PASSWORD);
    await expect(loadXapiCredentials(env('http://pool.lab'), { insecureHttp: true })).resolves.toMatchObject({ url: 'http://pool.lab' });
    await expect(loadXapiCredentials(env('https://pool.lab'))).resolves.toMatchObject({ url: 'https://pool.lab' });
    const file = join(dir, 'creds');
    writeFileSync(file, `url=HTTP://pool.lab:80\nuser=root\npassword=${PASSWORD}\n`);
    chmodSync(file, 0o600);
    await expect(loadXapiCredentials({ FBXEN_XAPI_CREDENTIALS_FILE: file })).rejects.toThrow(/is plain http/);
  });

  it('boot refuses it before any contact and writes nothing', async () => {
    const sim = await new XapiSim({ password: PASSWORD }).start();
    sims.push(sim);
    expect(sim.url).toMatch(/^http:\/\/127\.0\.0\.1:/);
    const { progress } = recorder();
    const err = await runXapiBoot(request({ runId: 'http-refused' }), { runner: noRunner, progress, signal: new AbortController().signal, cleanup: new CleanupStack(), env: env(sim.url) }, { cwd: dir }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(sim.wire).toEqual([]); // nothing was sent, the password least of all
    expect(existsSync(join(dir, 'runs', 'fbsd-http', 'http-refused'))).toBe(false);
  });

  it('with insecureHttp the boot talks to the simulator, and warns exactly once', async () => {
    const sim = await new XapiSim({ password: PASSWORD, guestConsole: () => 'no collector here\r\n' }).start();
    sims.push(sim);
    const { warnings, progress } = recorder();
    // The guest writes no frame: the run times out after 1 s, which is enough to have logged in and created the VM.
    const err = await runXapiBoot(request({ runId: 'http-allowed', insecureHttp: true, timeoutSec: 1 }), { runner: noRunner, progress, signal: new AbortController().signal, cleanup: new CleanupStack(), env: env(sim.url) }, { cwd: dir, consoleHost: '127.0.0.1', pollMs: 20, clientOptions: { pollIntervalMs: 10 } }).catch((e: unknown) => e);
    expect((err as { exitCode?: number }).exitCode).toBe(6);
    expect(sim.calls).toContain('session.login_with_password');
    const plain = warnings.filter((w) => /in clear/.test(w));
    expect(plain).toHaveLength(1);
    expect(plain[0]).toMatch(/--insecure-http: the XAPI password goes to http:\/\/127\.0\.0\.1:\d+ in clear/);
  });

  it('--dry-run refuses it as the run does, and plans it (with the warning, once) under --insecure-http', async () => {
    const { progress } = recorder();
    const deps = { runner: noRunner, progress, signal: new AbortController().signal, cleanup: new CleanupStack(), env: env('http://pool.lab') };
    await expect(runXapiBoot(request({ runId: 'http-plan', dryRun: true }), deps, { cwd: dir })).rejects.toThrow(/is plain http/);
    const allowed = recorder();
    const plan = await runXapiBoot(request({ runId: 'http-plan', dryRun: true, insecureHttp: true }), { ...deps, progress: allowed.progress }, { cwd: dir });
    expect(plan.planText).toContain('# XAPI http://pool.lab as root');
    expect(plan.planText).toMatch(/NOT encrypted \(--insecure-http\)/);
    expect(allowed.warnings.filter((w) => /in clear/.test(w))).toHaveLength(1);
    expect(plan.planText).not.toContain(PASSWORD);
  });

  it('the boot command takes --insecure-http and hands it to the driver', async () => {
    const seen: string[] = [];
    const ctx: CommandContext = {
      globals: { json: false, verbose: false, quiet: false, debug: false },
      progress: { step: (_t, run) => run({ output: () => undefined }), info: () => undefined, warn: (m) => void seen.push(m) },
      runner: noRunner,
      signal: new AbortController().signal,
      cleanup: new CleanupStack(),
      configSection: () => ({}),
      result: () => undefined,
      env: env('http://pool.lab'),
      cwd: dir,
    } as CommandContext;
    const refused = BootOptions.parse({ toolstack: 'xapi', image, dryRun: true, emptyCdrom: true, runId: 'cmd-1' });
    await expect(runBoot(refused, ctx)).rejects.toMatchObject({ message: expect.stringMatching(/is plain http/), hint: expect.stringMatching(/--insecure-http/) });
    const allowed = BootOptions.parse({ toolstack: 'xapi', image, dryRun: true, emptyCdrom: true, runId: 'cmd-1', insecureHttp: true });
    expect((await runBoot(allowed, ctx)).planText).toMatch(/NOT encrypted/);
    expect(seen.filter((w) => /in clear/.test(w))).toHaveLength(1);
  });
});
