/**
 * The fake xl's console (test/support/fake-xl, a SIMULATION) against what Xen 4.17's xenconsole does
 * (tools/console/client/main.c; found on the lab's real xl, docs/lab.md "Real xl vs the fake"):
 *   - it reads its stdin only when stdin and stdout are terminals: from a pipe nothing is read, and the
 *     pipe's EOF does not end it; the domain going away (or SIGTERM, exit 0) does;
 *   - on a terminal, ^] alone ends it (and so fbxen's terminal wrapper, CONSOLE_ON_A_TERMINAL);
 *   - `xl create -c` forks it as a child named xenconsole and exits when it does: fbxen's detach of a client
 *     that outlives its EOF ends exactly that child (xl-console.ts), here against the fake;
 *   - one client per domain: a second fails on the lock the first holds (/var/lock/xenconsole.DOMID).
 */
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { CONSOLE_ON_A_TERMINAL, XlCommands } from '../../src/core/toolstack/xl/xl-commands.js';
import { attachment } from '../../src/core/toolstack/xl/xl-console.js';
import { fakeDom0 } from '../support/fake-xl/dom0.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fake dom0 whose guest prints one line and then nothing (the domain not created yet). */
function dom0() {
  const h = fakeDom0({ prefix: 'fbxen-fakexl-con-', guest: 'guest says hello\n@hang\n', name: 'fbxen-con', vcpus: 1, memoryMiB: 256, create: false });
  dirs.push(h.state);
  return h;
}

interface Client {
  pid: number;
  out(): string;
  err(): string;
  exited: Promise<number | null>;
  ended(): boolean;
  write(s: string): void;
  end(): void;
}

function start(env: NodeJS.ProcessEnv, file: string, args: string[]): Client {
  const p = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let ended = false;
  p.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  p.stderr.on('data', (d: Buffer) => (err += d.toString('latin1')));
  p.stdin.on('error', () => undefined);
  const exited = new Promise<number | null>((r) => p.on('close', (code) => ((ended = true), r(code))));
  return { pid: p.pid!, out: () => out, err: () => err, exited, ended: () => ended, write: (s) => p.stdin.write(s), end: () => p.stdin.end() };
}

async function until(pred: () => boolean, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return pred();
}
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the fake xl console, as xenconsole of Xen 4.17 (SIMULATION)', () => {
  it('from a pipe: EOF of stdin does not end `xl console`; the domain going away does (exit 0)', async () => {
    const h = dom0();
    expect(h.xl('create', '-q', h.cfg).status).toBe(0);
    const c = start(h.env, 'xl', ['console', '-t', 'serial', '1']);
    expect(await until(() => c.out().includes('guest says hello'))).toBe(true);
    c.end();
    // The old fake ended within milliseconds of the EOF; the real one never notices it.
    await pause(2000);
    expect(c.ended()).toBe(false);
    expect(h.xl('destroy', '1').status).toBe(0);
    expect(await c.exited).toBe(0);
  });

  it('SIGTERM ends the console client with status 0, as xenconsole\'s handler does', async () => {
    const h = dom0();
    expect(h.xl('create', '-q', h.cfg).status).toBe(0);
    const c = start(h.env, 'xl', ['console', '-t', 'serial', '1']);
    expect(await until(() => c.out().includes('guest says hello'))).toBe(true);
    process.kill(c.pid, 'SIGTERM');
    expect(await c.exited).toBe(0);
    expect(h.xl('list', '1').status).toBe(0); // the domain stays
  });

  it('on a terminal (fbxen\'s wrapper): ^] alone ends the console, and so the wrapper', async () => {
    const h = dom0();
    expect(h.xl('create', '-q', h.cfg).status).toBe(0);
    const c = start(h.env, 'sh', ['-c', CONSOLE_ON_A_TERMINAL, 'fbxen-console', 'xl', 'console', '-t', 'serial', '1']);
    expect(await until(() => c.out().includes('guest says hello'))).toBe(true);
    c.write('\x1d');
    expect(await Promise.race([c.exited, pause(30_000).then(() => 'still running')])).toBe(0);
  });

  it('one console per domain: a second client fails on the first one\'s lock, as xenconsole does', async () => {
    const h = dom0();
    expect(h.xl('create', '-q', h.cfg).status).toBe(0);
    const first = start(h.env, 'xl', ['console', '-t', 'serial', '1']);
    expect(await until(() => first.out().includes('guest says hello'))).toBe(true);
    const second = h.xl('console', '-t', 'serial', '1');
    expect(second.stderr).toBe('xenconsole: Could not lock /var/lock/xenconsole.1: Resource temporarily unavailable\n');
    expect(second.status).toBe(11); // err(errno, ...): EAGAIN
    process.kill(first.pid, 'SIGTERM');
    expect(await first.exited).toBe(0);
    // the lock went with its holder
    const third = start(h.env, 'xl', ['console', '-t', 'serial', '1']);
    expect(await until(() => third.out().includes('guest says hello'))).toBe(true);
    process.kill(third.pid, 'SIGTERM');
    expect(await third.exited).toBe(0);
  });

  it('`xl create -c` from a pipe outlives its EOF; fbxen\'s detach ends exactly its xenconsole child, the domain stays', { timeout: 60_000 }, async () => {
    const h = dom0();
    const xl = new XlCommands(createExecaRunner(), { env: h.env });
    const client = xl.createWithConsole(h.cfg);
    let out = '';
    client.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    const sink = new PassThrough();
    sink.resume();
    expect(await until(() => out.includes('guest says hello'))).toBe(true);
    // another client of another domain, not fbxen's: must survive the reap
    writeFileSync(join(h.state, 'o.cfg'), `name = "other"\ntype = "hvm"\nmemory = 128\n`);
    const other = start(h.env, 'xl', ['create', '-c', join(h.state, 'o.cfg')]);
    expect(await until(() => other.out().includes('guest says hello'))).toBe(true);
    const held = attachment(client, { name: 'fbxen-con', id: '1', host: 'localhost' }, sink);
    let ended = false;
    void client.done.finally(() => (ended = true)).catch(() => undefined);
    client.detach(); // our stdin's EOF: ignored, as by the real xenconsole without a terminal
    await pause(2000);
    expect(ended).toBe(false);
    await held.detach();
    // within detach's two 5 s bounds: the EOF was ignored, the reap ended the child and so xl create -c
    expect(await until(() => ended, 5000)).toBe(true);
    await expect(client.done).resolves.toMatchObject({ exitCode: 0 });
    expect(h.xl('domid', 'fbxen-con').stdout.trim()).toBe('1');
    expect(other.ended()).toBe(false);
    expect(h.xl('destroy', 'other').status).toBe(0);
    expect(await other.exited).toBe(0);
  });
});
