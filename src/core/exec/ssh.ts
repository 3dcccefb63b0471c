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
import { mkdtempSync, rmSync, statSync, accessSync, constants as fsConstants } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, posix } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { EnvironmentError, InputError, TimeoutError, UsageError } from '../errors.js';
import { NAME_PATTERN, NAME_RULE } from '../util/names.js';
import { CommandFailedError, formatCommand, type RunResult, type Runner, type StreamingProcess } from './runner.js';
import { directCommand, lifelineCommand, MKDIR_RUN_SCRIPT, RECEIVE_SCRIPT, REMOVE_RUN_SCRIPT, scriptCommand } from './ssh-remote.js';
import { formatHostUrl, knownHostsName, type SshTarget } from './ssh-target.js';

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
/**
 * Lines the local ssh (not the remote command) writes when the connection failed. Status 255 alone
 * does not say it: a remote command may exit 255, and xl migrate's own ssh prints "ssh: ..." lines.
 */
const SSH_OWN_ERROR = /^(mux_client_|muxclient: |Control socket |ControlSocket |Connection to \S+ closed|client_loop: |Timeout, server \S+ not responding|Host key verification failed|kex_exchange_identification)/m;
const READY_BOUND = 64 * 1024;
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
  private controlDir: string | undefined;
  private master: StreamingProcess | undefined;
  private masterEnded = false;

  constructor(
    readonly target: SshTarget,
    private readonly options: SshOptions,
    deps: SshDeps,
  ) {
    this.label = formatHostUrl(target);
    this.local = deps.runner;
    const base = deps.env ?? process.env;
    // Unset, not just absent: the local runner merges its own environment under these.
    this.env = Object.fromEntries(Object.keys(base).map((k) => [k, KEEP_ENV.has(k) ? base[k] : undefined]));
    this.remoteRoot = checkRemoteRoot(options.remoteRoot ?? DEFAULT_REMOTE_ROOT);
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

  private tarArgs(localFile: string): string[] {
    // --sparse: holes found with SEEK_DATA/SEEK_HOLE (zeros read only where the file system cannot
    // say); pax format keeps sizes past 8 GiB and GNU.sparse maps. Owners as numbers: the host's names differ.
    return ['--create', '--file=-', '--sparse', '--format=posix', '--numeric-owner', '--directory', dirname(localFile), '--', basename(localFile)];
  }

  /** The command lines of each step, as --dry-run shows them (the control directory is made by open()). */
  readonly plan = {
    open: (): string[] => [`mkdir -m 0700 ${this.controlDir ?? dirname(CONTROL_PLACEHOLDER)}`, formatCommand('ssh', this.masterArgs('NONCE'))],
    run: (file: string, args: readonly string[], how: { readsStdin?: boolean } = {}): string =>
      formatCommand('ssh', this.clientArgs(how.readsStdin ? directCommand([file, ...args]) : lifelineCommand([file, ...args]))),
    put: (localFile: string, remoteDir: string): string => `${formatCommand('tar', this.tarArgs(localFile))} | ${formatCommand('ssh', this.receiveArgs(remoteDir, basename(localFile)))}`,
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
      if (err instanceof CommandFailedError) throw this.openError(err.result.stderr, err);
      if (err instanceof TimeoutError) {
        throw new TimeoutError(`ssh to ${this.label} did not connect and log in within ${timeoutMs / 1000} s`, { hint: `check that ${this.target.host} answers on port ${this.target.port} (sshd running, no firewall dropping packets)` });
      }
      throw err;
    }
    // Nothing more comes on the master's stdout; keep it drained all the same.
    master.stdout.resume();
    master.done.then(
      () => (this.masterEnded = true),
      () => (this.masterEnded = true),
    );
    this.master = master;
  }

  private openError(stderr: string, cause: unknown): EnvironmentError {
    const { host, port } = this.target;
    const kh = this.options.knownHosts ?? '~/.ssh/known_hosts';
    const name = knownHostsName(this.target);
    const detail = stderr.trim().split('\n').filter((l) => l && !/^@+$|^@\s/.test(l)).slice(-3).join('; ');
    const say = (what: string, hint: string) => new EnvironmentError(`ssh to ${this.label}: ${what}${detail ? ` (ssh: ${detail})` : ''}`, { hint, cause });
    const pin = `pin it once: ssh-keyscan -p ${port} ${host} >> ${kh}, check its fingerprint (ssh-keygen -lf ${kh}) against the host's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub, run on ${host}'s console), then run again${this.options.knownHosts ? '' : ' (or keep the keys in a file of their own and pass --known-hosts FILE)'}`;
    if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/.test(stderr)) {
      return say(`the host key differs from the one pinned in ${kh}`, `if ${host} was reinstalled, drop the old key with ssh-keygen -R '${name}' -f ${kh} and ${pin}; if not, someone may be in the middle of the connection: do not go on`);
    }
    if (/No \S+ host key is known for|Host key verification failed/.test(stderr)) {
      return say(`its host key is not in ${kh} (strict host key checking)`, pin);
    }
    if (/Permission denied \(|Too many authentication failures/.test(stderr)) {
      return say(`${this.target.user} was refused${this.options.identity ? ` with the key ${this.options.identity}` : ''}`, `pass --identity FILE, a private key whose FILE.pub is in ~${this.target.user}/.ssh/authorized_keys on ${host} (for root, sshd_config needs PermitRootLogin prohibit-password); BatchMode is on, so no password or passphrase is asked: load a key with a passphrase into ssh-agent`);
    }
    if (/Connection refused/.test(stderr)) return say(`connection refused on port ${port}`, `start sshd on ${host}, or give its port: ssh://${this.target.user}@${host}:PORT`);
    if (/timed out|Connection timed out|Operation timed out/.test(stderr)) return say(`no answer on port ${port}`, `check the address, the route and firewalls between here and ${host}`);
    if (/Could not resolve hostname|Name or service not known/.test(stderr)) return say(`${host} does not resolve`, 'check the name, or give an address');
    return say('the connection failed', 'run ssh -v with the same options to see why');
  }

  /** A Runner whose commands run on the host, over the master. Their environment is the host's. */
  runner(): Runner {
    return {
      run: async (file, args, opts = {}) => {
        this.mustBeOpen();
        const argv = [file, ...args];
        const remote = opts.input !== undefined ? directCommand(argv) : lifelineCommand(argv);
        const r = await this.local.run('ssh', this.clientArgs(remote), {
          ...(opts.input !== undefined ? { input: opts.input } : {}),
          ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(opts.onStderrLine ? { onStderrLine: opts.onStderrLine } : {}),
          env: this.env,
          allowFailure: true,
        });
        const result = this.remoteResult(argv, r);
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
          (err: unknown) => {
            if (!(err instanceof CommandFailedError)) throw err;
            throw new CommandFailedError(this.remoteResult(argv, err.result));
          },
        );
        done.catch(() => undefined);
        return { stdout: proc.stdout, stdin: opts.stdin === 'pipe' ? proc.stdin : null, done, kill: () => proc.kill() };
      },
    };
  }

  /** The result as the remote command's; a failure of ssh itself (status 255 and ssh's words) is an EnvironmentError. */
  private remoteResult(argv: readonly string[], r: RunResult): RunResult {
    if (r.exitCode === 255 && (this.masterEnded || SSH_OWN_ERROR.test(r.stderr))) {
      throw new EnvironmentError(`the connection to ${this.label} failed while running ${formatCommand(argv[0]!, argv.slice(1))}: ${r.stderr.trim().split('\n').slice(-2).join('; ')}`, {
        hint: `check that ${this.target.host} is up and reachable; the command may or may not have run there`,
      });
    }
    return { ...r, command: `${formatCommand(argv[0]!, argv.slice(1))} (on ${this.label})` };
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
    let size: number;
    try {
      const st = statSync(localFile);
      if (!st.isFile()) throw new Error('not a regular file');
      size = st.size;
    } catch (err) {
      throw new InputError(`cannot copy ${localFile} to ${where}: ${(err as Error).message}`, { hint: 'give an existing regular file', cause: err });
    }
    const started = Date.now();
    const tar = this.local.stream('tar', this.tarArgs(localFile), opts.signal ? { signal: opts.signal } : {});
    const ssh = this.local.stream('ssh', this.receiveArgs(remoteDir, name), { stdin: 'pipe', env: this.env, ...(opts.signal ? { signal: opts.signal } : {}) });
    let bytesSent = 0;
    const counter = new PassThrough();
    counter.on('data', (chunk: Buffer) => (bytesSent += chunk.length));
    tar.stdout.pipe(counter).pipe(ssh.stdin as Writable);
    (ssh.stdin as Writable).on('error', () => undefined);
    // A failure of either side ends the other: a dead ssh must not leave tar blocked, nor the reverse.
    const settled = await Promise.allSettled([
      tar.done.catch((err: unknown) => {
        ssh.kill();
        throw err;
      }),
      ssh.done.catch((err: unknown) => {
        tar.kill();
        throw err;
      }),
    ]);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      const reason = failed.reason as unknown;
      if ((reason as { name?: string })?.name === 'AbortError') throw reason;
      const stderr = reason instanceof CommandFailedError ? reason.result.stderr : String(reason);
      throw new EnvironmentError(`copying ${localFile} to ${where} failed: ${lastLines(stderr) || 'no message'}`, {
        hint: `check the free space in ${remoteDir} on ${this.target.host} (df) and that tar is installed there; nothing was left under ${name}`,
        cause: reason,
      });
    }
    return { remotePath, bytesSent, size, durationMs: Date.now() - started };
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

