/**
 * A stand-in lab for the tests of --host lab and of `lab down`/`lab ssh` (a SIMULATION: no QEMU, no VM;
 * lab.integration.test.ts and the real-xl tests run the real one): a node process whose command line
 * carries the lab's `file:SERIAL` argument as QEMU's does (so isLabProcess knows it), and a lab directory
 * with the state a ready lab writes. Each test file ends its stand-ins with afterEach(stopStandIns).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LabStateT } from '../../src/core/lab/state.js';

const children: ChildProcess[] = [];

/** Kills the stand-ins still running (for afterEach). */
export function stopStandIns(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** A process that looks like the lab's QEMU; `ignoreTerm` makes it outlive SIGTERM (then down must SIGKILL). */
export function standInQemu(serialLog: string, ignoreTerm = false): Promise<ChildProcess> {
  const code = `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} setInterval(() => {}, 1000); console.log('up');`;
  const child = spawn(process.execPath, ['-e', code, '--', '-serial', `file:${serialLog}`], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(child);
  return new Promise((resolve) => child.stdout!.once('data', () => resolve(child)));
}

/**
 * The state of a ready lab in `dir` (a new temporary directory when none is given) on `port`, with its
 * image directory and dom0 image made; nothing is written to state.json (the caller does, with a pid).
 */
export function fakeLabDir(port: number, dir = mkdtempSync(join(tmpdir(), 'fake-lab-'))): { dir: string; state: LabStateT } {
  const images = join(dir, 'images', 'bbbbbbbbbbbbbbbb');
  const state: LabStateT = {
    version: 1,
    pid: 0,
    port,
    accel: 'tcg',
    dir,
    imageKey: 'b'.repeat(64),
    identityFile: join(images, 'id_ed25519'),
    knownHostsFile: join(dir, 'known_hosts'),
    serialLog: join(dir, 'serial.log'),
    startedAt: new Date(Date.now() - 5000).toISOString(),
    readyAt: new Date().toISOString(),
  };
  mkdirSync(images, { recursive: true });
  writeFileSync(join(images, 'dom0.img'), 'image');
  return { dir, state };
}
