/**
 * Running things in the guest: the heartbeat and the collector, over the serial console (fbxen types
 * the command into a root shell there) or over ssh (the scripts are streamed to `sh -s`).
 */
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { EnvironmentError, EvidenceIncompleteError, InputError, TimeoutError, ToolstackError } from '../errors.js';
import { formatCommand, shellQuote, type Runner, type StreamingProcess } from '../exec/runner.js';
import { checkBundleRun, loadEvidence, sshArgs, type Bundle, type HostKeyChecking } from '../verify/index.js';
import { ConsoleFrameReader, type ConsoleExtraction } from '../verify/console-frame.js';
import type { Progress } from '../progress.js';
import { ConsoleCapture } from './capture.js';
import type { StampedLine } from './heartbeat.js';
import type { BeatTarget, GuestChannel, GuestLoad } from './types.js';
import { sleep } from '../util/sleep.js';

export const GUEST_COLLECTOR = '/usr/local/libexec/fbxen-collect';
export const GUEST_HEARTBEAT = '/usr/local/libexec/fbxen-heartbeat';

export function stopFile(hbRun: string): string {
  return `/tmp/fbxen-heartbeat-${hbRun}.stop`;
}

export function heartbeatArgs(hbRun: string, load: GuestLoad, maxSeconds: number, beat?: BeatTarget): string[] {
  return ['--run', hbRun, '--period-ms', '10', '--max-seconds', String(maxSeconds), '--load', load, '--stop-file', stopFile(hbRun), ...(beat ? ['--beat-to', `${beat.host}:${beat.port}`, '--beat-every-ms', String(beat.everyMs)] : [])];
}


/** What verify says of a frame no collector writes (over a limit, not a bundle): exit 3. */
const REJECTED_HINT = 'the guest sent a frame fbxen-collect never writes (limits: docs/probe-protocol.md §5): collect the evidence again from a guest you trust';

/**
 * Waits for the collector's frame of run/phase in the capture, reading from position `from` (a
 * `capture.received` value). Each poll hands the frame reader only what the capture grew by, so a long
 * wait costs time linear in the console. Lost lines → evidence incomplete; a frame over a limit →
 * evidence rejected (exit 3), as verify says it.
 */
export async function waitForCapturedFrame(capture: ConsoleCapture, run: string, phase: string, timeoutMs: number, opts: { pollMs?: number; signal?: AbortSignal | undefined; from?: number; guestDown?: (() => Promise<string | undefined>) | undefined } = {}): Promise<Bundle> {
  const deadline = Date.now() + timeoutMs;
  const reader = new ConsoleFrameReader(run);
  let pos = opts.from ?? 0;
  let seenCapture = -1;
  let seenReader = -1;
  let last = { status: 'absent' } as ConsoleExtraction; // assigned in look(): no narrowing here
  const look = async (final: boolean) => {
    if (capture.version !== seenCapture || final) {
      seenCapture = capture.version;
      reader.push(capture.textSince(pos));
      pos = capture.received;
      // At the deadline a last line without its newline counts too.
      if (final) reader.end();
      if (reader.version !== seenReader || final) {
        seenReader = reader.version;
        last = await reader.result(phase);
      }
    }
    if (last.status === 'complete') {
      // a bundle of another run framed under this one is refused, as verify does
      checkBundleRun(last.bundle, { frameRun: last.run, expected: run, what: `the console frame of ${phase} (run ${run})` });
      return last.bundle;
    }
    return undefined;
  };
  for (;;) {
    const got = await look(false);
    if (got) return got;
    const down = await opts.guestDown?.();
    if (down !== undefined) {
      // the frame may have been finished just before the guest went
      const final = await look(true);
      if (final) return final;
      throw new ToolstackError(`the guest ${down} before the collector finished (${phase}, run ${run})`, { hint: 'read console.log in the run directory to see how far the guest got' });
    }
    if (Date.now() >= deadline) break;
    await sleep(opts.pollMs ?? 100, opts.signal);
  }
  const got = await look(true);
  if (got) return got;
  if (last.status === 'rejected') throw new InputError(`${last.reason} (on the console)`, { hint: REJECTED_HINT });
  if (last.status === 'incomplete') {
    throw new EvidenceIncompleteError(`evidence incomplete: ${last.missingLines} of ${last.totalLines} frame lines of ${phase} were lost on the console`, {
      hint: 'both copies of those lines were lost: reduce console noise or use --evidence ssh',
    });
  }
  throw new TimeoutError(`no collector frame for ${phase} (run ${run}) on the console within ${Math.round(timeoutMs / 1000)} s`, {
    hint: 'check that a root shell is on the serial console and that the collector is installed in the guest (--guest-collector), or use --evidence ssh',
  });
}

