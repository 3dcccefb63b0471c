/**
 * `fbxen lab up`'s failure paths without a VM: a stand-in qemu-system-x86_64 (fake-bin/) that daemonizes
 * like QEMU but runs no dom0, and an image directory that already holds this machine's key (so nothing
 * is built). dom0 never answering, QEMU dying, and a taken port each end in an error that names the fix,
 * with nothing left running and no state file.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EnvironmentError, TimeoutError } from '../../src/core/errors.js';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { silentProgress } from '../../src/core/progress.js';
import { imageKey } from '../../src/core/lab/image-key.js';
import { buildTools, checkSpace, imageInputs, missingTools } from '../../src/core/lab/image.js';
import { labUp, labPaths } from '../../src/core/lab/index.js';
import { isLabProcess } from '../../src/core/lab/target.js';

const FAKE_BIN = join(import.meta.dirname, 'fake-bin');
const runner = createExecaRunner();

/** A lab directory whose cached image matches the key `lab up` computes here. */
async function preparedLab(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'lab-up-'));
  const inputs = await imageInputs(runner);
  const key = imageKey(inputs);
  const image = labPaths(dir).image(key);
  mkdirSync(image.dir, { recursive: true });
  for (const f of [image.disk, image.xen, image.kernel, image.initrd]) writeFileSync(f, '');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(image.dir, 'ssh_host_ed25519_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', image.identity]);
  writeFileSync(image.manifest, JSON.stringify({ key, builtAt: new Date().toISOString(), buildSeconds: 1, inputs }));
  return dir;
}

function deps() {
  return { runner, progress: silentProgress, env: { ...process.env, PATH: `${FAKE_BIN}:${process.env.PATH}` }, cwd: process.cwd() };
}

/** The runner passes only PATH from deps.env to QEMU; the stand-in's settings travel in process.env. */
const PIDLOG = join(mkdtempSync(join(tmpdir(), 'fake-qemu-')), 'pids');

async function withFakeEnv<T>(mode: string, run: () => Promise<T>): Promise<T> {
  process.env.FAKE_QEMU_MODE = mode;
  process.env.FAKE_NODE = process.execPath;
  process.env.FAKE_QEMU_PIDLOG = PIDLOG;
  try {
    return await run();
  } finally {
    delete process.env.FAKE_QEMU_MODE;
    delete process.env.FAKE_NODE;
    delete process.env.FAKE_QEMU_PIDLOG;
  }
}

/** The pid of the stand-in QEMU the last lab up started. */
const lastStandIn = () => Number(readFileSync(PIDLOG, 'utf8').trim().split('\n').pop());

async function failure(p: Promise<unknown>): Promise<Error & { hint?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a failure');
}

describe('lab up when dom0 does not come up', () => {
  it('times out with the serial log tail, stops the stand-in QEMU and leaves no state', async () => {
    const dir = await preparedLab();
    const paths = labPaths(dir);
    const err = await withFakeEnv('hang', () => failure(labUp({ dir, accel: 'tcg', memoryMiB: 3072, cpus: 2, timeoutSec: 4 }, deps())));
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err.message).toMatch(/did not answer xl info over ssh within 4 s/);
    expect(err.message).toContain('(XEN) stand-in dom0 never starts');
    expect(err.hint).toMatch(/--timeout/);
    expect(existsSync(paths.state)).toBe(false);
    // The stand-in no longer runs, and its pid file is gone with the state.
    const pid = lastStandIn();
    expect(pid).toBeGreaterThan(1);
    expect(existsSync(paths.pidFile)).toBe(false);
    expect(existsSync(paths.knownHosts)).toBe(false);
    expect(await isLabProcess({ pid, serialLog: paths.serialLog })).toBe(false);
  });

  it('says QEMU exited, with the serial log tail, when it dies before dom0 answers', async () => {
    const dir = await preparedLab();
    const err = await withFakeEnv('die', () => failure(labUp({ dir, accel: 'tcg', memoryMiB: 3072, cpus: 2, timeoutSec: 120 }, deps())));
    expect(err).toBeInstanceOf(EnvironmentError);
    expect(err.message).toMatch(/QEMU exited before dom0 came up/);
    expect(err.message).toContain('(XEN) Panic on CPU 0:');
    expect(existsSync(labPaths(dir).state)).toBe(false);
    expect(existsSync(labPaths(dir).knownHosts)).toBe(false);
  });

  it("names a port QEMU could not forward as taken (QEMU's own hostfwd error)", async () => {
    const dir = await preparedLab();
    const err = await withFakeEnv('portfail', () => failure(labUp({ dir, accel: 'tcg', memoryMiB: 3072, cpus: 2, timeoutSec: 60 }, deps())));
    expect(err).toBeInstanceOf(EnvironmentError);
    expect(err.message).toMatch(/port \d+ on 127\.0\.0\.1 is taken/);
    expect(err.hint).toMatch(/--port/);
    // Nothing of the run that did not start stays behind.
    const paths = labPaths(dir);
    expect([paths.knownHosts, paths.pidFile, paths.state].filter((f) => existsSync(f))).toEqual([]);
  });
});

