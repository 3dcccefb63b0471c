/**
 * `XapiDriver`: the Toolstack of a XenServer / XCP-ng pool, through XAPI only (no ssh to the pool's
 * hosts). The only code that talks to XAPI; the flows see DomainRefs, never refs or calls.
 *
 * - create: the console listener first (its tcp: target goes into platform:hvm_serial), then the VM
 *   from the image (vm-create.ts) and VM.start; what it made is removed on failure (created.ts).
 * - migrate-test: VM.pool_migrate / VM.migrate_send / VM.suspend + VM.resume (migration.ts).
 * - --dry-run: the same code runs against a call recorder (api.ts), so a plan shows the calls of a run.
 */
import { basename, join } from 'node:path';
import type { Writable } from 'node:stream';
import { EnvironmentError, FbxenError, InputError, ToolstackError } from '../../errors.js';
import { writeFileAtomic } from '../../util/atomic.js';
import { NAME_PATTERN } from '../../util/names.js';
import { MigrationError, type Checkpoint, type ConsoleAttachment, type CreateOptions, type Created, type DomainLocation, type DomainRef, type DomainState, type GuestSpec, type HostFacts, type MigrateMode, type MigrationOutcome, type MigrationRoute, type PlanStep, type Staged, type StageRequest, type Toolstack, type ToolstackCapabilities } from '../types.js';
import { str, type Api } from './api.js';
import { consoleAttachment, openConsoleListener, parseSerialTarget, type ConsoleListener } from './console.js';
import { redact } from './credentials.js';
import { CreatedObjects } from './created.js';
import { XapiError } from './errors.js';
import { VmMigration, vmState } from './migration.js';
import { XapiPlan } from './plan.js';
import { choosePool, type PoolChoice } from './pool.js';
import { checkXapiSettings, login, type XapiDriverOptions, type XapiSession, type XapiSettings } from './session.js';
import { createAndStartVm, poolFacts, vmBuild, type XapiPoolFacts } from './vm-create.js';

export type { XapiDriverOptions, XapiPoolFacts, XapiSession };

export interface XapiCreated extends Created {
  /** the pool's facts and, when the driver logged in itself, the XAPI URL and user (run.json's xapi section) */
  facts: XapiPoolFacts & { url?: string; user?: string };
}

const CAPABILITIES: ToolstackCapabilities = {
  saveRestore: true,
  liveMigrate: true,
  migrateToHost: true,
  pvh: false,
  cdAsIso: true,
  isoByName: true,
  remote: true,
  consoleAfterMigrate: 'reconnects',
  checkpoint: 'toolstack',
};

export class XapiDriver implements Toolstack {
  readonly name = 'xapi' as const;
  readonly capabilities = CAPABILITIES;
  readonly configFile = 'vm-record.json';

  private client: XapiSession | undefined;
  private ownSession = false;
  private pool: PoolChoice | undefined;
  private planner: XapiPlan | undefined;
  /** VM uuid → its ref and what this driver created for it */
  private readonly mine = new Map<string, { ref: string; created: CreatedObjects }>();
  /** what an unfinished create made: close() removes it */
  private pending: CreatedObjects | undefined;
  private readonly listeners = new Map<string, { listener: ConsoleListener; attachment: ConsoleAttachment }>();
  private readonly migrations = new Map<string, VmMigration>();

  /** the settings once checked (undefined with a given session) */
  settings: XapiSettings | undefined;
  private checked: Promise<XapiSettings | undefined> | undefined;
  /** the run id: given, or from stage(), or the run directory's name */
  private run: string | undefined;

  /** Checks nothing yet: the settings are read on first use (open() checks them at once). */
  constructor(private readonly o: XapiDriverOptions) {
    this.client = o.session;
    this.run = o.run;
  }

  /** A driver whose settings (credentials, http rule, CA file, console port) are checked, nothing contacted. */
  static async open(o: XapiDriverOptions): Promise<XapiDriver> {
    const d = new XapiDriver(o);
    await d.check();
    return d;
  }

