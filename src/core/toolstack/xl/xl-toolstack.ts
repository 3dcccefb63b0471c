/**
 * The xl driver: every `xl` command fbxen runs, through the Runner. It maps xl's failures to errors that
 * say what to do. Kept small and stateless so boot, verify and migrate-test can share it.
 */
import { CommandFailedError, formatCommand, type RunResult, type Runner, type StreamingProcess } from '../../exec/runner.js';
import { EnvironmentError, ToolstackError } from '../../errors.js';
import { parseXlHostInfo, parseXlList, parseXlListLong, type XlDomainDetail, type XlHostInfo, type XlListRow } from './parse.js';

export interface XlOptions {
  /** The xl binary (default `xl`, found on PATH). */
  xl?: string;
  env?: Record<string, string | undefined>;
  signal?: AbortSignal;
}

/** A console being captured: the xenconsole output stream, and how to detach it. */
export interface ConsoleAttachment {
  stdout: NodeJS.ReadableStream;
  /** Resolves when the console client (or `xl create -c`) exits. */
  done: Promise<RunResult>;
  /** Detaches by closing the client's stdin: xenconsole exits on EOF of its input. */
  detach(): void;
}

export class XlToolstack {
  readonly xl: string;
  constructor(
    private readonly runner: Runner,
    private readonly options: XlOptions = {},
  ) {
    this.xl = options.xl ?? 'xl';
  }

  command(args: readonly string[]): string {
    return formatCommand(this.xl, args);
  }

  private run(args: readonly string[], extra: { allowFailure?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    return this.runner.run(this.xl, args, {
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
   * xenconsole exits when its stdin reaches EOF, so stdin is a pipe held open until detach().
   */
  createWithConsole(configPath: string): ConsoleAttachment {
    return this.attach(['create', '-c', configPath]);
  }

  /** `xl console -t serial DOMID`: reattaching later (after a migration or restore). */
  console(domid: number): ConsoleAttachment {
    return this.attach(['console', '-t', 'serial', String(domid)]);
  }

  private attach(args: string[]): ConsoleAttachment {
    // stdin must be a pipe we hold open (xenconsole exits at EOF on stdin): ask for 'pipe', keep the writable end.
    const proc: StreamingProcess = this.runner.stream(this.xl, args, {
      ...(this.options.env ? { env: this.options.env } : {}),
      stdin: 'pipe',
    });
    proc.stdin?.on('error', () => undefined); // EPIPE when the console client has already gone
    return {
      stdout: proc.stdout,
      done: proc.done,
      detach: () => {
        proc.stdin?.end();
      },
    };
  }

  /** Asks the guest to power off and waits up to graceMs; returns whether it went. */
  async shutdown(domid: number, graceMs: number): Promise<boolean> {
    const r = await this.runner
      .run(this.xl, ['shutdown', '-w', String(domid)], {
        ...(this.options.env ? { env: this.options.env } : {}),
        timeoutMs: graceMs,
        allowFailure: true,
      })
      .catch(() => undefined); // a timeout: the guest ignored the request
    return r !== undefined && r.exitCode === 0;
  }

  /** `xl destroy DOMID`; a domain that is already gone counts as destroyed. */
  async destroy(domid: number): Promise<void> {
    const r = await this.run(['destroy', String(domid)], { allowFailure: true, timeoutMs: 60_000 });
    if (r.exitCode === 0) return;
    if (/invalid domain identifier|does not exist|not found|Non-existant domain|rc=-21\)/i.test(r.stderr)) return;
    throw new CommandFailedError(r, `destroy it by hand: xl destroy ${domid}`);
  }

  async unpause(domid: number): Promise<void> {
    await this.run(['unpause', String(domid)], { timeoutMs: 30_000 });
  }

  /** For migrate-test: `xl save DOMID FILE` (the domain stops), `xl restore FILE` (a new domid). */
  async save(domid: number, file: string): Promise<void> {
    await this.run(['save', String(domid), file]);
  }

  async restore(file: string): Promise<void> {
    await this.run(['restore', file]);
  }

  /** For migrate-test: localhost migration without ssh (`-s ''` runs the receiver command directly). */
  async migrateLocal(domid: number): Promise<void> {
    await this.run(['migrate', '-s', '', String(domid), 'xl migrate-receive']);
  }
}