/** Typing into the guest's serial console: the console attachment the flow holds now. */
export interface ConsoleKeyboard {
  write(text: string): void;
}

export interface ConsoleChannelOptions {
  keyboard: ConsoleKeyboard;
  capture: ConsoleCapture;
  collectorPath?: string | undefined;
  heartbeatPath?: string | undefined;
  signal?: AbortSignal | undefined;
  pollMs?: number | undefined;
  /** how long to wait for a login prompt or shell after a newline */
  settleMs?: number | undefined;
}

/**
 * The console channel: commands typed into a root shell on the serial console. A `login:` prompt is
 * answered with `root` (fbxen images, like FreeBSD's base sets, have no root password); anything else
 * (a password prompt) is the user's to set up.
 */
export function consoleChannel(o: ConsoleChannelOptions): GuestChannel {
  const collector = o.collectorPath ?? GUEST_COLLECTOR;
  const heartbeat = o.heartbeatPath ?? GUEST_HEARTBEAT;
  let hbFrom = 0;
  const type = (line: string) => o.keyboard.write(`${line}\n`);
  return {
    kind: 'console',
    async prepare() {
      type('');
      await sleep(o.settleMs ?? 1000, o.signal);
      if (/login:\s*$/.test(o.capture.tail())) {
        type('root');
        await sleep(o.settleMs ?? 1000, o.signal);
      }
      if (/Password:\s*$/.test(o.capture.tail())) {
        throw new EnvironmentError('the guest console asks for a password', { hint: 'log in as root on the serial console first (xl console), or use --evidence ssh' });
      }
    },
    async startHeartbeat(hbRun, load, maxSeconds, beat) {
      hbFrom = o.capture.lines.length;
      // Background job of the console shell: its lines go to the console, stamped on arrival here.
      type(`${['sh', heartbeat, ...heartbeatArgs(hbRun, load, maxSeconds, beat)].map(shellQuote).join(' ')} &`);
    },
    async stopHeartbeat(hbRun) {
      type(`touch ${stopFile(hbRun)}`);
    },
    heartbeatLines() {
      return o.capture.lines.slice(hbFrom);
    },
    async collect(run, phase, timeoutMs, guestDown) {
      const from = o.capture.received;
      type(['sh', collector, '--frame', '--run', run, '--phase', phase].map(shellQuote).join(' '));
      return waitForCapturedFrame(o.capture, run, phase, timeoutMs, { pollMs: o.pollMs, signal: o.signal, from, guestDown });
    },
    async close() {},
    planCollect(run, phase) {
      return `type on the console: ${['sh', collector, '--frame', '--run', run, '--phase', phase].map(shellQuote).join(' ')}   (wait for its FBXEN1 frame)`;
    },
    planHeartbeat(hbRun, load, maxSeconds) {
      return [`type on the console: ${['sh', heartbeat, ...heartbeatArgs(hbRun, load, maxSeconds)].map(shellQuote).join(' ')} &`, `type on the console: touch ${stopFile(hbRun)}   (after the migration)`];
    },
  };
}

export interface SshTarget {
  target: string;
  identity?: string | undefined;
  port?: number | undefined;
  hostKeyChecking: HostKeyChecking;
}