  /** With an open session (migrate-test's, the tests'). */
  static withSession(session: XapiSession, o: Omit<XapiDriverOptions, 'session'>): XapiDriver {
    return new XapiDriver({ ...o, session });
  }

  /** The settings, checked once: for --dry-run too, a plan never promises what the run refuses. */
  check(): Promise<XapiSettings | undefined> {
    const o = this.o;
    this.checked ??= o.session
      ? Promise.resolve(undefined)
      : checkXapiSettings({ env: o.env, cwd: o.cwd, caFile: o.caFile, insecure: o.insecure, insecureHttp: o.insecureHttp, warn: o.warn }).then((s) => (this.settings = s));
    return this.checked;
  }

  /** Hides the password in TEXT (transcripts, plans, messages). */
  redact(text: string): string {
    return this.settings ? redact(text, this.settings.secrets) : text;
  }

  private step<T>(title: string, fn: () => Promise<T>): Promise<T> {
    return this.o.step ? this.o.step(title, fn) : fn();
  }

  private async session(): Promise<XapiSession> {
    if (this.client) return this.client;
    const s = (await this.check())!;
    this.client = await this.step(`Log in to XAPI at ${s.creds.url}`, () => login(s, { ...this.o, log: this.o.log }));
    this.ownSession = true;
    return this.client;
  }

  /** The session as the driver's code calls it: each call stops once the run is interrupted. */
  private async api(): Promise<Api> {
    const c = await this.session();
    const signal = this.o.signal;
    const put = c.putFile?.bind(c);
    return {
      call: (method, ...params) => (signal.throwIfAborted(), c.call(method, ...params)),
      callAsync: (method, params, ms) => (signal.throwIfAborted(), c.callAsync(method, params, ms)),
      putFile: (path, query, file, label, ms) => {
        signal.throwIfAborted();
        if (!put) throw new ToolstackError('this XAPI session cannot upload', { hint: 'this is a bug in fbxen' });
        return put(path, query, file, label, ms);
      },
    };
  }

  /** Errors leave the driver with the password hidden. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof Error) err.message = this.redact(err.message);
      throw err;
    }
  }

  prepare(guest: GuestSpec): GuestSpec {
    if (!NAME_PATTERN.test(guest.name)) {
      throw new InputError(`VM name ${JSON.stringify(guest.name)} is not allowed`, { hint: 'use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit (it also names the run directory)' });
    }
    if (guest.type === 'pvh') {
      // docs/xapi.md, "PVH": a pvh VM needs a kernel already under /var/lib/xcp/guest/ in dom0, which the XenAPI cannot write.
      throw new InputError("fbxen boots XAPI guests as HVM only: a PVH VM needs a pool whose xapi knows domain_type 'pvh' and its kernel already under /var/lib/xcp/guest/ on the host, which the XenAPI cannot put there", {
        hint: 'drop --type pvh for XAPI, or boot PVH with --toolstack xl',
      });
    }
    if (guest.image.format === 'qcow2') throw new InputError(`${guest.image.path} is qcow2, which XenServer does not import`, { hint: 'build a .vhd, .xva or raw image (fbxen build --format vhd)' });
    if (guest.image.format !== 'xva' && guest.image.virtualSize % (2 * 1024 * 1024) !== 0) {
      this.o.warn?.(`the disk is ${guest.image.virtualSize} bytes; XenServer rounds VDIs up to 2 MiB, so the backup GPT will not sit on the last sector (build with a size that is a multiple of 2 MiB)`);
    }
    return guest;
  }

  async facts(): Promise<HostFacts> {
    return this.guard(async () => {
      const api = await this.api();
      const pools = await api.call('pool.get_all');
      const poolRef = Array.isArray(pools) ? str(pools[0]) : str(pools);
      return { host: this.masterHost(), detail: { pool: str(await api.call('pool.get_name_label', poolRef)) } };
    });
  }

  private masterHost(): string {
    const url = this.client?.masterUrl ?? this.settings?.creds.url ?? '';
    try {
      return new URL(url).hostname;
    } catch {
      return url;
    }
  }

  /** Logs in and chooses the pool's SR and network for the guest. */
  async preflight(guest: GuestSpec): Promise<HostFacts> {
    return this.guard(async () => {
      const api = await this.api();
      const p = await this.step('Find the pool, the SR and the network', () => choosePool(api, { sr: guest.storage, network: guest.network }));
      this.pool = p;
      return {
        host: this.masterHost(),
        detail: { pool: p.poolName, master: p.master.name, sr: str(p.srRec['name_label']), srShared: p.srRec['shared'] === true, network: str(p.netRec['name_label']) },
      };
    });
  }

