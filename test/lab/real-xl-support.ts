/**
 * Shared by the real-xl tests (test/lab/real-xl-*.test.ts): the lab they run on (the one
 * scripts/lab-test.sh started in FBXEN_LAB_DIR, or one they start and stop themselves), commands in its
 * dom0, fbxen run as a child process (so a test can interrupt it), and fbxen's xl driver over the lab's
 * ssh connection. These tests meet the REAL xl of Debian's Xen 4.17, not the fake one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { createExecaRunner, type CommandRecord } from '../../src/core/exec/runner.js';
import { SshSession } from '../../src/core/exec/ssh.js';
import { labPaths } from '../../src/core/lab/paths.js';
import { resolveLabTarget, sessionTarget } from '../../src/core/lab/target.js';
import { XlDriver } from '../../src/core/toolstack/xl/xl-driver.js';
import { CLI, ensureBuilt, fbxen, type CliResult } from '../support/cli.js';
import { sampleDist, tmpDir } from '../support/samples.js';

export const enabled = process.env.FBXEN_LAB_TESTS === '1';
export const SKIP = enabled ? '' : ' (skipped: set FBXEN_LAB_TESTS=1 to run, as scripts/lab-test.sh does: a real Xen under QEMU, minutes of emulation)';
export const labDir = process.env.FBXEN_LAB_DIR || join(homedir(), '.cache', 'fbxen', 'lab-test');

/** The lab is up (started here when none ran: then `startedHere`, and the caller takes it down). */
export async function ensureLab(): Promise<{ startedHere: boolean }> {
  try {
    await resolveLabTarget({ dir: labDir });
    return { startedHere: false };
  } catch {
    fbxen(['lab', 'down', '--dir', labDir]);
    const up = fbxen(['lab', 'up', '--dir', labDir, '--timeout', '900']);
    if (up.code !== 0) throw new Error(`fbxen lab up failed (exit ${up.code}):\n${up.stderr.slice(-3000)}`);
    return { startedHere: true };
  }
}

/**
 * The image the real-xl tests boot: `fbxen build` of the test sample (FreeBSD-shaped, NOT bootable: no
 * FreeBSD ever answers), 256 MiB raw, no swap, into WORK/out; its path.
 */
export function buildSampleImage(work: string): string {
  const out = join(work, 'out');
  const b = fbxen(['build', '--dist', sampleDist(), '--arch', 'amd64', '--out', out, '--cache-dir', join(work, 'cache'), '--disk-size', '256M', '--swap', '0', '--format', 'raw', '--name', 'real'], { env: { SOURCE_DATE_EPOCH: '1717300000' } });
  if (b.code !== 0) throw new Error(`fbxen build failed: ${b.stderr}`);
  return join(out, 'real.raw');
}

export function labDown(): void {
  fbxen(['lab', 'down', '--dir', labDir]);
}

/** What a real-xl test file works with, set in its beforeAll: its temporary directory and the sample image. */
export interface LabFile {
  work: string;
  image: string;
}

/**
 * A real-xl test file's lab, as vitest hooks: before all, the lab up (started here when none ran) and the
 * sample image built in a temporary directory named after `name`; after each test, the fbxen children it
 * left stopped; after all, in the dom0, every domain whose name starts with `domainPrefix` destroyed and
 * `paths` removed (whatever a failed test left), then the lab down if it was started here. Does nothing
 * unless the lab tests are enabled.
 */
export function useLab(name: string, domainPrefix: string, paths: string[]): LabFile {
  const lab: LabFile = { work: '', image: '' };
  let startedHere = false;
  beforeAll(async () => {
    if (!enabled) return;
    ({ startedHere } = await ensureLab());
    lab.work = tmpDir(name);
    lab.image = buildSampleImage(lab.work);
  }, 1_200_000);
  afterEach(stopChildren, 300_000);
  afterAll(async () => {
    if (!enabled) return;
    await labSh(`for d in $(xl list | awk '/^${domainPrefix}/{print $1}'); do xl destroy "$d"; done; rm -rf ${paths.join(' ')}`);
    if (startedHere) labDown();
  }, 300_000);
  return lab;
}

/** fbxen.yaml naming the lab directory (and `boot: host: lab` with `bootHost`), in `dir`. */
export function labConfig(dir: string, bootHost = false): string {
  const file = join(dir, bootHost ? 'fbxen-boot-lab.yaml' : 'fbxen.yaml');
  writeFileSync(file, `lab:\n  dir: ${labDir}\n${bootHost ? 'boot:\n  host: lab\n' : ''}`);
  return file;
}

export interface Running {
  child: ChildProcess;
  stderr(): string;
  done: Promise<CliResult>;
}

const children = new Set<Running>();