export function sshBaseArgs(s: SshTarget): string[] {
  const checking = { strict: ['-o', 'StrictHostKeyChecking=yes'], 'accept-new': ['-o', 'StrictHostKeyChecking=accept-new'], off: ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'] }[s.hostKeyChecking];
  return ['-o', 'BatchMode=yes', '-o', 'ServerAliveInterval=5', ...checking, ...(s.identity ? ['-i', s.identity, '-o', 'IdentitiesOnly=yes'] : []), ...(s.port ? ['-p', String(s.port)] : []), '--', s.target];
}

export interface SshChannelOptions {
  ssh: SshTarget;
  runner: Runner;
  progress: Progress;
  cwd: string;
  signal?: AbortSignal | undefined;
  /** host-side copies streamed to `sh -s` (default: guest/ of this package) */
  collectorScript: string;
  heartbeatScript: string;
  now?: () => number;
}

/**
 * The ssh channel: the heartbeat streamed to `sh -s` in the guest, its lines coming back on ssh's stdout
 * (TCP holds them through the migration: none are lost, they arrive late); the collector through
 * fbxen verify's ssh source.
 */
export function sshChannel(o: SshChannelOptions): GuestChannel {
  let hb: { proc: StreamingProcess; capture: ConsoleCapture } | undefined;
  const hbCommand = (hbRun: string, load: GuestLoad, maxSeconds: number, beat?: BeatTarget) => ['sh', '-s', '--', ...heartbeatArgs(hbRun, load, maxSeconds, beat)];
  return {
    kind: 'ssh',
    async prepare() {},
    async startHeartbeat(hbRun, load, maxSeconds, beat) {
      const script = await readFile(o.heartbeatScript).catch((err: unknown) => {
        throw new EnvironmentError(`the guest heartbeat script ${o.heartbeatScript} is missing`, { hint: 'reinstall fbxen (it ships guest/fbxen-heartbeat)', cause: err });
      });
      const capture = new ConsoleCapture(undefined, o.now);
      // execa takes only fd-backed streams as stdin: ask for a pipe and write the script into it.
      const proc = o.runner.stream('ssh', [...sshBaseArgs(o.ssh), ...hbCommand(hbRun, load, maxSeconds, beat)], { stdin: 'pipe' as unknown as Readable, ...(o.signal ? { signal: o.signal } : {}) });
      proc.stdin?.on('error', () => undefined);
      proc.stdin?.end(script);
      proc.stdout.on('data', (d: Buffer) => capture.write(d));
      proc.done.catch(() => undefined);
      hb = { proc, capture };
    },
    async stopHeartbeat(hbRun) {
      await o.runner.run('ssh', [...sshBaseArgs(o.ssh), 'touch', stopFile(hbRun)], { timeoutMs: 30_000, allowFailure: true });
      if (hb) await Promise.race([hb.proc.done.catch(() => undefined), sleep(5000)]);
    },
    heartbeatLines() {
      return hb?.capture.lines ?? [];
    },
    async collect(run, phase) {
      return loadEvidence(
        { kind: 'ssh', target: o.ssh.target, identity: o.ssh.identity, port: o.ssh.port, hostKeyChecking: o.ssh.hostKeyChecking, run, phase },
        { runner: o.runner, progress: o.progress, signal: o.signal, cwd: o.cwd, collectorPath: o.collectorScript },
      );
    },
    async close() {
      hb?.proc.kill();
    },
    planCollect(run, phase) {
      const args = sshArgs({ kind: 'ssh', target: o.ssh.target, identity: o.ssh.identity, port: o.ssh.port, hostKeyChecking: o.ssh.hostKeyChecking, run, phase });
      return `${formatCommand('ssh', args)} < ${o.collectorScript}`;
    },
    planHeartbeat(hbRun, load, maxSeconds) {
      return [`${formatCommand('ssh', [...sshBaseArgs(o.ssh), ...hbCommand(hbRun, load, maxSeconds)])} < ${o.heartbeatScript}   (lines stamped on arrival)`, `${formatCommand('ssh', [...sshBaseArgs(o.ssh), 'touch', stopFile(hbRun)])}   (after the migration)`];
    },
  };
}