  /** XAPI reads nothing from this machine's disk: create uploads the image and the CD through XAPI's HTTP handlers. */
  async stage(files: StageRequest, runId: string): Promise<Staged> {
    this.run ??= runId;
    return { image: files.image, cd: files.cd, kernel: files.kernel, remove: async () => undefined };
  }

  async create(guest: GuestSpec, options: CreateOptions): Promise<XapiCreated> {
    return this.guard(async () => {
      const run = this.run ?? basename(options.runDir);
      const api = await this.api();
      const session = this.client!;
      const created = new CreatedObjects();
      this.pending = created;
      let listener: ConsoleListener | undefined;
      try {
        // The console listener comes first: its address goes into the VM's platform map.
        const advertise = this.o.consoleHost ?? this.o.env['FBXEN_XAPI_CONSOLE_HOST'] ?? this.client?.localAddress;
        if (!advertise) throw new EnvironmentError('cannot tell which address the pool can reach this host on', { hint: "set FBXEN_XAPI_CONSOLE_HOST to this host's address as seen from the pool" });
        const log = options.log ?? this.o.log;
        listener = await openConsoleListener({
          sink: options.console,
          advertiseHost: advertise,
          listenHost: this.listenHost(),
          port: this.settings?.consolePort,
          onConnection: (remote) => log?.(`# console connection from ${remote}`),
          pool: this.client, // only the pool's hosts may write into the console log
          env: this.o.env,
        });
        if (!this.pool) await this.preflight(guest);
        const vm = await createAndStartVm(vmBuild(guest, { ...this.o, run }, listener.target, this.pool!), { api, created, step: (t, fn) => this.step(t, fn), warn: (m) => this.o.warn?.(m), log });
        const domain: DomainRef = { name: guest.name, id: vm.uuid, host: vm.host?.name ?? 'the pool', uuid: vm.uuid };
        this.mine.set(vm.uuid, { ref: vm.ref, created });
        this.pending = undefined;
        options.onDomain?.(domain);
        const attachment = this.attachment(domain, listener);
        const facts = poolFacts(this.pool!, vm);
        // The VM record of the run (what xl.cfg is to xl): where it runs, its SR, network and nonce channel.
        const config = this.redact(`${JSON.stringify(facts, null, 2)}\n`);
        await writeFileAtomic(join(options.runDir, this.configFile), config);
        return {
          domain,
          console: attachment,
          config,
          keepHint: `VM ${guest.name} (${vm.uuid}) left running on ${vm.host?.name ?? 'the pool'}; its console stays pointed at ${listener.target}`,
          facts: this.settings ? { url: this.settings.creds.url, user: this.settings.creds.user, ...facts } : facts,
        };
      } catch (err) {
        await listener?.close();
        // The session directly: cleanup also runs once the run is interrupted.
        const failures = await created.remove(session);
        this.pending = undefined;
        for (const [uuid, m] of this.mine) if (m.created === created) this.mine.delete(uuid);
        for (const f of failures) (options.log ?? this.o.log)?.(`# cleanup failed: ${f}`);
        throw err;
      }
    });
  }

