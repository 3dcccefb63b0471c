/**
 * Migration with xl: `xl migrate -s '' DOMID 'xl migrate-receive'` for localhost (no ssh needed, xl.md
 * §4.4), `xl migrate DOMID HOST` (ssh as root) to another dom0 and back, or `xl save DOMID FILE` +
 * `xl restore FILE`. After a failure the driver looks for the domain under its name and xl's in-flight
 * names (NAME--migratedaway at the sender, NAME--incoming at the receiver) and says where it is. It runs
 * `xl destroy` on one thing only: the paused NAME--incoming a failed live migration left beside a source
 * that runs again (removeHalfReceived); never on the source.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { EnvironmentError, TimeoutError } from '../../errors.js';
import type { RunResult } from '../../exec/runner.js';
import { describeLocation, MigrationError, MigrationTimeoutError, type Checkpoint, type DomainLocation, type DomainRef, type MigrateMode, type MigrationOutcome, type MigrationRoute } from '../types.js';
import { parseXlList, type XlListRow } from './parse.js';
import type { XlCommands } from './xl-commands.js';
import type { XlConsoles } from './xl-console.js';

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
export function tail(stderr: string): string {
  return stderr.trim().split('\n').slice(-3).map((l) => l.slice(0, 300)).join(' | ') || 'no message';
}

export function stateOf(flags: string): DomainLocation['state'] {
  if (flags.includes('c')) return 'crashed';
  if (flags.includes('s')) return 'suspended';
  if (flags.includes('p')) return 'paused';
  if (flags.includes('r') || flags.includes('b')) return 'running';
  // No flag at all: runnable, waiting for a CPU (the real xl shows a busy host's guests so, docs/lab.md).
  if (/^-+$/.test(flags)) return 'running';
  return 'unknown';
}

export interface XlPeers {
  /** the other dom0 for migrate-test (`--to`), or 'localhost' */
  to: string;
  /** the name `to` uses to migrate back here */
  backTo: string;
}

export function checkpointFile(dir: string, iteration: number): string {
  return join(dir, `checkpoint-${iteration}.xlsave`);
}

/** The migration half of XlDriver: it runs on `xl` (this dom0) and `xl.on(peer)` over ssh. */
export class XlMigration {
  constructor(
    private readonly xl: XlCommands,
    private readonly consoles: XlConsoles,
    private readonly peers: XlPeers,
    /** removes a restored checkpoint where xl wrote it (this machine, or the remote dom0) */
    private readonly removeFile: (file: string) => Promise<void> = (file) => rm(file, { force: true }),
  ) {}

  private get remote(): boolean {
    return this.peers.to !== 'localhost';
  }

  private async listOn(host: string): Promise<{ rows?: XlListRow[]; failure?: string }> {
    const r = await this.xl
      .on(host)
      .run(['list'], { allowFailure: true, timeoutMs: LIST_TIMEOUT_MS })
      .catch((err: unknown) => ({ exitCode: -1, stdout: '', stderr: err instanceof Error ? err.message : String(err) }));
    if (r.exitCode !== 0) return { failure: `\`xl list\` failed on ${host}: ${tail(r.stderr)}` };
    return { rows: parseXlList(r.stdout) };
  }

  /**
   * A skip only where migration provably does not apply: an xl that answers and has no such command.
   * An xl that cannot reach a hypervisor, a domain that is not here or not running, a destination that
   * cannot be reached: fbxen could not do the job, and says so with the exit code of its class.
   */
  async route(domain: string, mode: MigrateMode): Promise<MigrationRoute> {
    const origin = 'localhost';
    const destination = mode === 'live' && this.remote ? this.peers.to : 'localhost';
    // As boot: `xl info` first; with no hypervisor every xl command fails, `xl help` included.
    await this.xl.info();
    // As OSSTest's ts-migrate-support-check: the xl here must know the command.
    const help = await this.xl.run(['help'], { allowFailure: true, timeoutMs: LIST_TIMEOUT_MS });
    if (help.exitCode !== 0) throw new EnvironmentError(`\`xl help\` failed (status ${help.exitCode}): ${tail(help.stderr)}`, { hint: 'check `xl help` by hand on this dom0' });
    const verb = mode === 'live' ? 'migrate' : 'save';
    if (!new RegExp(`^\\s*${verb}\\s`, 'm').test(help.stdout + help.stderr)) return { skip: `this xl has no \`${verb}\` command (xl help does not list it)`, origin, destination };
    const list = await this.xl.run(['list'], { allowFailure: true, timeoutMs: LIST_TIMEOUT_MS });
    if (list.exitCode !== 0) throw new EnvironmentError(`\`xl list\` failed (status ${list.exitCode}): ${tail(list.stderr)}`, { hint: 'check `xl list` by hand on this dom0' });
    const row = parseXlList(list.stdout).find((r) => r.name === domain);
    if (!row) throw new EnvironmentError(`domain ${domain} is not on this host (xl list)`, { hint: 'boot it first (fbxen boot --keep), and give its name with --domain' });
    const state = stateOf(row.state);
    if (state !== 'running') throw new EnvironmentError(`domain ${domain} is ${state}, not running`, { hint: state === 'paused' ? `\`xl unpause ${domain}\`, then run migrate-test again` : 'boot it again (fbxen boot --keep); see its console log' });
    if (mode === 'live' && this.remote) {
      const r = await this.xl.on(this.peers.to).run(['info'], { allowFailure: true, timeoutMs: LIST_TIMEOUT_MS });
      if (r.exitCode !== 0) throw new EnvironmentError(`the destination ${this.peers.to} is not reachable as root over ssh with a working xl (status ${r.exitCode}): ${tail(r.stderr)}`, { hint: `check \`ssh root@${this.peers.to} xl info\` by hand (BatchMode: a key, no password)` });
    }
    return { origin, destination };
  }