describe('lab up interrupted', () => {
  it('stops the QEMU it started when the wait is aborted (Ctrl-C), and leaves no state', async () => {
    const dir = await preparedLab();
    const paths = labPaths(dir);
    const abort = new AbortController();
    const up = withFakeEnv('hang', () => failure(labUp({ dir, accel: 'tcg', memoryMiB: 3072, cpus: 2, timeoutSec: 300 }, { ...deps(), signal: abort.signal })));
    // Abort once the stand-in runs (its pid file is written), well inside the 300 s wait.
    for (let i = 0; i < 600 && !existsSync(paths.state); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(paths.state)).toBe(true);
    abort.abort(new Error('interrupted'));
    await up;
    const pid = lastStandIn();
    expect(await isLabProcess({ pid, serialLog: paths.serialLog })).toBe(false);
    expect(existsSync(paths.state)).toBe(false);
  });
});

describe('no space', () => {
  it('names the directory, what is free and what the build needs, and the fix', async () => {
    const err = await failure(checkSpace(tmpdir(), Number.MAX_SAFE_INTEGER, 'TMPDIR'));
    expect(err).toBeInstanceOf(EnvironmentError);
    expect(err.message).toMatch(/^no space for the lab image: .* free in .*\(TMPDIR\), the build needs about/);
    expect(err.hint).toMatch(/TMPDIR/);
    await checkSpace(tmpdir(), 1, 'TMPDIR');
  });
});

describe('missing tools', () => {
  it('names each missing tool with its Debian package and the setup script', () => {
    const err = missingTools(['mmdebstrap', 'qemu-system-x86_64', 'ssh'], { PATH: mkdtempSync(join(tmpdir(), 'empty-path-')) });
    expect(err).toBeInstanceOf(EnvironmentError);
    expect(err!.message).toContain('mmdebstrap (Debian package mmdebstrap)');
    expect(err!.message).toContain('qemu-system-x86_64 (Debian package qemu-system-x86)');
    expect(err!.hint).toContain('scripts/lab-setup.sh');
    expect(err!.hint).toContain('apt-get install mmdebstrap qemu-system-x86 openssh-client');
    expect(missingTools(['sh'], process.env)).toBeUndefined();
  });

  it('a build as a user (not root) also needs newuidmap and fakeroot, named by their Debian packages', () => {
    expect(buildTools(0)).not.toContain('fakeroot');
    const err = missingTools(buildTools(1000), { PATH: mkdtempSync(join(tmpdir(), 'empty-path-')) });
    expect(err!.message).toContain('newuidmap (Debian package uidmap)');
    expect(err!.message).toContain('fakeroot (Debian package fakeroot)');
    expect(err!.hint).toMatch(/apt-get install mmdebstrap .*uidmap fakeroot$/);
  });
});
