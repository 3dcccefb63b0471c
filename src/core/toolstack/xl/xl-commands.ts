/**
 * Every `xl` command the xl driver runs, through the Runner it is given (local, or one that runs over
 * ssh). It maps xl's failures to errors that say what to do. Stateless: XlDriver (xl-driver.ts) holds the
 * state. `host` names a dom0 that the dom0 fbxen drives reaches as root over ssh (xl migrate's own
 * transport): the one place that builds that ssh command line is `xlArgv`.
 */
import { CommandFailedError, formatCommand, type RunResult, type Runner, type StreamingProcess } from '../../exec/runner.js';
import { EnvironmentError, ToolstackError } from '../../errors.js';
import { parseXlHostInfo, parseXlList, parseXlListLong, type XlDomainDetail, type XlHostInfo, type XlListRow } from './parse.js';

/** How many times (1 s apart) a failed destroy looks whether another destroyer removed the domain. */
const DESTROY_RACE_CHECKS = 5;

export interface XlOptions {
  /** The xl binary (default `xl`, found on PATH). */
  xl?: string | undefined;
  env?: Record<string, string | undefined> | undefined;
  /** 'localhost' (default): this dom0; else a dom0 reached from it with `ssh root@HOST` (as `xl migrate HOST` does). */
  host?: string | undefined;
  /** How a command is shown in a plan when the Runner carries it elsewhere (the ssh line); default as typed. */
  show?: ((file: string, args: readonly string[]) => string) | undefined;
}

/** The command that runs `xl ARGS` on `host`: directly, or through ssh as root, as xl migrate reaches its peer. */
export function xlArgv(xl: string, host: string, args: readonly string[]): [string, string[]] {
  return host === 'localhost' ? [xl, [...args]] : ['ssh', ['-o', 'BatchMode=yes', '--', `root@${host}`, xl, ...args]];
}

/** A console being captured: the xenconsole output stream, and how to detach it. */
export interface XlConsoleClient {
  stdout: NodeJS.ReadableStream;
  /** Resolves when the console client (or `xl create -c`) exits. */
  done: Promise<RunResult>;
  /** Types into the guest's serial console. */
  write(text: string): void;
  /**
   * Detaches by closing the client's stdin: the console-on-a-terminal wrapper ends on that EOF; a bare
   * xenconsole reads no stdin without a terminal (Xen 4.17), so it misses it and reap() ends it.
   */
  detach(): void;
  /**
   * Ends the xenconsole this client started, for a client still there after detach(): the real one that
   * xl starts without a terminal on stdin (through ssh, from a pipe) never reads its stdin, so it does not
   * see the EOF, and it would hold the console's lock (/var/lock/xenconsole.DOMID) after fbxen is gone.
   */
  reap?(): Promise<void>;
}

