/**
 * Migration with xl: `xl migrate -s '' DOMID 'xl migrate-receive'` for localhost (no ssh needed, xl.md
 * §4.4), `xl migrate DOMID HOST` (ssh as root) to another host and back, or `xl save DOMID FILE` +
 * `xl restore FILE`. Never `xl destroy`: after a failure fbxen looks for the domain under its name and
 * xl's in-flight names (NAME--migratedaway at the sender, NAME--incoming at the receiver) and says where
 * it is.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { EnvironmentError, TimeoutError } from '../errors.js';
import { formatCommand, type Runner, type RunResult, type StreamingProcess } from '../exec/runner.js';
import { parseXlList, type XlListRow } from '../toolstack/xl/parse.js';
import { XlCommands as XlToolstack } from '../toolstack/xl/xl-commands.js';
import type { ConsoleCapture } from './capture.js';
import { describeLocation, MigrationError, MigrationTimeoutError, type DomainLocation, type MigrateMode, type MigrationDriver, type MigrationOutcome } from './types.js';

export interface XlDriverOptions {
  runner: Runner;
  domain: string;
  /** 'localhost' or a host xl can reach over ssh as root */
  to: string;
  /** the name the destination uses to migrate back (default: this host's name) */
  backTo: string;
  /** where save-restore puts its checkpoint files */
  checkpointDir: string;
  xl?: string | undefined;
  env?: Record<string, string | undefined> | undefined;
}

const LIST_TIMEOUT_MS = 30_000;

/**
 * What xl said about a failed migration: its error lines (libxl/xc errors, "migration sender: ...",
 * "Migration failed, resuming at sender.") in their order, and its last two lines, each cut to 300
 * characters and at most 12: between xl's progress lines the reason can be far from the end.
 */
