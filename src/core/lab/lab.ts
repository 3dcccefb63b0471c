/**
 * The lab's flows: up (image, QEMU, wait for `xl info` over ssh, state file), status, ssh and down.
 * A lab that did not come up is stopped before the error is thrown: `lab up` leaves a running lab or
 * nothing.
 */
import { spawn } from 'node:child_process';
import { access, constants, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { EnvironmentError, TimeoutError, UsageError } from '../errors.js';
import type { Runner } from '../exec/runner.js';
import { sshEnvironment } from '../exec/ssh.js';
import type { Progress } from '../progress.js';
import { sleep } from '../util/sleep.js';
import { ensureImage, imageInputs, missingTools, readManifest } from './image.js';
import { defaultLabDir, labPaths, type LabPaths } from './paths.js';
import { chooseAccel, checkQemuPath, qemuArgs, type Accel } from './qemu.js';
import { readLabState, readTail, writeLabState, type LabStateT } from './state.js';
import { isLabProcess, knownHostsLine, resolveLabTarget, sshArgs, targetOf, type LabSshTarget } from './target.js';
import { parseXlInfo, summarizeXlInfo, type XlInfoSummary } from './xl-info.js';

export interface LabDeps {
  runner: Runner;
  progress: Progress;
  signal?: AbortSignal;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export interface LabUpRequest {
  dir?: string | undefined;
  accel: 'auto' | Accel;
  port?: number | undefined;
  memoryMiB: number;
  cpus: number;
  /** Seconds from QEMU's start until `xl info` must answer. */
  timeoutSec: number;
}

export interface LabUpResult {
  state: LabStateT;
  accelWhy: string;
  imageBuilt: boolean;
  buildSeconds: number | null;
  /** QEMU start to the first `xl info` answer. */
  bootSeconds: number;
  xl: XlInfoSummary;
  sshCommand: string;
}

const SERIAL_TAIL_BYTES = 3000;

/** The tools are looked up on the PATH of the command's environment (tests put stand-ins first). */
const toolEnv = (deps: LabDeps) => ({ PATH: deps.env.PATH });

function pathsOf(dir: string | undefined, deps: LabDeps): LabPaths {
  const paths = labPaths(dir ?? defaultLabDir(deps.env), deps.cwd);
  checkQemuPath(paths.dir);
  return paths;
}

/** A free port on 127.0.0.1 (the kernel's choice), or an error naming a taken one. */
async function loopbackPort(port: number | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new EnvironmentError(`port ${port} on 127.0.0.1 is taken`, { hint: 'give --port another port, or leave --port out to take a free one' })
          : new EnvironmentError(`cannot bind 127.0.0.1:${port ?? 0}: ${err.message}`, { hint: 'check the loopback interface' }),
      );
    });
    server.listen(port ?? 0, '127.0.0.1', () => {
      const p = (server.address() as { port: number }).port;
      server.close(() => resolve(p));
    });
  });
}

async function kvmUsable(): Promise<boolean> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function serialTail(paths: { serialLog: string }): Promise<string> {
  const tail = (await readTail(paths.serialLog, SERIAL_TAIL_BYTES)).replace(/\r/g, '');
  return tail.trim() ? tail.trim().split('\n').slice(-25).join('\n') : '(the serial log is empty)';
}