  private attachment(domain: DomainRef, listener: ConsoleListener): ConsoleAttachment {
    const attachment = consoleAttachment(domain, listener, () => this.listeners.delete(domain.id));
    this.listeners.set(domain.id, { listener, attachment });
    return attachment;
  }

  /** Where the console listener binds: the option, FBXEN_XAPI_CONSOLE_LISTEN, else the listener's choice. */
  private listenHost(): string | undefined {
    return this.o.listenHost ?? (this.o.env['FBXEN_XAPI_CONSOLE_LISTEN'] || undefined);
  }

  /** The VM's ref: known when this driver created it, else by uuid, else by its (unique) name. */
  private async refOf(domain: DomainRef): Promise<string> {
    const known = this.mine.get(domain.id);
    if (known) return known.ref;
    // migrate-test's DomainRefs come from locate(), whose id is the VM's ref
    if (domain.id.startsWith('OpaqueRef:')) return domain.id;
    if (!domain.uuid) return this.migration(domain.name).vmRef();
    return str(await (await this.session()).call('VM.get_by_uuid', domain.uuid));
  }

  async find(name: string, uuid?: string): Promise<DomainRef | undefined> {
    // The session itself, not the interrupt-checked API: cleanup looks for the VM after Ctrl-C.
    const api = await this.session();
    const refs = await api.call('VM.get_by_name_label', name);
    for (const ref of Array.isArray(refs) ? refs.map(str) : []) {
      const rec = (await api.call('VM.get_record', ref)) as Record<string, unknown>;
      if (rec['is_a_template'] === true) continue;
      if (uuid !== undefined && rec['uuid'] !== uuid) continue;
      const m = this.migration(name);
      const where = await m.locate().catch(() => undefined);
      return { name, id: str(rec['uuid'] as string), host: where?.host ?? str(rec['resident_on'] as string), uuid: str(rec['uuid'] as string) };
    }
    return undefined;
  }

  private migration(name: string): VmMigration {
    let m = this.migrations.get(name);
    if (!m) {
      m = new VmMigration({ call: (...a) => this.session().then((c) => c.call(...a)), callAsync: (...a) => this.session().then((c) => c.callAsync(...a)) }, name, { destSr: this.o.destSr });
      this.migrations.set(name, m);
    }
    return m;
  }

  locate(name: string): Promise<DomainLocation | undefined> {
    return this.migration(name).locate();
  }

  async state(domain: DomainRef): Promise<DomainState | undefined> {
    try {
      const c = await this.session();
      return vmState(str(await c.call('VM.get_power_state', await this.refOf(domain))));
    } catch (err) {
      // Gone: its ref or uuid no longer valid, or no VM of that name any more.
      if ((err instanceof XapiError && (err.code === 'HANDLE_INVALID' || err.code === 'UUID_INVALID')) || err instanceof MigrationError) return undefined;
      throw err;
    }
  }

  /** Listens where the VM's platform:hvm_serial points (QEMU reconnects there after each migration). */
  async attachConsole(domain: DomainRef, sink: Writable): Promise<ConsoleAttachment | undefined> {
    const open = this.listeners.get(domain.id);
    if (open) return open.attachment;
    const c = await this.session();
    const platform = (await c.call('VM.get_platform', await this.refOf(domain))) as Record<string, unknown>;
    const target = parseSerialTarget(String(platform?.['hvm_serial'] ?? ''));
    if (!target) return undefined; // no tcp console: the ssh channel is the way in
    // The hardened listener of fbxen boot: only the pool's hosts, one connection read at a time.
    const listener = await openConsoleListener({ sink, advertiseHost: target.host, listenHost: this.listenHost(), port: target.port, pool: this.client, env: this.o.env });
    return this.attachment(domain, listener);
  }