  /**
   * Where the domain is. Undefined only when every host asked listed its domains and none is this one;
   * when a host could not be asked, and the domain is not found elsewhere, its place is unknown (state
   * 'unknown', the failure in the note): not "vanished". `expectAt` is asked first.
   */
  async locate(name: string, expectAt = 'localhost'): Promise<DomainLocation | undefined> {
    const hosts = this.remote ? [expectAt, expectAt === 'localhost' ? this.peers.to : 'localhost'] : ['localhost'];
    const found: DomainLocation[] = [];
    const failures: string[] = [];
    for (const host of hosts) {
      const { rows, failure } = await this.listOn(host);
      if (failure) failures.push(failure);
      for (const r of rows ?? []) {
        const base = r.name.replace(/--(migratedaway|incoming)$/, '');
        if (base !== name) continue;
        found.push({ host, id: String(r.domid), name: r.name, state: stateOf(r.state) });
      }
    }
    if (found.length === 0) return failures.length ? { host: expectAt, id: '-', name, state: 'unknown', note: failures.join('; ') } : undefined;
    // The complete, running copy first; the rest is reported as a note.
    found.sort((a, b) => Number(b.name === name) - Number(a.name === name) || Number(b.state === 'running') - Number(a.state === 'running'));
    const [main, ...others] = found;
    const notes = [...(others.length ? [`also ${others.map((l) => `${l.name} (${l.id}) ${l.state} on ${l.host}`).join(', ')}`] : []), ...failures];
    return notes.length ? { ...main!, note: notes.join('; ') } : main;
  }

  /** The domain as it is now at `domain.host`, or a MigrationError saying where it is instead. */
  private async current(domain: DomainRef): Promise<DomainLocation> {
    const where = await this.locate(domain.name, domain.host);
    if (!where || where.name !== domain.name || where.host !== domain.host || where.id === '-') throw new MigrationError(`domain ${domain.name} is gone before the migration: ${describeLocation(where)}`, where, { hint: 'check `xl list` and the console log' });
    return where;
  }

  /** Runs one step; a failure or timeout becomes a MigrationError that says where the domain is. */
  private async step(name: string, what: string, argv: [string, string[]], timeoutMs: number, checkpoint?: string): Promise<number> {
    let r: RunResult;
    const started = Date.now();
    try {
      // No abort signal: killing xl half-way through a migration can leave the domain suspended.
      r = await this.xl.runner.run(argv[0], argv[1], { timeoutMs, allowFailure: true, ...this.xl.envOption() });
    } catch (err) {
      const where = await this.locate(name);
      if (err instanceof TimeoutError) {
        throw new MigrationTimeoutError(`${what} of ${name} did not finish within ${Math.round(timeoutMs / 1000)} s; the domain is now: ${describeLocation(where)}`, where, {
          hint: `fbxen destroyed nothing: look at \`xl list\`${checkpoint && what === 'restore' ? ` (the checkpoint ${checkpoint} is kept)` : ''}; raise --step-timeout if the host is just slow`,
        });
      }
      throw err;
    }
    const ms = Date.now() - started;
    if (r.exitCode !== 0) {
      const where = await this.locate(name);
      const stderr = toolstackReason(r.stderr);
      const saved = checkpoint && what === 'restore' && !where ? { host: 'localhost', id: '-', name, state: 'saved' as const, note: `in ${checkpoint}: \`xl restore ${checkpoint}\` brings it back` } : where;
      throw new MigrationError(`${what} of ${name} failed (exit ${r.exitCode})${stderr ? `:\n${stderr}` : ''}\nthe domain is now: ${describeLocation(saved)}`, saved, {
        hint: saved ? 'fbxen destroyed nothing; inspect the domain where it is (xl list, the console log)' : 'the domain vanished: read the console log and /var/log/xen/',
      });
    }
    return ms;
  }