/**
 * A test that failed half-way leaves its fbxen running: SIGINT it (fbxen then destroys its domain and
 * removes its directory in the dom0, as a user's Ctrl-C does) and wait for it, so that the next test
 * does not share the lab's two CPUs with it. For afterEach.
 */
export async function stopChildren(): Promise<void> {
  for (const r of [...children]) {
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGINT');
    await r.done;
  }
}

/** fbxen as a child process: its output collected, its end awaited, a signal sent when the test says. */
export function fbxenChild(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  ensureBuilt();
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: '1', CI: 'true', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const running: Running = { child, stderr: () => stderr, done };
  children.add(running);
  void done.then(() => children.delete(running));
  return running;
}

/** A shell command in the lab's dom0 (through `fbxen lab ssh`, so the lab's own pinned connection). */
export async function labSh(command: string): Promise<CliResult> {
  return fbxenChild(['lab', 'ssh', '--dir', labDir, '--', command]).done;
}

/** The xl list rows of the dom0: name → { id, state }. */
export async function xlList(): Promise<Map<string, { id: string; state: string }>> {
  const r = await labSh('xl list');
  if (r.code !== 0) throw new Error(`xl list failed in the lab: ${r.stderr}`);
  const rows = new Map<string, { id: string; state: string }>();
  for (const line of r.stdout.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 5) rows.set(f[0]!, { id: f[1]!, state: f[4]! });
  }
  return rows;
}

/** Polls `check` every 3 s until it answers, `deadlineMs` passes (then throws, naming `what`), or `stop` resolves. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, deadlineMs: number, stop?: Promise<unknown>): Promise<T> {
  const end = Date.now() + deadlineMs;
  let stopped = false;
  void stop?.then(() => (stopped = true));
  while (Date.now() < end && !stopped) {
    const v = await check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 3000));
  }
  throw new Error(`${what}: not within ${Math.round(deadlineMs / 1000)} s${stopped ? ' (fbxen exited first)' : ''}`);
}

/** fbxen's xl driver on the lab's dom0 over one ssh connection (its session too), with every command it ran recorded. */
export async function labDriver(run: string, root = '/var/lib/fbxen/runs'): Promise<{ driver: XlDriver; commands: CommandRecord[]; session: SshSession }> {
  const { target, options } = sessionTarget(await resolveLabTarget({ dir: labDir }));
  const commands: CommandRecord[] = [];
  const runner = createExecaRunner({ onCommand: (r) => commands.push(r) });
  const session = new SshSession(target, { ...options, remoteRoot: root }, { runner, env: process.env });
  return { driver: new XlDriver({ runner, backTo: 'localhost', remote: { session, root, run } }), commands, session };
}

/**
 * A running HVM domain on the lab made from fbxen's own config (`fbxen config xl`, host from fbxen.yaml)
 * on a 256 MiB disk in DIR of the dom0 whose boot sector only waits (sti; hlt; jmp back): it boots no OS,
 * and need not, to be saved or migrated. A blank disk would not do: SeaBIOS finds no bootable device,
 * reboots after 60 s, and on_reboot="destroy" takes the domain away in the middle of the test; nor would
 * cli; hlt: Xen takes an HVM vCPU that halts with interrupts off down, and the domain with it.
 */
export async function keptDomain(work: string, image: string, name: string, dir: string): Promise<void> {
  const cfg = labConfig(work, true);
  const c = fbxen(['--config', cfg, 'config', 'xl', '--image', image, '--name', name, '--vcpus', '1', '--memory', '256', '--empty-cdrom']);
  if (c.code !== 0) throw new Error(`fbxen config xl failed: ${c.stderr}`);
  const xlcfg = c.stdout.replace(/target=\S*real\.raw/, `target=${dir}/blank.raw`);
  if (!xlcfg.includes(`target=${dir}/blank.raw`)) throw new Error(`no disk target to replace in:\n${c.stdout}`);
  const made = await labSh(`set -e; mkdir -p ${dir}; truncate -s 256M ${dir}/blank.raw; printf '\\373\\364\\353\\375' | dd of=${dir}/blank.raw conv=notrunc status=none; printf '\\125\\252' | dd of=${dir}/blank.raw bs=1 seek=510 conv=notrunc status=none; printf '%s' '${xlcfg.replace(/'/g, "'\\''")}' > ${dir}/${name}.cfg; xl create -q ${dir}/${name}.cfg`);
  if (made.code !== 0) throw new Error(`xl create of ${name} failed in the lab: ${made.stderr}`);
}