function checkRemoteRoot(root: string): string {
  const norm = posix.normalize(root);
  if (!posix.isAbsolute(root) || norm !== root.replace(/\/+$/, '') || norm === '/' || /[\0\n]/.test(root)) {
    throw new InputError(`the remote runs directory ${JSON.stringify(root)} must be an absolute path below / without . or .. parts`, { hint: `for instance ${DEFAULT_REMOTE_ROOT}` });
  }
  return norm;
}

/**
 * A private (0700, mkdtemp) directory for the control socket. A socket path holds at most 108 bytes
 * and ssh adds a 17-byte suffix while binding: a long TMPDIR falls back to /tmp.
 */
function makeControlDir(): string {
  const base = tmpdir();
  return mkdtempSync(join(base.length + 32 <= 90 ? base : '/tmp', 'fbxen-ssh-'));
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join('; ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Resolves when `marker` arrives on stdout; rejects when the process ends first or the time is up. */
function waitForMarker(proc: StreamingProcess, marker: string, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => finish(new TimeoutError(`no ${marker} within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      // Keep a tail as long as the marker; a login script that prints without end is cut off.
      seen = (seen + chunk.toString('latin1')).slice(-(marker.length + READY_BOUND));
      if (seen.includes(marker)) finish();
    };
    function finish(err?: unknown) {
      clearTimeout(timer);
      proc.stdout.off('data', onData);
      if (err) reject(err);
      else resolve();
    }
    proc.stdout.on('data', onData);
    proc.done.then(
      (r) => finish(new CommandFailedError({ ...r, exitCode: r.exitCode }, 'the ssh master ended before logging in')),
      (err: unknown) => finish(err),
    );
  });
}

