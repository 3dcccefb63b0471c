/**
 * A console client that outlives its detach (the real xenconsole that xl starts without a terminal on
 * stdin never reads it, so it misses the EOF: found on the lab's real xl, docs/lab.md "Real xl vs the
 * fake"): detach() ends the xenconsole child of exactly that xl, and no other. A stand-in xl (a shell
 * script) starts a stand-in xenconsole (a copy of sleep, so its process name is xenconsole) that ignores
 * its stdin, as the real one does.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { XlCommands } from '../../src/core/toolstack/xl/xl-commands.js';
import { attachment } from '../../src/core/toolstack/xl/xl-console.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-reap-'));
const bin = join(dir, 'bin');
mkdirSync(bin);
copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), join(bin, 'xenconsole'));
// The stand-in xl: its console child never reads stdin; it waits for the child, as xl create -c does.
writeFileSync(join(bin, 'xl'), `#!/bin/sh\n"${bin}/xenconsole" 300 </dev/null &\nwait\n`);
chmodSync(join(bin, 'xl'), 0o755);
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const childrenOf = (pid: number) => execFileSync('sh', ['-c', `pgrep -P ${pid} -x xenconsole || true`], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('detaching a console client that ignores its stdin', () => {
  it("ends that client's xenconsole (and so the client), leaving another xl's xenconsole alone", { timeout: 60_000 }, async () => {
    // Another run's console client of the same kind: must survive.
    const other = spawn(join(bin, 'xl'), ['create', '-c', join(dir, 'other', 'xl.cfg')], { stdio: 'ignore' });
    const xl = new XlCommands(createExecaRunner(), { xl: join(bin, 'xl') });
    const client = xl.createWithConsole(join(dir, 'run 1', 'xl.cfg'));
    const sink = new PassThrough();
    sink.resume();
    const held = attachment(client, { name: 'd', id: '1', host: 'localhost' }, sink);
    // Both stand-in xenconsoles are up.
    let otherChild: number[] = [];
    for (let i = 0; i < 100 && otherChild.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      otherChild = childrenOf(other.pid!);
    }
    expect(otherChild).toHaveLength(1);
    const t = Date.now();
    await held.detach();
    // The client ended within the two 5 s bounds of detach (EOF ignored, then the reap).
    expect(await Promise.race([client.done.then(() => 'ended', () => 'ended'), new Promise((r) => setTimeout(() => r('running'), 5000))])).toBe('ended');
    expect(Date.now() - t).toBeLessThan(30_000);
    expect(alive(otherChild[0]!)).toBe(true);
    other.kill('SIGTERM');
    process.kill(otherChild[0]!, 'SIGTERM');
  });
});