  async shutdown(domain: DomainRef, graceMs: number): Promise<boolean> {
    const c = await this.session();
    try {
      await c.callAsync('VM.clean_shutdown', [await this.refOf(domain)], graceMs);
      return true;
    } catch (err) {
      if (err instanceof FbxenError) return false;
      throw err;
    }
  }

  /** The VM, and the VDIs this driver created for it; a VM already gone counts as destroyed. */
  async destroy(domain: DomainRef): Promise<void> {
    return this.guard(async () => {
      const known = this.mine.get(domain.id);
      let created = known?.created ?? new CreatedObjects();
      const session = await this.session();
      if (!known) {
        const ref = await this.refOf(domain).catch((err: unknown) => {
          if ((err instanceof XapiError && (err.code === 'UUID_INVALID' || err.code === 'HANDLE_INVALID')) || err instanceof MigrationError) return undefined;
          throw err;
        });
        if (!ref) return;
        if (this.pending?.owns(ref)) {
          // The VM of a create that has not returned (Ctrl-C meanwhile): its VDIs go with it.
          created = this.pending;
        } else {
          // Only what this run made: a VM of the same name that another run or a user made stays.
          const other = (await session.call('VM.get_other_config', ref)) as Record<string, unknown> | undefined;
          if (this.run === undefined || other?.['fbxen_run'] !== this.run) {
            throw new ToolstackError(`VM ${domain.name} was not created by this fbxen run (other_config fbxen_run is ${JSON.stringify(other?.['fbxen_run'] ?? null)}): not destroyed`, { hint: 'fbxen removes only what its run created; remove it with xe vm-uninstall if it is yours' });
          }
          created.vm = ref;
        }
      }
      // Cleanup uses the session directly: it also runs once the run is interrupted.
      const failures = await created.remove(session);
      this.mine.delete(domain.id);
      if (failures.length) throw new ToolstackError(`cleanup left something behind: ${failures.join('; ')}`, { hint: 'remove the leftovers named above in XenCenter or with xe' });
    });
  }

  async save(domain: DomainRef, _dir: string, _iteration: number, timeoutMs: number): Promise<Checkpoint> {
    await this.migration(domain.name).suspendOrResume('suspend', timeoutMs);
    return { domain };
  }

  async restore(checkpoint: Checkpoint, timeoutMs: number): Promise<DomainRef> {
    const m = this.migration(checkpoint.domain.name);
    await m.suspendOrResume('resume', timeoutMs);
    const where = await m.locate();
    return { ...checkpoint.domain, host: where?.host ?? checkpoint.domain.host };
  }

  migrationRoute(domain: string, mode: MigrateMode, to: string | undefined): Promise<MigrationRoute> {
    return this.migration(domain).route(mode, to);
  }

  async migrate(domain: DomainRef, host: string, timeoutMs: number): Promise<MigrationOutcome> {
    const m = this.migration(domain.name);
    const toolstackMs = await m.migrateTo(host, timeoutMs);
    return { toolstackMs, where: await m.locate() };
  }

  async plan(step: PlanStep): Promise<string[]> {
    if (step.step === 'preflight') await this.check();
    this.planner ??= new XapiPlan({ ...this.o, user: this.settings?.creds.user, run: this.run });
    return (await this.planner.lines(step)).map((l) => this.redact(l));
  }

  mapError(err: unknown, action: string): FbxenError {
    if (err instanceof FbxenError) return err;
    return new ToolstackError(`XAPI ${action} failed: ${this.redact(err instanceof Error ? err.message : String(err))}`, { hint: 'the pool master\'s /var/log/xensource.log has the details' });
  }

  /** Removes what an unfinished create made, closes the console listeners and logs out (a given session stays open). */
  async close(): Promise<void> {
    const pending = this.pending;
    this.pending = undefined;
    if (pending && this.client) await pending.remove(this.client).catch(() => undefined);
    for (const { attachment } of [...this.listeners.values()]) await attachment.detach();
    if (this.ownSession) await this.client?.logout?.();
    if (this.ownSession) this.client = undefined;
  }
}
