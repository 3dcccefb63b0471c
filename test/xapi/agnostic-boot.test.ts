/**
 * The XAPI driver under the toolstack-agnostic boot flow (core/boot/boot.ts bootOn), against the XAPI
 * simulator (a test double, test/support/xapi-sim/sim.ts): what the flow needs of a Toolstack, XAPI's
 * way. The image carries the collector here (--empty-cdrom), so no xorriso runs.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { bootOn, type BootRequest } from '../../src/core/boot/boot.js';
import { InterruptedError } from '../../src/core/errors.js';
import type { Runner } from '../../src/core/exec/runner.js';
import { silentProgress } from '../../src/core/progress.js';
import { XapiDriver } from '../../src/core/toolstack/xapi/driver.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { encodeConsoleFrame, packBundle, readBundle } from '../../src/core/verify/index.js';
import { XapiSim } from '../support/xapi-sim/sim.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'fbxen-xapi-agnostic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;
const raw = join(dir, 'disk.raw');
const b = Buffer.alloc(4 * MiB);
b[510] = 0x55; // a disk to fbxen: the boot signature and the GPT header at LBA 1
b[511] = 0xaa;
b.write('EFI PART', 512, 'latin1');
writeFileSync(raw, b);

const noRunner: Runner = {
  run: () => Promise.reject(new Error('no subprocess expected')),
  stream: () => {
    throw new Error('no subprocess expected');
  },
};

const sims: XapiSim[] = [];
afterEach(async () => {
  while (sims.length) await sims.pop()!.stop();
});

async function frame(run: string): Promise<string> {
  const payload = await packBundle({
    meta: { bundle: 'fbxen-bundle/1', run, phase: 'boot', collector: 'xapi-sim' },
    index: [{ name: 'uname', status: 0, command: 'uname -a' }],
    sections: new Map([['uname', 'FreeBSD sim 14.1-RELEASE FreeBSD 14.1-RELEASE GENERIC amd64\n']]),
  } as Parameters<typeof packBundle>[0]);
  return `Booting...\r\n${encodeConsoleFrame(payload, run, 'boot')}`;
}

const env = (sim: XapiSim) => ({ FBXEN_XAPI_URL: sim.url, FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'pw' });
const request = (over: Partial<BootRequest> = {}): BootRequest => ({ toolstack: 'xapi', image: raw, name: 'fbsd-ag', vcpus: 1, memoryMiB: 256, emptyCdrom: true, keep: false, timeoutSec: 20, dryRun: false, verify: false, artifactsRoot: join(dir, 'runs'), graceSec: 5, ...over });

function driverFor(sim: XapiSim, signal: AbortSignal): XapiDriver {
  return new XapiDriver({ env: env(sim), signal, insecureHttp: true, consoleHost: '127.0.0.1', clientOptions: { pollIntervalMs: 10 }, timeoutMs: 20_000 });
}

describe('XapiDriver under the agnostic boot flow (simulator)', () => {
  it('boots, captures the frame into console.log, writes the VM record, and removes everything it made', async () => {
    const baked = await frame('baked-1');
    const sim = await new XapiSim({ password: 'pw', guestConsole: () => baked }).start();
    sims.push(sim);
    const signal = new AbortController().signal;
    const driver = driverFor(sim, signal);
    const result = await bootOn(() => driver, request({ runId: 'run-ag-1' }), { runner: noRunner, progress: silentProgress, signal, cleanup: new CleanupStack(), env: env(sim), cwd: dir, pollMs: 20 });
    expect(result).toMatchObject({ toolstack: 'xapi', name: 'fbsd-ag', domain: { kept: false } });
    expect(readFileSync(result.consoleLog, 'latin1')).toContain('FBXEN1 END baked-1 boot');
    expect(JSON.parse(readFileSync(join(result.artifactsDir, 'run.json'), 'utf8'))).toMatchObject({ outcome: 'collected', toolstack: 'xapi' });
    expect(JSON.parse(readFileSync(join(result.artifactsDir, 'vm-record.json'), 'utf8'))).toMatchObject({ host: { name: 'xcp-host-1' }, nonceChannel: 'none' });
    expect(sim.find('VM', (r) => !r['is_a_template'])).toHaveLength(0);
    expect(sim.db.VDI.size).toBe(0);
    expect(sim.db.session.size).toBe(0);
    expect(sim.calls).toContain('Async.VM.clean_shutdown');
  });

  it('--verify: netfront is inconclusive with the XAPI reason (a pool network is no bridge here: no listener is opened)', async () => {
    // The derived netfront fixture of a guest whose run arranged no round trip (DERIVED, fixtures/probes).
    const fx = await readBundle(join(REPO, 'fixtures/probes/13.2-netfront-rt-not-arranged-derived'));
    const baked = `Booting...\r\n${encodeConsoleFrame(await packBundle({ ...fx, meta: { ...fx.meta, run: 'run-ag-4', phase: 'boot' } }), 'run-ag-4', 'boot')}`;
    const sim = await new XapiSim({ password: 'pw', guestConsole: () => baked }).start();
    sims.push(sim);
    const signal = new AbortController().signal;
    const driver = driverFor(sim, signal);
    // The fixture's other probes may say no (exit 1): the report is written either way.
    await bootOn(() => driver, request({ runId: 'run-ag-4', verify: true, xapi: { network: 'Lab network' } } as Partial<BootRequest>), { runner: noRunner, progress: silentProgress, signal, cleanup: new CleanupStack(), env: env(sim), cwd: dir, pollMs: 20 }).catch(() => undefined);
    const report = JSON.parse(readFileSync(join(dir, 'runs', 'fbsd-ag', 'run-ag-4', 'report.json'), 'utf8')) as { results: { id: string; verdict: string; evidence: string[] }[] };
    const nf = report.results.find((r) => r.id === 'netfront')!;
    expect(nf.verdict).toBe('inconclusive');
    expect(nf.evidence.join('\n')).toMatch(/XAPI: the VIF is on the pool network Lab network/);
  });

  it('Ctrl-C while the guest boots: the VM and its disk go, the session is closed', async () => {
    const sim = await new XapiSim({ password: 'pw', guestConsole: () => 'FreeBSD hangs here\r\n' }).start();
    sims.push(sim);
    const ac = new AbortController();
    const cleanup = new CleanupStack();
    const driver = driverFor(sim, ac.signal);
    const watcher = setInterval(() => {
      if (sim.find('VM', (r) => r['power_state'] === 'Running').length && !ac.signal.aborted) {
        ac.abort(new InterruptedError('SIGINT'));
        void cleanup.unwind();
      }
    }, 10);
    const err = await bootOn(() => driver, request({ runId: 'run-ag-2' }), { runner: noRunner, progress: silentProgress, signal: ac.signal, cleanup, env: env(sim), cwd: dir, pollMs: 20 }).catch((e: unknown) => e);
    clearInterval(watcher);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(sim.find('VM', (r) => !r['is_a_template'])).toHaveLength(0);
    expect(sim.db.VDI.size).toBe(0);
    expect(sim.db.session.size).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'runs', 'fbsd-ag', 'run-ag-2', 'run.json'), 'utf8')).outcome).toBe('interrupted');
  });

  it('--dry-run: the plan lists the XAPI calls and nothing is contacted or written', async () => {
    const signal = new AbortController().signal;
    const driver = new XapiDriver({ env: { FBXEN_XAPI_URL: 'https://pool.example', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: 'pw' }, signal });
    const result = await bootOn(() => driver, request({ runId: 'run-ag-3', dryRun: true }), { runner: noRunner, progress: silentProgress, signal, cleanup: new CleanupStack(), env: {}, cwd: dir });
    expect(result.planText).toMatch(/session\.login_with_password\("root", <password>/);
    expect(result.planText).toMatch(/Async\.VM\.start\(<session>, <VM#\d+>, false, false\)/);
    expect(result.planText).not.toContain('"pw"');
    expect(existsSync(join(dir, 'runs', 'fbsd-ag', 'run-ag-3'))).toBe(false);
  });
});
