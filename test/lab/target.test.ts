/**
 * --host lab's target and `lab down`'s stop, against a stand-in process: a node process whose command
 * line carries the lab's `file:SERIAL` argument as QEMU's does (so isLabProcess knows it), and a state
 * file that points at it. No QEMU, no VM: the integration test (lab.integration.test.ts) runs the real one.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvironmentError } from '../../src/core/errors.js';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { silentProgress } from '../../src/core/progress.js';
import { labDown, labSsh, labStatus, resolveLabTarget, sessionTarget, sshArgs } from '../../src/core/lab/index.js';
import { writeLabState } from '../../src/core/lab/state.js';
import { isLabProcess, knownHostsLine } from '../../src/core/lab/target.js';
import { fakeLabDir, standInQemu, stopStandIns } from './fake-lab.js';

afterEach(stopStandIns);

/** A ready lab's directory and state (port 1: nothing listens), state.json not written yet. */
const labDir = () => fakeLabDir(1, mkdtempSync(join(tmpdir(), 'lab-target-')));

const deps = () => ({ runner: createExecaRunner(), progress: silentProgress, env: process.env, cwd: process.cwd() });

describe('--host lab: the ssh target', () => {
  it('is root@127.0.0.1 on the lab port, with its key and known_hosts, strict', async () => {
    const { dir, state } = labDir();
    const child = await standInQemu(state.serialLog);
    await writeLabState(join(dir, 'state.json'), { ...state, pid: child.pid!, port: 40123 });
    expect(await resolveLabTarget({ dir })).toEqual({ user: 'root', host: '127.0.0.1', port: 40123, identityFile: state.identityFile, knownHostsFile: state.knownHostsFile, strictHostKeyChecking: true });
  });

  it("is the ssh transport's target with the lab's key and known_hosts (the name lab up pinned)", async () => {
    const { knownHostsName } = await import('../../src/core/exec/ssh-target.js');
    const t = { user: 'root', host: '127.0.0.1', port: 40123, identityFile: '/l/id', knownHostsFile: '/l/kh', strictHostKeyChecking: true } as const;
    const s = sessionTarget(t);
    expect(s).toEqual({ target: { kind: 'ssh', user: 'root', host: '127.0.0.1', port: 40123 }, options: { knownHosts: '/l/kh', identity: '/l/id' } });
    expect(knownHostsLine(40123, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8/abcdefghijklmnopqrstuvwxyz0123456789AB').split(' ')[0]).toBe(knownHostsName(s.target));
  });

  it('says no lab runs when there is no state file', async () => {
    const { dir } = labDir();
    await expect(resolveLabTarget({ dir })).rejects.toThrow(EnvironmentError);
    await expect(resolveLabTarget({ dir })).rejects.toThrow(`no lab runs in ${dir}`);
  });

  it('says the lab is not running when its pid is another process (not the lab QEMU)', async () => {
    const { dir, state } = labDir();
    const other = await standInQemu(join(dir, 'another-lab.log'));
    await writeLabState(join(dir, 'state.json'), { ...state, pid: other.pid! });
    await expect(resolveLabTarget({ dir })).rejects.toThrow(/is not running/);
    expect(await isLabProcess({ pid: other.pid!, serialLog: join(dir, 'another-lab.log') })).toBe(true);
  });

  it('says the lab is still coming up before xl info answered', async () => {
    const { dir, state } = labDir();
    const child = await standInQemu(state.serialLog);
    const { readyAt: _ready, ...notReady } = state;
    await writeLabState(join(dir, 'state.json'), { ...notReady, pid: child.pid! });
    await expect(resolveLabTarget({ dir })).rejects.toThrow(/still coming up/);
  });

  it('ssh arguments: no user config, only the lab key, the pinned known_hosts, strict', () => {
    const a = sshArgs({ user: 'root', host: '127.0.0.1', port: 40123, identityFile: '/l/id', knownHostsFile: '/l/kh', strictHostKeyChecking: true });
    expect(a.join(' ')).toBe(
      '-F none -i /l/id -o IdentitiesOnly=yes -o UserKnownHostsFile=/l/kh -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o LogLevel=ERROR -o ConnectTimeout=10 -o BatchMode=yes -p 40123 root@127.0.0.1',
    );
  });

  it('known_hosts pins the host key for [127.0.0.1]:PORT, and refuses a key that is not ed25519', () => {
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8/abcdefghijklmnopqrstuvwxyz0123456789AB fbxen-lab-host';
    expect(knownHostsLine(40123, key)).toBe('[127.0.0.1]:40123 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8/abcdefghijklmnopqrstuvwxyz0123456789AB\n');
    expect(() => knownHostsLine(1, 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ')).toThrow(/host key/);
    expect(() => knownHostsLine(1, '')).toThrow(/host key/);
    expect(() => knownHostsLine(1, 'ssh-ed25519 AAAA\n[evil]:22 ssh-ed25519 AAAA')).toThrow(/host key/);
  });
});

describe('lab ssh', () => {
  it('gives ssh only what ssh needs from the environment (no secret of fbxen reaches it), and returns its status', async () => {
    const { dir, state } = labDir();
    const child = await standInQemu(state.serialLog);
    await writeLabState(join(dir, 'state.json'), { ...state, pid: child.pid!, port: 40123 });
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    // A stand-in ssh (named as one): records its environment and arguments, exits 7.
    writeFileSync(join(bin, 'ssh'), `#!/bin/sh\nenv > "${join(dir, 'ssh-env')}"\necho "$@" > "${join(dir, 'ssh-args')}"\nexit 7\n`, { mode: 0o755 });
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, FBXEN_XAPI_PASSWORD: 'hunter2', TERM: 'xterm' };
    const saved = process.env.FBXEN_XAPI_PASSWORD;
    process.env.FBXEN_XAPI_PASSWORD = 'hunter2';
    try {
      const status = await labSsh({ dir, command: ['xl', 'info'] }, { ...deps(), env, signal: new AbortController().signal } as never);
      expect(status).toBe(7);
    } finally {
      if (saved === undefined) delete process.env.FBXEN_XAPI_PASSWORD;
      else process.env.FBXEN_XAPI_PASSWORD = saved;
    }
    const seen = readFileSync(join(dir, 'ssh-env'), 'utf8');
    expect(seen).not.toContain('hunter2');
    expect(seen).toMatch(/^TERM=xterm$/m);
    expect(readFileSync(join(dir, 'ssh-args'), 'utf8')).toMatch(/-p 40123 root@127\.0\.0\.1 -- xl info/);
  });
});

describe('lab down', () => {
  it('stops the lab process (dom0 unreachable: SIGTERM), removes the state, keeps the image', async () => {
    const { dir, state } = labDir();
    const child = await standInQemu(state.serialLog);
    const exited = new Promise((r) => child.once('exit', r));
    // port 1: nothing listens, so the graceful poweroff over ssh fails at once and SIGTERM follows.
    await writeLabState(join(dir, 'state.json'), { ...state, pid: child.pid! });
    const r = await labDown({ dir, purge: false }, deps());
    await exited;
    expect(r.stopped).toBe('stopped (SIGTERM)');
    expect(existsSync(join(dir, 'state.json'))).toBe(false);
    expect(existsSync(join(dir, 'images', 'bbbbbbbbbbbbbbbb', 'dom0.img'))).toBe(true);
    expect((await labStatus({ dir }, deps())).running).toBe(false);
  });

  it('kills a process that ignores SIGTERM, and --purge removes the image', async () => {
    const { dir, state } = labDir();
    const child = await standInQemu(state.serialLog, true);
    await writeLabState(join(dir, 'state.json'), { ...state, pid: child.pid! });
    const r = await labDown({ dir, purge: true }, deps());
    expect(r.stopped).toBe('killed (SIGKILL)');
    expect(child.signalCode ?? (await new Promise((res) => child.once('exit', (_c, s) => res(s))))).toBe('SIGKILL');
    expect(existsSync(join(dir, 'images'))).toBe(false);
  });

  it('never signals a pid that is not this lab (a reused pid): the state is cleared, the process lives', async () => {
    const { dir, state } = labDir();
    const other = await standInQemu(join(dir, 'unrelated.log'));
    await writeLabState(join(dir, 'state.json'), { ...state, pid: other.pid! });
    const r = await labDown({ dir, purge: false }, deps());
    expect(r.stopped).toBe('not running');
    expect(other.exitCode).toBeNull();
    expect(other.signalCode).toBeNull();
    expect(existsSync(join(dir, 'state.json'))).toBe(false);
  });

  it('clears an unreadable state file with a warning and stops nothing', async () => {
    const { dir } = labDir();
    writeFileSync(join(dir, 'state.json'), '{"pid": 1');
    const warnings: string[] = [];
    const r = await labDown({ dir, purge: false }, { ...deps(), progress: { ...silentProgress, warn: (m: string) => warnings.push(m) } });
    expect(r.stopped).toBe('no lab was running');
    expect(warnings.join('\n')).toMatch(/not JSON.*no process was stopped/s);
    expect(existsSync(join(dir, 'state.json'))).toBe(false);
  });
});