/** The lab image's directory (the stand-in guest's kernel and base archive): the running lab's, from its state. */
export function labImageDir(): string {
  const paths = labPaths(labDir);
  const state = JSON.parse(readFileSync(paths.state, 'utf8')) as { imageKey: string };
  const dir = paths.image(state.imageKey).dir;
  if (!existsSync(join(dir, 'standin-base.cpio.gz'))) throw new Error(`${dir} has no standin-base.cpio.gz: the lab runs an image from before the stand-in; fbxen lab down, then up (the image key changed, so it rebuilds)`);
  return dir;
}

/**
 * `fbxen ARGS` booting the stand-in guest (FBXEN_TEST_STANDIN_GUEST=standin) into `runDir`, up to 5
 * times: the stand-in's own Linux kernel may die under emulation (docs/lab.md, "The stand-in guest"), a
 * crash of the test double that fbxen reports as documented ("the guest crashed" / "went away"). Before
 * each retry `cleanup` runs in the dom0. The last result, its console log, and one line per attempt.
 */
export async function bootStandin(args: string[], standin: string, runDir: string, cleanup: string, label: string): Promise<{ r: CliResult; console: string; attempts: string[] }> {
  const attempts: string[] = [];
  for (let attempt = 1; ; attempt++) {
    const t = Date.now();
    rmSync(runDir, { recursive: true, force: true });
    if (attempt > 1) await labSh(cleanup);
    const r = await fbxenChild(args, { FBXEN_TEST_STANDIN_GUEST: standin }).done;
    const console = existsSync(join(runDir, 'console.log')) ? readFileSync(join(runDir, 'console.log'), 'latin1') : '';
    attempts.push(`boot ${Math.round((Date.now() - t) / 1000)} s (attempt ${attempt}, exit ${r.code})`);
    if (attempt === 5 || !/the guest crashed|the guest went away/.test(r.stderr)) return { r, console, attempts };
    process.stderr.write(`${label}: the stand-in guest died on boot ${attempt} (the test double, not fbxen${/Kernel panic/.test(console) ? ': a kernel panic' : ''}); booting it again\n`);
  }
}

/** What a failed boot's assertion shows: fbxen's stderr and the console's last lines without frame data. */
export const bootShown = (r: CliResult, console: string) => `${r.stderr}\nconsole (no frame data lines):\n${console.split('\n').filter((l) => !l.startsWith('FBXEN1 D ')).slice(-30).join('\n')}`;

/** Xen's own record of guests that died: the `Triple fault` lines of `xl dmesg` (one per death; domids never repeat). */
export async function xenTripleFaults(): Promise<string[]> {
  const r = await labSh("xl dmesg | grep 'Triple fault' || true");
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

/**
 * Did the stand-in `name` die (the test double, not fbxen) since `before` (xenTripleFaults() then)? Yes
 * when Xen logged a new triple fault, xl lists the domain crashed (its kernel panicked: on_crash
 * "preserve"), or fbxen said the guest crashed or went away (its words, as bootStandin takes them): the
 * answer names which. Anything else is a failure of the test.
 */
export async function standinDied(before: readonly string[], fbxenSaid: string, name: string): Promise<string | undefined> {
  const faults = (await xenTripleFaults()).filter((l) => !before.includes(l));
  if (faults.length) return `Xen: ${faults.join('; ')}`;
  const state = (await xlList().catch(() => new Map<string, { state: string }>())).get(name)?.state ?? '';
  if (state.includes('c')) return `xl lists ${name} crashed (${state})`;
  const said = /[^\n]*the guest (crashed|went away)[^\n]*/.exec(fbxenSaid)?.[0];
  return said ? `fbxen: ${said.trim()}` : undefined;
}

/**
 * Parts of a test run on one kept stand-in guest that may die under the lab's emulation: `part` runs on a
 * running stand-in (booted by `boot` when none runs), and when it fails and the stand-in died meanwhile
 * (standinDied), the stand-in is booted again and the part starts over, up to 3 times; every part passes
 * only by a whole run of it. A failure without a death of the stand-in is thrown at once.
 */
export class StandinParts {
  /** a stand-in runs now (boot --keep); set by a test that booted it itself */
  running = false;
  /** one line per death after a boot: what ran, the attempt, the evidence */
  readonly deaths: string[] = [];
  constructor(private readonly o: { name: string; label: string; boot: () => Promise<void> }) {}

  async part(what: string, part: (attempt: number) => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (!this.running) {
        await this.o.boot();
        this.running = true;
      }
      const before = await xenTripleFaults();
      try {
        await part(attempt);
        return;
      } catch (err) {
        const died = await standinDied(before, err instanceof Error ? err.message : String(err), this.o.name);
        if (!died || attempt === 3) throw err;
        this.deaths.push(`${what} (attempt ${attempt}): ${died}`);
        process.stderr.write(`${this.o.label}: the stand-in guest died during ${what} (the test double, not fbxen: ${died}); booting it again\n`);
        this.running = false;
      }
    }
  }
}