export function toolstackReason(stderr: string): string {
  const lines = stderr
    .split(/\r?\n|\r/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
  const keep = new Set<number>();
  lines.forEach((l, i) => {
    if (/error|fail|denied|refused|cannot|unable|invalid|no such|timed out|abort/i.test(l)) keep.add(i);
  });
  const picked = [...keep].slice(-10);
  for (let i = Math.max(0, lines.length - 2); i < lines.length; i++) picked.push(i);
  return [...new Set(picked)]
    .sort((a, b) => a - b)
    .slice(-12)
    .map((i) => (lines[i]!.length > 300 ? `${lines[i]!.slice(0, 300)}…` : lines[i]!))
    .join('\n');
}

/** The last lines of a command's stderr, for a message (bounded: xl can print pages). */
function tail(stderr: string): string {
  return stderr.trim().split('\n').slice(-3).map((l) => l.slice(0, 300)).join(' | ') || 'no message';
}

function stateOf(flags: string): DomainLocation['state'] {
  if (flags.includes('c')) return 'crashed';
  if (flags.includes('s')) return 'suspended';
  if (flags.includes('p')) return 'paused';
  if (flags.includes('r') || flags.includes('b')) return 'running';
  return 'unknown';
}

export class XlMigrationDriver implements MigrationDriver {
  readonly toolstack = 'xl' as const;
  private readonly xl: string;
  /** where the domain should be now: 'localhost' or options.to */
  private at: string = 'localhost';
  private console: { proc: StreamingProcess; domid: string; alive: boolean } | undefined;
  /** the console of NAME--incoming, attached while a localhost migration runs */
  private incoming: { proc: StreamingProcess; domid: string; alive: boolean } | undefined;
  private capture: ConsoleCapture | undefined;

  constructor(private readonly o: XlDriverOptions) {
    this.xl = o.xl ?? 'xl';
  }

  private get remote(): boolean {
    return this.o.to !== 'localhost';
  }

  /** The command that runs xl on `host` (locally, or over ssh). */
  private xlOn(host: string, args: string[]): [string, string[]] {
    return host === 'localhost' ? [this.xl, args] : ['ssh', ['-o', 'BatchMode=yes', '--', `root@${host}`, this.xl, ...args]];
  }

  private run(host: string, args: string[], timeoutMs: number, allowFailure = true): Promise<RunResult> {
    const [file, argv] = this.xlOn(host, args);
    return this.o.runner.run(file, argv, { timeoutMs, allowFailure, ...(this.o.env ? { env: this.o.env } : {}) });
  }

  /**
   * A skip only where migration provably does not apply: an xl that answers and has no such command.
   * An xl that cannot reach a hypervisor, a domain that is not here or not running, a destination that
   * cannot be reached: fbxen could not do the job, and says so with the exit code of its class.
   */
  async preflight(mode: MigrateMode): Promise<string | undefined> {
    // As boot: `xl info` first; with no hypervisor every xl command fails, `xl help` included.
    await new XlToolstack(this.o.runner, { xl: this.xl, ...(this.o.env ? { env: this.o.env } : {}) }).info();
    // As OSSTest's ts-migrate-support-check: the xl here must know the command.
    const help = await this.run('localhost', ['help'], LIST_TIMEOUT_MS);
    if (help.exitCode !== 0) throw new EnvironmentError(`\`xl help\` failed (status ${help.exitCode}): ${tail(help.stderr)}`, { hint: 'check `xl help` by hand on this dom0' });
    const verb = mode === 'live' ? 'migrate' : 'save';
    if (!new RegExp(`^\\s*${verb}\\s`, 'm').test(help.stdout + help.stderr)) return `this xl has no \`${verb}\` command (xl help does not list it)`;
    const list = await this.run('localhost', ['list'], LIST_TIMEOUT_MS);
    if (list.exitCode !== 0) throw new EnvironmentError(`\`xl list\` failed (status ${list.exitCode}): ${tail(list.stderr)}`, { hint: 'check `xl list` by hand on this dom0' });
    const row = parseXlList(list.stdout).find((r) => r.name === this.o.domain);
    if (!row) throw new EnvironmentError(`domain ${this.o.domain} is not on this host (xl list)`, { hint: 'boot it first (fbxen boot --keep), and give its name with --domain' });
    const state = stateOf(row.state);
    if (state !== 'running') throw new EnvironmentError(`domain ${this.o.domain} is ${state}, not running`, { hint: state === 'paused' ? `\`xl unpause ${this.o.domain}\`, then run migrate-test again` : 'boot it again (fbxen boot --keep); see its console log' });
    if (mode === 'live' && this.remote) {
      const r = await this.run(this.o.to, ['info'], LIST_TIMEOUT_MS);
      if (r.exitCode !== 0) throw new EnvironmentError(`the destination ${this.o.to} is not reachable as root over ssh with a working xl (status ${r.exitCode}): ${tail(r.stderr)}`, { hint: `check \`ssh root@${this.o.to} xl info\` by hand (BatchMode: a key, no password)` });
    }
    return undefined;
  }

  planPreflight(mode: MigrateMode): string[] {
    const steps = [
      `${formatCommand(this.xl, ['info'])}   (a hypervisor answers; else stop, exit 4)`,
      `${formatCommand(this.xl, ['help'])}   (lists \`${mode === 'live' ? 'migrate' : 'save'}\`; else skip)`,
      `${formatCommand(this.xl, ['list'])}   (${this.o.domain} present and running; else stop, exit 4)`,
    ];
    if (mode === 'live' && this.remote) steps.push(`${formatCommand(...this.xlOn(this.o.to, ['info']))}   (destination reachable; else stop, exit 4)`);
    return steps;
  }

  private async rows(host: string): Promise<XlListRow[] | undefined> {
    return (await this.listOn(host)).rows;
  }

  private async listOn(host: string): Promise<{ rows?: XlListRow[]; failure?: string }> {
    const r = await this.run(host, ['list'], LIST_TIMEOUT_MS).catch((err: unknown) => ({ exitCode: -1, stdout: '', stderr: err instanceof Error ? err.message : String(err) }));
    if (r.exitCode !== 0) return { failure: `\`xl list\` failed on ${host}: ${tail(r.stderr)}` };
    return { rows: parseXlList(r.stdout) };
  }

  /**
   * Where the domain is. Undefined only when every host asked listed its domains and none is this one;
   * when a host could not be asked, and the domain is not found elsewhere, its place is unknown (state
   * 'unknown', the failure in the note): not "vanished".
   */
  async locate(): Promise<DomainLocation | undefined> {
    const hosts = this.remote ? [this.at, this.at === 'localhost' ? this.o.to : 'localhost'] : ['localhost'];
    const found: DomainLocation[] = [];
    const failures: string[] = [];
    for (const host of hosts) {
      const { rows, failure } = await this.listOn(host);
      if (failure) failures.push(failure);
      for (const r of rows ?? []) {
        const base = r.name.replace(/--(migratedaway|incoming)$/, '');
        if (base !== this.o.domain) continue;
        found.push({ host, id: String(r.domid), name: r.name, state: stateOf(r.state) });
      }
    }
    if (found.length === 0) return failures.length ? { host: this.at, id: '-', name: this.o.domain, state: 'unknown', note: failures.join('; ') } : undefined;
    // The complete, running copy first; the rest is reported as a note.
    found.sort((a, b) => Number(b.name === this.o.domain) - Number(a.name === this.o.domain) || Number(b.state === 'running') - Number(a.state === 'running'));
    const [main, ...others] = found;
    const notes = [...(others.length ? [`also ${others.map((l) => `${l.name} (${l.id}) ${l.state} on ${l.host}`).join(', ')}`] : []), ...failures];
    return notes.length ? { ...main!, note: notes.join('; ') } : main;
  }

  private async domid(): Promise<string> {
    const where = await this.locate();
    if (!where || where.name !== this.o.domain || where.host !== this.at || where.id === '-') throw new MigrationError(`domain ${this.o.domain} is gone before the migration: ${describeLocation(where)}`, where, { hint: 'check `xl list` and the console log' });
    return where.id;
  }

  /** `from`: where the domain is when the iteration starts (the plan assumes every earlier one succeeded). */
  private commandFor(iteration: number, mode: MigrateMode, domid: string, from: string): { steps: Array<[string, string[], string]>; checkpoint?: string } {
    if (mode === 'save-restore') {
      const file = join(this.o.checkpointDir, `checkpoint-${iteration}.xlsave`);
      return { steps: [[this.xl, ['save', domid, file], 'save'], [this.xl, ['restore', file], 'restore']], checkpoint: file };
    }
    if (!this.remote) return { steps: [[this.xl, ['migrate', '-s', '', domid, 'xl migrate-receive'], 'migrate']] };
    const dest = from === 'localhost' ? this.o.to : this.o.backTo;
    const [file, args] = this.xlOn(from, ['migrate', from === 'localhost' ? domid : this.o.domain, dest]);
    return { steps: [[file, args, 'migrate']] };
  }

  planIteration(iteration: number, mode: MigrateMode): string[] {
    const from = this.remote && mode === 'live' && iteration % 2 === 0 ? this.o.to : 'localhost';
    const { steps } = this.commandFor(iteration, mode, 'DOMID', from);
    const lines = steps.map(([f, a, what]) => `${formatCommand(f, a)}   (${what}${this.remote && mode === 'live' ? `: ${from === 'localhost' ? 'there' : 'and back'}` : ''})`);
    if (mode === 'save-restore') lines.push(`remove ${join(this.o.checkpointDir, `checkpoint-${iteration}.xlsave`)} once restored (kept when the restore fails)`);
    lines.push(`${formatCommand(this.xl, ['list'])}${this.remote && mode === 'live' ? ` and ${formatCommand(...this.xlOn(this.o.to, ['list']))}` : ''}   (where the domain is now; the new domid)`);
    return lines;
  }

  async migrate(iteration: number, mode: MigrateMode, timeoutMs: number): Promise<MigrationOutcome> {
    const domid = await this.domid();
    const { steps, checkpoint } = this.commandFor(iteration, mode, domid, this.at);
    let toolstackMs = 0;
    const stopWatching = mode === 'live' && !this.remote ? this.watchIncoming() : async () => undefined;
    try {
      for (const [file, args, what] of steps) {
        let r: RunResult;
        const started = Date.now();
        try {
          // No abort signal: killing xl half-way through a migration can leave the domain suspended.
          r = await this.o.runner.run(file, args, { timeoutMs, allowFailure: true, ...(this.o.env ? { env: this.o.env } : {}) });
        } catch (err) {
          const where = await this.locate();
          if (err instanceof TimeoutError) {
            throw new MigrationTimeoutError(`${what} of ${this.o.domain} did not finish within ${Math.round(timeoutMs / 1000)} s; the domain is now: ${describeLocation(where)}`, where, {
              hint: `fbxen destroyed nothing: look at \`xl list\`${checkpoint && what === 'restore' ? ` (the checkpoint ${checkpoint} is kept)` : ''}; raise --step-timeout if the host is just slow`,
            });
          }
          throw err;
        }
        toolstackMs += Date.now() - started;
        if (r.exitCode !== 0) {
          const where = await this.locate();
          const stderr = toolstackReason(r.stderr);
          const saved = checkpoint && what === 'restore' && !where ? { host: 'localhost', id: '-', name: this.o.domain, state: 'saved' as const, note: `in ${checkpoint}: \`xl restore ${checkpoint}\` brings it back` } : where;
          throw new MigrationError(`${what} of ${this.o.domain} failed (exit ${r.exitCode})${stderr ? `:\n${stderr}` : ''}\nthe domain is now: ${describeLocation(saved)}`, saved, {
            hint: saved ? 'fbxen destroyed nothing; inspect the domain where it is (xl list, the console log)' : 'the domain vanished: read the console log and /var/log/xen/',
          });
        }
      }
    } finally {
      await stopWatching();
    }
    if (checkpoint) await rm(checkpoint, { force: true });
    if (this.remote && mode === 'live') this.at = this.at === 'localhost' ? this.o.to : 'localhost';
    const where = await this.locate();
    return { toolstackMs, where };
  }

  async attachConsole(capture: ConsoleCapture): Promise<boolean> {
    this.capture = capture;
    if (this.at !== 'localhost') {
      this.detach();
      return false; // the console of a domain on another host is not reachable here
    }
    const where = await this.locate();
    if (!where || where.name !== this.o.domain || where.host !== 'localhost' || where.id === '-') {
      this.detach();
      return false;
    }
    // Already attached to this domid: the console opened on NAME--incoming during the migration.
    if (this.incoming?.alive && this.incoming.domid === where.id) {
      this.detach();
      this.console = this.incoming;
      this.incoming = undefined;
      return true;
    }
    if (this.console?.alive && this.console.domid === where.id) return true;
    this.detach();
    this.console = this.open(where.id, capture.write.bind(capture));
    return true;
  }

  private open(domid: string, sink: (chunk: Buffer) => void): { proc: StreamingProcess; domid: string; alive: boolean } {
    // stdin is a pipe held open: xenconsole exits on EOF of its input; typing goes through it.
    const proc = this.o.runner.stream(this.xl, ['console', '-t', 'serial', domid], { stdin: 'pipe' as unknown as Readable, ...(this.o.env ? { env: this.o.env } : {}) });
    const handle = { proc, domid, alive: true };
    proc.stdin?.on('error', () => undefined);
    proc.stdout.on('data', sink);
    proc.done.then(
      () => (handle.alive = false),
      () => (handle.alive = false),
    );
    return handle;
  }

  /**
   * While a localhost migration runs, attach a second console to NAME--incoming as soon as it appears:
   * the guest's first lines after the resume are then not lost to a console that is not attached yet.
   * The old console stays attached until its domain goes.
   */
  private watchIncoming(): () => Promise<void> {
    let stopped = false;
    const capture = this.capture;
    const watcher = (async () => {
      if (!capture) return;
      while (!stopped) {
        await new Promise((r) => setTimeout(r, 200));
        if (stopped) return;
        const rows = await this.rows('localhost');
        const inc = rows?.find((r) => r.name === `${this.o.domain}--incoming`);
        if (inc) {
          this.incoming = this.open(String(inc.domid), capture.source());
          return;
        }
      }
    })();
    return async () => {
      stopped = true;
      await watcher.catch(() => undefined);
    };
  }

  writeConsole(text: string): void {
    this.console?.proc.stdin?.write(text);
  }

  private detach(): void {
    this.console?.proc.stdin?.end();
    this.console = undefined;
  }

  async close(): Promise<void> {
    const all = [this.console, this.incoming].filter((c) => c !== undefined);
    this.detach();
    this.incoming?.proc.stdin?.end();
    this.incoming = undefined;
    for (const c of all) await Promise.race([c.proc.done.catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
  }
}