export function sshCommandLine(t: LabSshTarget): string {
  return ['ssh', ...sshArgs(t, { batch: false })].map((a) => (/^[A-Za-z0-9_@%+=:,./[\]-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** `xl info` over ssh: the parsed answer, or undefined when dom0 does not answer (yet). */
async function xlInfo(t: LabSshTarget, deps: LabDeps, timeoutMs: number): Promise<Record<string, string> | undefined> {
  try {
    const r = await deps.runner.run('ssh', [...sshArgs(t, { connectTimeoutSec: 10 }), 'xl', 'info'], { allowFailure: true, timeoutMs, signal: deps.signal, env: toolEnv(deps) });
    const info = parseXlInfo(r.stdout);
    return r.exitCode === 0 && info.xen_major !== undefined ? info : undefined;
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    return undefined;
  }
}

async function waitGone(pid: number, serialLog: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!(await isLabProcess({ pid, serialLog }))) return true;
    await sleep(250);
  }
  return !(await isLabProcess({ pid, serialLog }));
}

/** A process that exits between the check and the signal is what was wanted. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Stops the lab's QEMU: dom0 powers off (Xen then powers the VM off), else SIGTERM, else SIGKILL. */
async function stopQemu(state: Pick<LabStateT, 'pid' | 'serialLog'> & Partial<LabStateT>, deps: LabDeps, graceful: boolean): Promise<string> {
  if (!(await isLabProcess(state))) return 'not running';
  if (graceful && state.port !== undefined && state.identityFile && state.knownHostsFile) {
    await deps.runner
      .run('ssh', [...sshArgs(targetOf(state as LabStateT), { connectTimeoutSec: 5 }), 'sync; busybox poweroff -f'], { allowFailure: true, timeoutMs: 15_000, env: toolEnv(deps) })
      .catch(() => undefined);
    if (await waitGone(state.pid, state.serialLog, 20_000)) return 'powered off';
  }
  signal(state.pid, 'SIGTERM');
  if (await waitGone(state.pid, state.serialLog, 10_000)) return 'stopped (SIGTERM)';
  signal(state.pid, 'SIGKILL');
  if (await waitGone(state.pid, state.serialLog, 5_000)) return 'killed (SIGKILL)';
  throw new EnvironmentError(`QEMU (pid ${state.pid}) survived SIGKILL`, { hint: `check it with ps -p ${state.pid}` });
}

export async function labUp(req: LabUpRequest, deps: LabDeps): Promise<LabUpResult> {
  const paths = pathsOf(req.dir, deps);
  await mkdir(paths.dir, { recursive: true });
  const previous = await readLabState(paths.state);
  if (previous && (await isLabProcess(previous))) {
    throw new UsageError(`a lab already runs in ${paths.dir} (QEMU pid ${previous.pid}, ssh port ${previous.port})`, { hint: 'use it (fbxen lab status, fbxen lab ssh), or stop it first: fbxen lab down' });
  }
  await rm(paths.state, { force: true });
  const missing = missingTools(['qemu-system-x86_64', 'ssh', 'ssh-keygen'], deps.env);
  if (missing) throw missing;

  // A taken --port is said before a build of minutes, not after it.
  if (req.port !== undefined) await loopbackPort(req.port);
  const inputs = await imageInputs(deps.runner, deps.signal);
  const { image, key, built, manifest } = await ensureImage(paths, inputs, deps);
  const port = await loopbackPort(req.port);
  const { accel, why } = chooseAccel(req.accel, await kvmUsable(), await readFile('/proc/cpuinfo', 'utf8').catch(() => ''));
  await writeFile(paths.knownHosts, knownHostsLine(port, await readFile(image.hostKeyPub, 'utf8')));
  await writeFile(paths.serialLog, '');
  await rm(paths.pidFile, { force: true });

  const args = qemuArgs({ accel, memoryMiB: req.memoryMiB, cpus: req.cpus, port, image: { disk: image.disk, xen: image.xen, kernel: image.kernel, initrd: image.initrd }, serialLog: paths.serialLog, pidFile: paths.pidFile });
  const startedAt = new Date();
  // A lab that did not start leaves none of its run files behind (the serial log stays: it says why).
  const forget = () => Promise.all([rm(paths.knownHosts, { force: true }), rm(paths.pidFile, { force: true }), rm(paths.state, { force: true })]);
  let pid: number;
  try {
    const qemu = await deps.progress.step(`start QEMU (${accel}: ${why}), ssh on 127.0.0.1:${port}`, () =>
      deps.runner.run('qemu-system-x86_64', args, { allowFailure: true, timeoutMs: 120_000, signal: deps.signal, env: toolEnv(deps) }),
    );
    if (qemu.exitCode !== 0) {
      const err = qemu.stderr.trim().split('\n').slice(-5).join('\n');
      if (/host ?forward|hostfwd/i.test(err)) throw new EnvironmentError(`port ${port} on 127.0.0.1 is taken (QEMU: ${err})`, { hint: 'give --port another port, or leave --port out' });
      if (accel === 'kvm') throw new EnvironmentError(`QEMU could not start with KVM: ${err}`, { hint: 'use --accel tcg (emulation)' });
      throw new EnvironmentError(`QEMU did not start: ${err}`, { hint: 'see the message above; scripts/lab-setup.sh installs what the lab needs' });
    }
    pid = Number((await readFile(paths.pidFile, 'utf8').catch(() => '')).trim());
    if (!Number.isSafeInteger(pid) || pid < 2) throw new EnvironmentError(`QEMU started but wrote no pid to ${paths.pidFile}`, { hint: 'check for a stray qemu-system-x86_64 process' });
  } catch (err) {
    await forget();
    throw err;
  }
  const state: LabStateT = { version: 1, pid, port, accel, dir: paths.dir, imageKey: key, identityFile: image.identity, knownHostsFile: paths.knownHosts, serialLog: paths.serialLog, startedAt: startedAt.toISOString() };
  await writeLabState(paths.state, state);

  try {
    const info = await deps.progress.step(`wait for dom0 to answer xl info over ssh (up to ${req.timeoutSec} s)`, async (handle) => {
      const deadline = startedAt.getTime() + req.timeoutSec * 1000;
      for (;;) {
        if (!(await isLabProcess(state))) throw new EnvironmentError(`QEMU exited before dom0 came up; the serial log ends:\n${await serialTail(paths)}`, { hint: `read ${paths.serialLog}` });
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new TimeoutError(`dom0 did not answer xl info over ssh within ${req.timeoutSec} s; the serial log ends:\n${await serialTail(paths)}`, {
            hint: `raise --timeout (emulation is slow on a loaded machine), or read ${paths.serialLog}`,
          });
        }
        const answer = await xlInfo(targetOf(state), deps, Math.min(left, 60_000));
        if (answer) return answer;
        const last = (await serialTail(paths)).split('\n').pop() ?? '';
        handle.output(`${Math.round((Date.now() - startedAt.getTime()) / 1000)} s: ${last.slice(0, 160)}`);
        await sleep(Math.min(3000, Math.max(0, deadline - Date.now())), deps.signal);
      }
    });
    const readyAt = new Date();
    const ready: LabStateT = { ...state, readyAt: readyAt.toISOString() };
    await writeLabState(paths.state, ready);
    return {
      state: ready,
      accelWhy: why,
      imageBuilt: built,
      buildSeconds: built ? manifest.buildSeconds : null,
      bootSeconds: Math.round((readyAt.getTime() - startedAt.getTime()) / 100) / 10,
      xl: summarizeXlInfo(info),
      sshCommand: sshCommandLine(targetOf(ready)),
    };
  } catch (err) {
    await stopQemu(state, deps, false).catch(() => undefined);
    await forget();
    throw err;
  }
}

export interface LabStatus {
  running: boolean;
  ready: boolean;
  dir: string;
  pid: number | null;
  port: number | null;
  accel: Accel | null;
  startedAt: string | null;
  readyAt: string | null;
  uptimeSeconds: number | null;
  ssh: (LabSshTarget & { command: string }) | null;
  xl: XlInfoSummary | null;
  image: { key: string; buildSeconds: number } | null;
}

/** The image kept in the lab directory (there is at most one after a build). */
async function cachedManifest(paths: LabPaths): Promise<Awaited<ReturnType<typeof readManifest>>> {
  const names = await readdir(paths.images).catch(() => [] as string[]);
  for (const name of names.filter((n) => /^[0-9a-f]{16}$/.test(n)).sort()) {
    const m = await readManifest(paths.image(name));
    if (m && m.key.startsWith(name)) return m;
  }
  return undefined;
}

export async function labStatus(req: { dir?: string | undefined }, deps: LabDeps): Promise<LabStatus> {
  const paths = pathsOf(req.dir, deps);
  const state = await readLabState(paths.state);
  const running = state !== undefined && (await isLabProcess(state));
  const manifest = state ? await readManifest(paths.image(state.imageKey)) : await cachedManifest(paths);
  const base: LabStatus = { running: false, ready: false, dir: paths.dir, pid: null, port: null, accel: null, startedAt: null, readyAt: null, uptimeSeconds: null, ssh: null, xl: null, image: manifest ? { key: manifest.key, buildSeconds: manifest.buildSeconds } : null };
  if (!state || !running) return base;
  const target = targetOf(state);
  const info = state.readyAt ? await xlInfo(target, deps, 30_000) : undefined;
  return {
    ...base,
    running: true,
    ready: state.readyAt !== undefined,
    pid: state.pid,
    port: state.port,
    accel: state.accel,
    startedAt: state.startedAt,
    readyAt: state.readyAt ?? null,
    uptimeSeconds: Math.round((Date.now() - Date.parse(state.startedAt)) / 1000),
    ssh: { ...target, command: sshCommandLine(target) },
    xl: info ? summarizeXlInfo(info) : null,
  };
}

/** `fbxen lab ssh [-- CMD]`: ssh with the terminal attached; resolves with ssh's exit status. */
export async function labSsh(req: { dir?: string | undefined; command: readonly string[] }, deps: LabDeps): Promise<number> {
  const target = await resolveLabTarget({ dir: pathsOf(req.dir, deps).dir, env: deps.env });
  const args = [...sshArgs(target, { batch: false }), ...(req.command.length ? ['--', ...req.command] : [])];
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: 'inherit', signal: deps.signal, env: sshEnvironment({ ...process.env, PATH: deps.env.PATH }, ['TERM']) });
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new EnvironmentError('ssh was not found on PATH', { hint: 'install openssh-client' }) : err),
    );
    child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 + 15 : 255)));
  });
}

export interface LabDownResult {
  dir: string;
  stopped: string;
  purged: boolean;
}

/** Stops the lab (nothing left running), keeps the cached image unless `purge`. */
export async function labDown(req: { dir?: string | undefined; purge: boolean }, deps: LabDeps): Promise<LabDownResult> {
  const paths = pathsOf(req.dir, deps);
  let stopped = 'no lab was running';
  let state: LabStateT | undefined;
  try {
    state = await readLabState(paths.state);
  } catch (err) {
    // A state file fbxen cannot read names no process it could safely stop: remove it and say so.
    deps.progress.warn(`${(err as Error).message}; removed it (no process was stopped: check \`ps -C qemu-system-x86_64\`)`);
  }
  if (state) stopped = await stopQemu(state, deps, true);
  await rm(paths.state, { force: true });
  await rm(paths.pidFile, { force: true });
  await rm(paths.knownHosts, { force: true });
  if (req.purge) {
    await rm(paths.images, { recursive: true, force: true });
    await rm(paths.serialLog, { force: true });
  }
  return { dir: paths.dir, stopped, purged: req.purge };
}
