/**
 * xl on another machine (issue 15): one OpenSSH connection per run, shared by every command through
 * OpenSSH's connection multiplexing (a master with ControlMaster=yes, its socket in a private 0700
 * directory removed by close()). Strict host keys by default, BatchMode (never a prompt), no
 * environment sent (ssh runs with a minimal environment, so ssh_config's SendEnv finds nothing).
 *
 * runner() gives a Runner whose commands run on the host; put() copies a file there sparse-aware;
 * mkdirRunDir()/removeRunDir() manage the run's remote directory; `plan` gives the same command
 * lines for --dry-run. How a remote command ends when fbxen goes away: ssh-remote.ts.
 */
import { accessSync, constants as fsConstants, rmSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { EnvironmentError, InputError, TimeoutError, UsageError } from '../errors.js';
import { NAME_PATTERN, NAME_RULE } from '../util/names.js';
import { CommandFailedError, formatCommand, type RunResult, type Runner, type StreamingProcess } from './runner.js';
import { makeControlDir, openError, waitForMarker } from './ssh-open.js';
import { localFileSize, pipeCounted, tarArgs } from './ssh-put.js';
import { directCommand, lifelineCommand, MKDIR_RUN_SCRIPT, RECEIVE_SCRIPT, REMOVE_RUN_SCRIPT, scriptCommand } from './ssh-remote.js';
import { formatHostUrl, type SshTarget } from './ssh-target.js';

export { formatHostUrl, parseHostUrl, type HostTarget, type SshTarget } from './ssh-target.js';

export interface SshOptions {
  /** UserKnownHostsFile: the only file host keys are checked against (the global one is not read). */
  knownHosts?: string | undefined;
  /** The private key to offer, and only it (IdentitiesOnly). */
  identity?: string | undefined;
  /** ConnectTimeout, seconds (TCP connect and the SSH banner). */
  connectTimeoutSec?: number;
  /** ServerAliveInterval, seconds; the connection is declared dead after 3 unanswered probes. */
  serverAliveIntervalSec?: number;
  /** Where per-run directories go on the host. */
  remoteRoot?: string;
  /** The whole of open(): connect, key exchange, authentication, first command. */
  openTimeoutMs?: number;
}

export interface SshDeps {
  /** The local runner that starts ssh and tar. */
  runner: Runner;
  /** fbxen's environment (process.env): ssh gets only its KEEP_ENV part. */
  env?: NodeJS.ProcessEnv;
}

export const DEFAULT_REMOTE_ROOT = '/var/lib/fbxen/runs';
/** What ssh itself needs from the environment; nothing else reaches it (SendEnv LANG LC_* is Debian's default). */
const KEEP_ENV = new Set(['PATH', 'HOME', 'USER', 'LOGNAME', 'SSH_AUTH_SOCK']);

/** The environment an ssh child gets: KEEP_ENV (plus `extra`, e.g. TERM for an interactive shell), nothing else. */
export function sshEnvironment(base: NodeJS.ProcessEnv, extra: readonly string[] = []): Record<string, string> {
  const keep = new Set([...KEEP_ENV, ...extra]);
  return Object.fromEntries(Object.entries(base).filter((e): e is [string, string] => keep.has(e[0]) && e[1] !== undefined));
}
/**
 * Lines the local ssh (not the remote command) writes when the connection failed. Status 255 alone
 * does not say it: a remote command may exit 255, and xl migrate's own ssh prints "ssh: ..." lines.
 */
const SSH_OWN_ERROR = /^(mux_client_|muxclient: |Control socket |ControlSocket |Connection to \S+ closed|client_loop: |Timeout, server \S+ not responding|Host key verification failed|kex_exchange_identification)/m;
/** How long a status 255 waits for the master to show whether the connection is gone (it exits at once then). */
const MASTER_EXIT_WAIT_MS = 3000;
const CONTROL_PLACEHOLDER = '$TMPDIR/fbxen-ssh-XXXXXX/m';

export interface PutResult {
  remotePath: string;
  /** Bytes of the tar stream handed to ssh: what crossed the wire, before ssh's framing and cipher. */
  bytesSent: number;
  size: number;
  durationMs: number;
}

export class SshSession {
  readonly label: string;
  private readonly local: Runner;
  private readonly env: Record<string, string | undefined>;
  private readonly remoteRoot: string;
  private readonly options: SshOptions;
  private controlDir: string | undefined;
  private master: StreamingProcess | undefined;
  private masterEnded = false;
  private masterGone: Promise<void> = Promise.resolve();

  constructor(
    readonly target: SshTarget,
    options: SshOptions,
    deps: SshDeps,
  ) {
    this.label = formatHostUrl(target);
    this.local = deps.runner;
    const base = deps.env ?? process.env;
    // Unset, not just absent: the local runner merges its own environment under these.
    this.env = Object.fromEntries(Object.keys(base).map((k) => [k, KEEP_ENV.has(k) ? base[k] : undefined]));
    this.remoteRoot = checkRemoteRoot(options.remoteRoot ?? DEFAULT_REMOTE_ROOT);
    this.options = { ...options, knownHosts: sshPath('--known-hosts', options.knownHosts), identity: sshPath('--identity', options.identity) };
  }

  /** The master's control socket while the session is open (for a tool that should share the connection). */
  get controlSocket(): string | undefined {
    return this.master && this.controlDir ? join(this.controlDir, 'm') : undefined;
  }

  private controlPath(): string {
    return this.controlDir ? join(this.controlDir, 'm') : CONTROL_PLACEHOLDER;
  }

  /** Options every ssh of this session gets, master or client. */
  private commonArgs(): string[] {
    const o = this.options;
    return [
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=yes',
      ...(o.knownHosts ? ['-o', `UserKnownHostsFile=${o.knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null'] : []),
      ...(o.identity ? ['-i', o.identity, '-o', 'IdentitiesOnly=yes'] : []),
      '-o', `ConnectTimeout=${o.connectTimeoutSec ?? 15}`,
      '-o', `ServerAliveInterval=${o.serverAliveIntervalSec ?? 15}`,
      '-o', 'ServerAliveCountMax=3',
      '-o', 'ForwardAgent=no',
      '-o', 'ForwardX11=no',
      '-o', 'ClearAllForwardings=yes',
      '-o', 'RequestTTY=no',
      // fbxen reads known_hosts, never writes it (OpenSSH would add the host's other keys by default).
      '-o', 'UpdateHostKeys=no',
      '-o', `ControlPath=${this.controlPath()}`,
    ];
  }

  private destination(): string[] {
    return ['-p', String(this.target.port), '-l', this.target.user, '--', this.target.host];
  }

  /** The master: holds the connection; its own remote command prints a marker, then waits for EOF. */
  private masterArgs(nonce: string): string[] {
    return [...this.commonArgs(), '-o', 'ControlMaster=yes', '-o', 'ControlPersist=no', ...this.destination(), `echo fbxen-ssh-ready-${nonce}; exec cat >/dev/null`];
  }

  private clientArgs(remote: string): string[] {
    return [...this.commonArgs(), '-o', 'ControlMaster=no', ...this.destination(), remote];
  }

  private controlArgs(op: 'check' | 'exit'): string[] {
    return [...this.commonArgs(), '-O', op, ...this.destination()];
  }

  private receiveArgs(remoteDir: string, name: string): string[] {
    return this.clientArgs(scriptCommand(RECEIVE_SCRIPT, [remoteDir, name]));
  }

  /** The command lines of each step, as --dry-run shows them (the control directory is made by open()). */
  readonly plan = {
    open: (): string[] => [`mkdir -m 0700 ${this.controlDir ?? dirname(CONTROL_PLACEHOLDER)}`, formatCommand('ssh', this.masterArgs('NONCE'))],
    run: (file: string, args: readonly string[], how: { readsStdin?: boolean } = {}): string =>
      formatCommand('ssh', this.clientArgs(how.readsStdin ? directCommand([file, ...args]) : lifelineCommand([file, ...args]))),
    put: (localFile: string, remoteDir: string): string => `${formatCommand('tar', tarArgs(localFile))} | ${formatCommand('ssh', this.receiveArgs(remoteDir, basename(localFile)))}`,
    mkdirRunDir: (run: string): string => formatCommand('ssh', this.clientArgs(scriptCommand(MKDIR_RUN_SCRIPT, [this.remoteRoot, checkRun(run)]))),
    removeRunDir: (run: string): string => formatCommand('ssh', this.clientArgs(scriptCommand(REMOVE_RUN_SCRIPT, [this.remoteRoot, checkRun(run)]))),
    close: (): string[] => [formatCommand('ssh', this.controlArgs('exit')), `rm -r ${this.controlDir ?? dirname(CONTROL_PLACEHOLDER)}`],
  };

  /** Connects and authenticates once; every later command reuses this connection. */
  async open(): Promise<void> {
    if (this.master) return;
    for (const [what, file] of [['--identity', this.options.identity], ['--known-hosts', this.options.knownHosts]] as const) {
      if (file === undefined) continue;
      try {
        accessSync(file, fsConstants.R_OK);
      } catch (err) {
        throw new InputError(`${what} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { hint: `give ${what} a readable file`, cause: err });
      }
    }
    this.controlDir = makeControlDir();
    const nonce = Math.random().toString(36).slice(2, 10);
    const master = this.local.stream('ssh', this.masterArgs(nonce), { stdin: 'pipe', env: this.env });
    master.stdin?.on('error', () => undefined);
    const timeoutMs = this.options.openTimeoutMs ?? ((this.options.connectTimeoutSec ?? 15) + 45) * 1000;
    try {
      await waitForMarker(master, `fbxen-ssh-ready-${nonce}`, timeoutMs);
    } catch (err) {
      master.kill();
      master.stdin?.destroy();
      this.removeControlDir();
      if (err instanceof CommandFailedError) throw openError(this.target, this.options, err.result.stderr, err);
      if (err instanceof TimeoutError) {
        throw new TimeoutError(`ssh to ${this.label} did not connect and log in within ${timeoutMs / 1000} s`, { hint: `check that ${this.target.host} answers on port ${this.target.port} (sshd running, no firewall dropping packets)` });
      }
      throw err;
    }
    // Nothing more comes on the master's stdout; keep it drained all the same.
    master.stdout.resume();
    this.masterGone = master.done.then(
      () => void (this.masterEnded = true),
      () => void (this.masterEnded = true),
    );
    this.master = master;
  }

  /** A Runner whose commands run on the host, over the master. Their environment is the host's. */
  runner(): Runner {
    return {
      run: async (file, args, opts = {}) => {
        this.mustBeOpen();
        const argv = [file, ...args];
        const remote = opts.input !== undefined ? directCommand(argv) : lifelineCommand(argv);
        const r = await this.local
          .run('ssh', this.clientArgs(remote), {
            ...(opts.input !== undefined ? { input: opts.input } : {}),
            ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
            ...(opts.signal ? { signal: opts.signal } : {}),
            ...(opts.onStderrLine ? { onStderrLine: opts.onStderrLine } : {}),
            env: this.env,
            allowFailure: true,
          })
          .catch((err: unknown) => {
            // The local ssh was killed; the lifeline ends the remote command. Name that one, not ssh.
            if (err instanceof TimeoutError) throw new TimeoutError(`${this.describe(argv)} did not finish within ${opts.timeoutMs} ms`, { hint: err.hint, cause: err });
            throw err;
          });
        const result = await this.remoteResult(argv, r);
        if (result.exitCode !== 0 && !opts.allowFailure) throw new CommandFailedError(result);
        return result;
      },
      stream: (file, args, opts = {}) => {
        this.mustBeOpen();
        const argv = [file, ...args];
        const readsStdin = opts.stdin !== undefined && opts.stdin !== 'ignore';
        // Without input of its own, ssh's stdin is a pipe fbxen holds open: the lifeline (ssh-remote.ts).
        const proc = this.local.stream('ssh', this.clientArgs(readsStdin ? directCommand(argv) : lifelineCommand(argv)), {
          stdin: 'pipe',
          env: this.env,
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        proc.stdin?.on('error', () => undefined);
        if (opts.stdin !== undefined && typeof opts.stdin !== 'string' && proc.stdin) opts.stdin.pipe(proc.stdin);
        const done = proc.done.then(
          (r) => this.remoteResult(argv, r),
          async (err: unknown) => {
            if (!(err instanceof CommandFailedError)) throw err;
            throw new CommandFailedError(await this.remoteResult(argv, err.result));
          },
        );
        done.catch(() => undefined);
        return { stdout: proc.stdout, stdin: opts.stdin === 'pipe' ? proc.stdin : null, done, kill: () => proc.kill() };
      },
    };
  }

  /**
   * The result as the remote command's; a failure of ssh itself is an EnvironmentError. ssh exits 255
   * both for a lost connection (often without a word: the master closed the channel) and for a remote
   * command killed by a signal; the master tells them apart, as it exits when the connection is lost.
   */
  private async remoteResult(argv: readonly string[], r: RunResult): Promise<RunResult> {
    if (r.exitCode === 255 && !this.masterEnded && !SSH_OWN_ERROR.test(r.stderr)) {
      await Promise.race([this.masterGone, sleep(MASTER_EXIT_WAIT_MS)]);
    }
    if (r.exitCode === 255 && (this.masterEnded || SSH_OWN_ERROR.test(r.stderr))) {
      throw new EnvironmentError(`the connection to ${this.label} failed while running ${formatCommand(argv[0]!, argv.slice(1))}${r.stderr.trim() ? `: ${lastLines(r.stderr)}` : ''}`, {
        hint: `check that ${this.target.host} is up and reachable; the command may or may not have run there`,
      });
    }
    return { ...r, command: this.describe(argv) };
  }

  private describe(argv: readonly string[]): string {
    return `${formatCommand(argv[0]!, argv.slice(1))} (on ${this.label})`;
  }

  private mustBeOpen(): void {
    if (!this.master) throw new UsageError(`the ssh session to ${this.label} is not open`, { hint: 'this is a bug in fbxen: open() the session before running commands' });
  }

  /** Creates `<remoteRoot>/<run>` (mode 0700) on the host; it must not exist yet. Returns its path. */
  async mkdirRunDir(run: string): Promise<string> {
    const path = posix.join(this.remoteRoot, checkRun(run));
    const r = await this.runScript(MKDIR_RUN_SCRIPT, [this.remoteRoot, run]);
    if (r.exitCode !== 0) {
      throw new EnvironmentError(`could not create the run directory ${path} on ${this.label}: ${lastLines(r.stderr)}`, { hint: `check that ${this.target.user} may write to ${this.remoteRoot} on ${this.target.host} and that no run ${run} is there already` });
    }
    return path;
  }

  /** Removes `<remoteRoot>/<run>` and all in it (nothing else: the run id is a checked name). */
  async removeRunDir(run: string): Promise<void> {
    const path = posix.join(this.remoteRoot, checkRun(run));
    const r = await this.runScript(REMOVE_RUN_SCRIPT, [this.remoteRoot, run]);
    if (r.exitCode !== 0) throw new EnvironmentError(`could not remove the run directory ${path} on ${this.label}: ${lastLines(r.stderr)}`, { hint: `remove it by hand: ssh ${this.target.user}@${this.target.host} rm -rf ${path}` });
  }

  private runScript(script: string, args: readonly string[]): Promise<RunResult> {
    this.mustBeOpen();
    return this.local.run('ssh', this.clientArgs(scriptCommand(script, args)), { env: this.env, allowFailure: true, timeoutMs: 120_000 });
  }

  /**
   * Copies a local file into `remoteDir` under its own name: only the data extents cross the wire (a
   * tar stream with GNU sparse maps), the file arrives sparse, and appears under its name only whole.
   */
  async put(localFile: string, remoteDir: string, opts: { signal?: AbortSignal } = {}): Promise<PutResult> {
    this.mustBeOpen();
    const name = basename(localFile);
    const remotePath = posix.join(remoteDir, name);
    const where = `${this.label}:${remotePath}`;
    if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$/.test(name)) throw new InputError(`cannot copy ${localFile} to ${this.label}: its name must be of A-Z a-z 0-9 . _ + - (it is also the name on the host)`, { hint: 'rename the file' });
    if (!posix.isAbsolute(remoteDir)) throw new UsageError(`the remote directory ${remoteDir} is not an absolute path`, { hint: 'this is a bug in the caller: use the path mkdirRunDir() returned' });
    const size = localFileSize(localFile, where);
    const started = Date.now();
    const tar = this.local.stream('tar', tarArgs(localFile), opts.signal ? { signal: opts.signal } : {});
    const ssh = this.local.stream('ssh', this.receiveArgs(remoteDir, name), { stdin: 'pipe', env: this.env, ...(opts.signal ? { signal: opts.signal } : {}) });
    const bytesSent = await pipeCounted(tar, ssh).catch((reason: unknown) => {
      if (opts.signal?.aborted) throw Object.assign(new Error('cancelled'), { name: 'AbortError', cause: opts.signal.reason });
      const stderr = reason instanceof CommandFailedError ? reason.result.stderr : String(reason);
      throw new EnvironmentError(`copying ${localFile} to ${where} failed: ${lastLines(stderr) || 'no message'}`, {
        hint: `check the free space in ${remoteDir} on ${this.target.host} (df) and that tar is installed there; nothing was left under ${name}`,
        cause: reason,
      });
    });
    return { remotePath, bytesSent, size, durationMs: Date.now() - started };
  }

  /**
   * A remote forward over the master (`ssh -O forward -R BIND:PORT:127.0.0.1:LOCAL`): sshd on the host
   * listens on BIND:PORT (0: sshd picks the port, which the mux client prints) and each connection there
   * reaches LOCAL on this machine's loopback. Where sshd really bound is its GatewayPorts' choice, not
   * said here: the caller checks on the host (net/remote-forward.ts). `-o ClearAllForwardings=no` comes
   * first because the first -o wins and the session's own `yes` would drop the -R.
   */
  async forwardRemote(bind: string, port: number, localPort: number, cancel = false): Promise<{ port: number } | { error: string }> {
    this.mustBeOpen();
    if (!isIPv4(bind) || ![port, localPort].every((p) => Number.isInteger(p) && p >= 0 && p < 65536)) {
      throw new UsageError(`remote forward ${bind}:${port} -> 127.0.0.1:${localPort}: not an IPv4 address and ports`, { hint: 'this is a bug in fbxen' });
    }
    const spec = `${bind}:${port}:127.0.0.1:${localPort}`;
    const r = await this.local.run('ssh', ['-o', 'ClearAllForwardings=no', ...this.commonArgs(), '-O', cancel ? 'cancel' : 'forward', '-R', spec, ...this.destination()], { env: this.env, allowFailure: true, timeoutMs: 30_000 });
    // `-O cancel` exits 0 even when the master refused: its words are the only sign.
    const said = lastLines(r.stderr);
    if (r.exitCode !== 0 || /request failed|forwarding failed|not forwarded/.test(r.stderr)) return { error: said || `ssh -O ${cancel ? 'cancel' : 'forward'} exited ${r.exitCode}` };
    if (port !== 0 || cancel) return { port };
    const m = /^(\d{1,5})\s*$/.exec(r.stdout.slice(0, 100));
    return m && Number(m[1]) > 0 && Number(m[1]) < 65536 ? { port: Number(m[1]) } : { error: `ssh -O forward printed no allocated port (${JSON.stringify(r.stdout.slice(0, 60))})` };
  }

  /** The master's process id (from `ssh -O check`), or undefined when no master answers. */
  async masterPid(): Promise<number | undefined> {
    if (!this.controlDir) return undefined;
    const r = await this.local.run('ssh', this.controlArgs('check'), { env: this.env, allowFailure: true, timeoutMs: 30_000 });
    const m = /Master running \(pid=(\d+)\)/.exec(r.stderr + r.stdout);
    return m ? Number(m[1]) : undefined;
  }

  /** Ends the master (and any command still running over it) and removes the control directory. */
  async close(): Promise<void> {
    const master = this.master;
    this.master = undefined;
    if (master) {
      await this.local.run('ssh', this.controlArgs('exit'), { env: this.env, allowFailure: true, timeoutMs: 30_000 }).catch(() => undefined);
      master.stdin?.end();
      const exited = await Promise.race([master.done.then(() => true, () => true), sleep(10_000).then(() => false)]);
      if (!exited) {
        master.kill();
        await master.done.catch(() => undefined);
      }
    }
    this.removeControlDir();
  }

  private removeControlDir(): void {
    if (this.controlDir) rmSync(this.controlDir, { recursive: true, force: true });
    this.controlDir = undefined;
  }
}

function checkRun(run: string): string {
  if (!NAME_PATTERN.test(run)) throw new UsageError(`the run id ${JSON.stringify(run)} is not ${NAME_RULE}`, { hint: 'it names the run directory on the host' });
  return run;
}

/**
 * A file path for an ssh option, made absolute. ssh splits UserKnownHostsFile at whitespace and expands
 * % tokens and a leading ~ in file options: such a path would name other files than the one given.
 */
function sshPath(option: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  const abs = resolve(path);
  if (/[\s%"'\\]/.test(abs)) throw new InputError(`${option} ${JSON.stringify(path)}: ssh would not read that path as it is (it splits at spaces and expands %, quotes and \\)`, { hint: `copy or link the file to a path without spaces, %, quotes or backslashes` });
  return abs;
}

function checkRemoteRoot(root: string): string {
  const norm = root.replace(/(.)\/+$/, '$1');
  if (!posix.isAbsolute(norm) || posix.normalize(norm) !== norm || norm === '/' || /[\0\n]/.test(norm)) {
    throw new InputError(`the remote runs directory ${JSON.stringify(root)} must be an absolute path below / without . or .. parts`, { hint: `for instance ${DEFAULT_REMOTE_ROOT}` });
  }
  return norm;
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join('; ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