/** A regular expression matching `text` literally (for pgrep -f). */
function literalRe(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

/**
 * `xl console` on a terminal, for typing into the guest (migrate-test's console channel). xenconsole reads
 * its stdin only when stdin and stdout are terminals (Xen 4.17 tools/console/client/main.c: `interactive`
 * is isatty(0) && isatty(1); xl passes no --interactive): from a pipe, what fbxen types never reached the
 * guest (found on the lab's real xl, docs/lab.md). script(1) (util-linux, on every Linux dom0) gives it a
 * pseudo-terminal; xenconsole makes that raw, so bytes pass unchanged both ways. Our stdin is copied into
 * script through a FIFO this shell keeps open: script sends ^D to its child when its own stdin ends, which
 * the raw terminal would hand to the guest's shell (a logout). So fbxen's detach (our stdin's EOF) and the
 * console's own end (the domain went) both end here by a signal: script then ends its child, and the
 * console lock (/var/lock/xenconsole.DOMID) is released.
 */
export const CONSOLE_ON_A_TERMINAL = [
  'd=$(mktemp -d) || exit 1',
  'mkfifo "$d/in" || { rm -rf "$d"; exit 1; }',
  'cmd=; for a in "$@"; do cmd="$cmd \'$a\'"; done',
  'script -qfec "$cmd" /dev/null <"$d/in" & c=$!',
  'exec 3>"$d/in"',
  'rm -rf "$d"',
  // an asynchronous command's stdin is /dev/null unless given: fd 4 keeps ours
  'exec 4<&0',
  'cat <&4 >&3 & k=$!',
  'while kill -0 "$c" 2>/dev/null && kill -0 "$k" 2>/dev/null; do sleep 0.2; done',
  'kill -TERM "$c" "$k" 2>/dev/null',
  'wait "$c"',
].join('\n');

export class XlCommands {
  readonly xl: string;
  readonly host: string;
  constructor(
    readonly runner: Runner,
    private readonly options: XlOptions = {},
  ) {
    this.xl = options.xl ?? 'xl';
    this.host = options.host ?? 'localhost';
  }

  /** The same xl on another dom0 (reached over ssh from this one). */
  on(host: string): XlCommands {
    return host === this.host ? this : new XlCommands(this.runner, { ...this.options, host });
  }

  argv(args: readonly string[]): [string, string[]] {
    return xlArgv(this.xl, this.host, args);
  }

  /** The environment option of a Runner call (the caller's additions for xl). */
  envOption(): { env?: Record<string, string | undefined> } {
    return this.options.env ? { env: this.options.env } : {};
  }

  command(args: readonly string[]): string {
    const [file, argv] = this.argv(args);
    return this.options.show ? this.options.show(file, argv) : formatCommand(file, argv);
  }

  /** Any xl command, its failure returned (allowFailure) or thrown as CommandFailedError. */
  run(args: readonly string[], extra: { allowFailure?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    return this.runner.run(...this.argv(args), {
      ...(this.options.env ? { env: this.options.env } : {}),
      ...(extra.timeoutMs ? { timeoutMs: extra.timeoutMs } : {}),
      allowFailure: extra.allowFailure ?? false,
    });
  }

  /** `xl info`; a failure here means this is not a usable dom0 (or we are not root). */
  async info(): Promise<XlHostInfo> {
    const r = await this.run(['info'], { allowFailure: true, timeoutMs: 30_000 });
    if (r.exitCode !== 0) {
      const stderr = r.stderr.trim();
      const notRoot = /permission denied|EACCES|must be run as root/i.test(stderr);
      throw new EnvironmentError(`\`xl info\` failed (status ${r.exitCode}): ${stderr.split('\n').slice(-3).join(' | ') || 'no message'}`, {
        hint: notRoot
          ? 'run fbxen as root on the Xen dom0 (xl needs /dev/xen/privcmd)'
          : 'run fbxen on a Xen dom0 with the Xen hypervisor booted and xencommons running (check `xl info` by hand)',
      });
    }
    return parseXlHostInfo(r.stdout);
  }

  /** The domid of `name`, or undefined when no such domain exists. */
  async domid(name: string): Promise<number | undefined> {
    const r = await this.run(['domid', name], { allowFailure: true, timeoutMs: 30_000 });
    if (r.exitCode !== 0) {
      if (/maybe this domain does not exist|invalid domain identifier/i.test(r.stderr)) return undefined;
      throw new CommandFailedError(r, 'check that xl works on this host (`xl list`)');
    }
    const id = Number(r.stdout.trim());
    if (!Number.isInteger(id) || id < 0) throw new ToolstackError(`\`xl domid ${name}\` printed ${JSON.stringify(r.stdout.trim())}, not a domain id`);
    return id;
  }

  async list(): Promise<XlListRow[]> {
    return parseXlList((await this.run(['list'], { timeoutMs: 30_000 })).stdout);
  }

  async listLong(domain?: string | number): Promise<XlDomainDetail[]> {
    const args = domain === undefined ? ['list', '-l'] : ['list', '-l', String(domain)];
    const r = await this.run(args, { allowFailure: domain !== undefined, timeoutMs: 30_000 });
    if (r.exitCode !== 0) return [];
    return parseXlListLong(r.stdout);
  }

  /**
   * `xl create -c CFG`: xl builds the domain paused, forks the console client, waits for it to report that
   * it is attached, and only then unpauses, so the capture holds the guest's output from the first byte.
   * Its xenconsole reads no stdin here (no terminal): detach() closes our pipe, and reap() ends that
   * xenconsole when the client is still there.
   */
  createWithConsole(configPath: string): XlConsoleClient {
    return this.attach(['create', '-c', configPath]);
  }

  /** `xl console -t serial DOMID`: reattaching later (after a migration or restore); `pv` for a PVH domain, which has no serial port. */
  console(domid: number, type: 'serial' | 'pv' = 'serial'): XlConsoleClient {
    const args = ['console', '-t', type, String(domid)];
    const [file, argv] = this.argv(args);
    // Only where the runner runs xl itself (a peer's console is never attached): there it gets a terminal.
    if (this.host !== 'localhost' || ![file, ...argv].every((a) => /^[A-Za-z0-9_./:-]+$/.test(a))) return this.attach(args);
    return this.attach(args, ['sh', ['-c', CONSOLE_ON_A_TERMINAL, 'fbxen-console', file, ...argv]]);
  }

  private attach(args: string[], command: [string, string[]] = this.argv(args)): XlConsoleClient {
    // stdin is a pipe we hold open (the terminal wrapper ends at its EOF; typing goes through it): keep the writable end.
    const proc: StreamingProcess = this.runner.stream(...command, {
      ...(this.options.env ? { env: this.options.env } : {}),
      stdin: 'pipe',
    });
    proc.stdin?.on('error', () => undefined); // EPIPE when the console client has already gone
    return {
      stdout: proc.stdout,
      done: proc.done,
      write: (text) => {
        proc.stdin?.write(text);
      },
      detach: () => {
        proc.stdin?.end();
      },
      // Only on the dom0 the runner reaches: the xenconsole children of the xl process with exactly these
      // arguments (never the xl that watches the domain, which has none), by this run's own config path or domid.
      ...(this.host === 'localhost'
        ? {
            reap: async () => {
              const pattern = `(^|/)xl ${args.map(literalRe).join(' ')}$`;
              await this.runner
                .run('sh', ['-c', 'for p in $(pgrep -f -- "$1"); do pkill -TERM -P "$p" -x xenconsole; done; true', 'fbxen-reap', pattern], { allowFailure: true, timeoutMs: 30_000 })
                .catch(() => undefined);
            },
          }
        : {}),
    };
  }

  /** Asks the guest to power off and waits up to graceMs; returns whether it went. */
  async shutdown(domid: number, graceMs: number): Promise<boolean> {
    const r = await this.runner
      .run(...this.argv(['shutdown', '-w', String(domid)]), {
        ...(this.options.env ? { env: this.options.env } : {}),
        timeoutMs: graceMs,
        allowFailure: true,
      })
      .catch(() => undefined); // a timeout: the guest ignored the request
    return r !== undefined && r.exitCode === 0;
  }

  /**
   * `xl destroy DOMID`; a domain that is already gone counts as destroyed, and so does one that another
   * destroyer removes meanwhile: on the real xl a domain that powered off is destroyed by its own `xl
   * create` (on_poweroff="destroy"), and a destroy racing it fails ("libxl__devices_destroy failed ...
   * Unable to destroy guest", found in the lab). Such a domain is gone from `xl list` within seconds.
   */
  async destroy(domid: number): Promise<void> {
    const r = await this.run(['destroy', String(domid)], { allowFailure: true, timeoutMs: 60_000 });
    if (r.exitCode === 0) return;
    if (/invalid domain identifier|does not exist|not found|Non-existant domain|rc=-21\)/i.test(r.stderr)) return;
    for (let i = 0; i < DESTROY_RACE_CHECKS; i++) {
      if (!(await this.list()).some((d) => d.domid === domid)) return;
      await new Promise((done) => setTimeout(done, 1000));
    }
    throw new CommandFailedError(r, `destroy it by hand: xl destroy ${domid}`);
  }

  async unpause(domid: number): Promise<void> {
    await this.run(['unpause', String(domid)], { timeoutMs: 30_000 });
  }

  /** `xl save DOMID FILE` (the domain stops), `xl restore FILE` (a new domid). */
  async save(domid: number, file: string): Promise<void> {
    await this.run(['save', String(domid), file]);
  }

  async restore(file: string): Promise<void> {
    await this.run(['restore', file]);
  }

  /** Localhost migration without ssh (`-s ''` runs the receiver command directly). */
  async migrateLocal(domid: number): Promise<void> {
    await this.run(['migrate', '-s', '', String(domid), 'xl migrate-receive']);
  }
}