  /** The argv of one live migration of `domid` from `from` to `dest`. */
  migrateArgv(name: string, domid: string, from: string, dest: string): [string, string[]] {
    if (from === 'localhost' && dest === 'localhost') return this.xl.argv(['migrate', '-s', '', domid, 'xl migrate-receive']);
    return this.xl.on(from).argv(['migrate', from === 'localhost' ? domid : name, dest]);
  }

  async migrate(domain: DomainRef, dest: string, timeoutMs: number, incomingSink?: Writable): Promise<MigrationOutcome> {
    const at = await this.current(domain);
    // The route names this host 'localhost'; going back from the peer it is peers.backTo.
    const to = dest === 'localhost' && domain.host !== 'localhost' ? this.peers.backTo : dest;
    const local = domain.host === 'localhost' && to === 'localhost';
    // The receiving dom0 as this driver lists it (the route names it 'localhost' or the peer).
    const receiver = local ? 'localhost' : domain.host === 'localhost' ? this.peers.to : 'localhost';
    const before = await this.listOn(receiver);
    // Unknown (the list failed) counts as there: fbxen then touches nothing.
    const incomingBefore = !before.rows || before.rows.some((r) => r.name === `${domain.name}--incoming`);
    const stopWatching = local && incomingSink ? this.consoles.watchIncoming(domain.name, incomingSink) : async () => undefined;
    let toolstackMs: number;
    try {
      toolstackMs = await this.step(domain.name, 'migrate', this.migrateArgv(domain.name, at.id, domain.host, to), timeoutMs);
    } catch (err) {
      if (err instanceof MigrationError && !incomingBefore) throw await this.removeHalfReceived(err, domain, receiver);
      throw err;
    } finally {
      await stopWatching();
    }
    const where = await this.locate(domain.name, receiver);
    return { toolstackMs, where };
  }

  /**
   * A live migration that failed with the source resumed can leave NAME--incoming paused at the receiver
   * (the real xl does when its receiving side dies, docs/lab.md): a half-received copy this migration made,
   * holding the guest's memory, that must never run beside the source (both would write one disk). It is
   * destroyed only when it was not there before, is paused, and the source runs under its own name;
   * otherwise nothing is touched. The error then says what was done, or how to do it by hand.
   */
  private async removeHalfReceived(err: MigrationError, domain: DomainRef, receiver: string): Promise<MigrationError> {
    const incoming = `${domain.name}--incoming`;
    const atSource = await this.listOn(domain.host);
    const atReceiver = receiver === domain.host ? atSource : await this.listOn(receiver);
    const source = atSource.rows?.find((r) => r.name === domain.name);
    const half = atReceiver.rows?.find((r) => r.name === incoming);
    if (!source || stateOf(source.state) !== 'running' || !half || stateOf(half.state) !== 'paused') return err;
    const r = await this.xl
      .on(receiver)
      .run(['destroy', String(half.domid)], { allowFailure: true, timeoutMs: LIST_TIMEOUT_MS })
      .catch((e: unknown) => ({ exitCode: -1, stdout: '', stderr: e instanceof Error ? e.message : String(e) }));
    const where = await this.locate(domain.name, domain.host);
    const done =
      r.exitCode === 0
        ? `fbxen destroyed ${incoming} (${half.domid}) on ${receiver}: the half-received copy this migration left paused; the source runs`
        : `${incoming} (${half.domid}) on ${receiver} is the half-received copy this migration left paused; fbxen could not destroy it (${tail(r.stderr)}): run \`xl destroy ${half.domid}\` there, never \`xl unpause\``;
    return new MigrationError(`${err.message.replace(/\nthe domain is now: [\s\S]*$/, '')}\nthe domain is now: ${describeLocation(where)}\n${done}`, where, { ...(err.hint !== undefined ? { hint: err.hint } : {}) });
  }

  async save(domain: DomainRef, dir: string, iteration: number, timeoutMs: number): Promise<Checkpoint & { ms: number }> {
    const at = await this.current(domain);
    const file = checkpointFile(dir, iteration);
    const ms = await this.step(domain.name, 'save', this.xl.argv(['save', at.id, file]), timeoutMs, file);
    return { domain, file, ms };
  }

  async restore(checkpoint: Checkpoint, timeoutMs: number): Promise<{ domain: DomainRef; ms: number; where: DomainLocation | undefined }> {
    const file = checkpoint.file!;
    const ms = await this.step(checkpoint.domain.name, 'restore', this.xl.argv(['restore', file]), timeoutMs, file);
    await this.removeFile(file);
    const where = await this.locate(checkpoint.domain.name);
    return { domain: { name: checkpoint.domain.name, id: where?.id ?? '-', host: where?.host ?? 'localhost' }, ms, where };
  }
}
