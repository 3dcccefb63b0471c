/**
 * XlDriver: the Toolstack for xl, the only code that runs `xl`. Every command goes through the Runner it
 * is given (this dom0, or one that runs over ssh), via XlCommands (xl-commands.ts). Preflight is in
 * xl-preflight.ts, consoles in xl-console.ts, migration in xl-migrate.ts, --dry-run lines in xl-plan.ts.
 */
import { hostname } from 'node:os';
import { join, posix } from 'node:path';
import type { Writable } from 'node:stream';
import { FbxenError, TimeoutError, ToolstackError } from '../../errors.js';
import { CommandFailedError, type Runner } from '../../exec/runner.js';
import { writeFileAtomic } from '../../util/atomic.js';
import { sleep } from '../../util/sleep.js';
import type { Checkpoint, ConsoleAttachment, Created, CreateOptions, DomainLocation, DomainRef, DomainState, GuestSpec, HostFacts, MigrateMode, MigrationOutcome, MigrationRoute, PlanStep, StageRequest, Staged, Toolstack, ToolstackCapabilities } from '../types.js';
import { XlCommands } from './xl-commands.js';
import { macForName, renderXlConfig, uuidForName, validateXlGuestSpec, type XlGuestSpec } from './xl-config.js';
import { attachment, XlConsoles } from './xl-console.js';
import { stateOf, XlMigration, type XlPeers } from './xl-migrate.js';
import { xlPlan } from './xl-plan.js';
import { localFiles, remoteFiles, xlPreflight } from './xl-preflight.js';
import { RemoteRunDir, type XlRemote } from './xl-remote.js';

export interface XlDriverOptions {
  runner: Runner;
  /** fbxen's environment: passed to xl; FBXEN_XL_CONF and FBXEN_SYS_CLASS_NET are read from it */
  env?: Record<string, string | undefined> | undefined;
  /** the xl binary (default `xl` on PATH) */
  xl?: string | undefined;
  /** where bridges are looked up (default FBXEN_SYS_CLASS_NET, else /sys/class/net) */
  sysClassNet?: string | undefined;
  /** the name a peer dom0 uses to migrate back here (default this host's name) */
  backTo?: string | undefined;
  /** how often create looks for the new domain (ms) */
  pollMs?: number | undefined;
  /** a note for the user (progress.info) */
  info?: ((line: string) => void) | undefined;
  /**
   * xl on another dom0: every xl command runs through `session.runner()` (not `runner`), the image, CD
   * and xl.cfg are copied into `<root>/<run>/` there and that directory is removed at the end.
   */
  remote?: { session: XlRemote; root: string; run: string } | undefined;
}

const CREATE_TIMEOUT_MS = 120_000;

/** A PVH cmdline back into its KEY=VALUE entries (at the first "=", as FreeBSD's boot_parse_arg). */
function kernelEnvOf(cmdline: string | undefined): [string, string][] {
  if (!cmdline) return [];
  return cmdline.split(',').map((t): [string, string] => {
    const eq = t.indexOf('=');
    return eq < 0 ? [t, ''] : [t.slice(0, eq), t.slice(eq + 1)];
  });
}

export class XlDriver implements Toolstack {
  readonly name = 'xl' as const;
  readonly configFile = 'xl.cfg';
  readonly capabilities: ToolstackCapabilities;
  readonly xl: XlCommands;
  private readonly consoles: XlConsoles;
  private readonly peers: XlPeers;
  private readonly migration: XlMigration;
  /** where the domain of migrate-test was last seen (its locate looks there first) */
  private at = 'localhost';

  /** the run's directory on a remote dom0 */
  private readonly runDir: RemoteRunDir | undefined;

  constructor(private readonly o: XlDriverOptions) {
    const remote = o.remote;
    this.capabilities = { saveRestore: true, liveMigrate: true, migrateToHost: true, pvh: true, cdAsIso: true, remote: remote !== undefined, consoleAfterMigrate: 'reattach', checkpoint: 'file' };
    this.runDir = remote ? new RemoteRunDir(remote.session, remote.root, remote.run) : undefined;
    this.xl = remote
      ? new XlCommands(remote.session.runner(), { xl: o.xl, env: o.env, show: (file, args) => remote.session.plan.run(file, args) })
      : new XlCommands(o.runner, { xl: o.xl, env: o.env });
    this.consoles = new XlConsoles(this.xl);
    this.peers = { to: 'localhost', backTo: o.backTo ?? hostname() };
    const runner = this.xl.runner;
    this.migration = new XlMigration(this.xl, this.consoles, this.peers, remote ? async (file) => void (await runner.run('rm', ['-f', '--', file], { allowFailure: true, timeoutMs: 60_000 })) : undefined);
  }

  /** The xl.cfg values of a guest, validated (uuid and mac from the name when unset). */
  spec(guest: GuestSpec): XlGuestSpec {
    return validateXlGuestSpec({
      type: guest.type,
      // The flow encoded the kernel environment (FreeBSD's rules: no comma in a value), so splitting is exact.
      ...(guest.type === 'pvh'
        ? { pvh: guest.standin ? { kernel: guest.kernel, kernelEnv: [], standin: { ramdisk: guest.standin.ramdisk, cmdline: guest.cmdline ?? '', ...(guest.standin.vif ? { vif: true } : {}) } } : { kernel: guest.kernel, kernelEnv: kernelEnvOf(guest.cmdline) } }
        : {}),
      name: guest.name,
      uuid: guest.uuid ?? uuidForName(guest.name),
      mac: guest.mac ?? macForName(guest.name),
      ...(guest.arch ? { arch: guest.arch } : {}),
      ...(guest.release ? { release: guest.release } : {}),
      vcpus: guest.vcpus,
      memoryMiB: guest.memoryMiB,
      image: { path: guest.image.path, format: guest.image.format },
      cdrom: guest.cdrom,
      bridge: guest.network ?? 'xenbr0',
    });
  }

  prepare(guest: GuestSpec): GuestSpec {
    const s = this.spec(guest);
    return { ...guest, uuid: s.uuid, mac: s.mac, network: s.bridge };
  }

  /** The run's connection to a remote dom0 (the netfront round trip forwards its listener over it), undefined on this dom0. */
  get remoteLink(): XlRemote | undefined {
    return this.o.remote?.session;
  }

  /** Connects to a remote dom0 (once); nothing locally. */
  private async ready(): Promise<void> {
    await this.o.remote?.session.open();
  }

  /** The guest as it is seen on the dom0: its files in the run's directory there. */
  private onHost(guest: GuestSpec): GuestSpec {
    const d = this.runDir;
    if (!d) return guest;
    return { ...guest, image: { ...guest.image, path: d.pathOf(guest.image.path) }, cdrom: guest.cdrom.kind === 'iso' ? { kind: 'iso', path: d.pathOf(guest.cdrom.path) } : guest.cdrom };
  }

  async facts(): Promise<HostFacts> {
    await this.ready();
    const i = await this.xl.info();
    return { host: this.o.remote ? this.o.remote.session.label : i.host, xenVersion: i.xen_version, freeMemoryMiB: i.free_memory, detail: { nr_cpus: i.nr_cpus, total_memory: i.total_memory } };
  }

  async preflight(guest: GuestSpec): Promise<HostFacts> {
    await this.ready();
    const env = this.o.env ?? {};
    const files = this.o.remote ? remoteFiles(this.xl.runner) : localFiles;
    return xlPreflight(this.xl, this.spec(this.onHost(guest)), { xlConf: env.FBXEN_XL_CONF ?? '/etc/xen/xl.conf', sysClassNet: this.o.sysClassNet ?? env.FBXEN_SYS_CLASS_NET ?? '/sys/class/net' }, this.o.info ?? (() => undefined), files);
  }

  async stage(files: StageRequest): Promise<Staged> {
    // This dom0 reads fbxen's files where they are; a remote one gets copies in the run's directory.
    if (this.runDir) return this.runDir.stage(files);
    return { ...files, remove: async () => undefined };
  }

  /**
   * `xl create -c xl.cfg`: the console is captured from the first byte (xl unpauses only once the console
   * client is attached). The domain this run made is the one with the config's name and uuid; a domain
   * of that name with another uuid is someone else's and left alone.
   */
  async create(guest: GuestSpec, options: CreateOptions): Promise<Created> {
    const spec = this.spec(guest);
    if (spec.type === 'pvh') this.consoles.consoleType = 'pv';
    const config = renderXlConfig(spec);
    const configPath = join(options.runDir, this.configFile);
    await writeFileAtomic(configPath, config);
    // A remote dom0 reads the copy in the run's directory there.
    const hostConfig = this.runDir ? await this.runDir.put(configPath) : configPath;
    const client = this.xl.createWithConsole(hostConfig);
    const domain: DomainRef = { name: spec.name, id: '', host: this.xl.host, uuid: spec.uuid };
    const console = attachment(client, domain, options.console);
    let createFailed: unknown;
    let createExited = false;
    client.done.then(
      () => (createExited = true),
      (err: unknown) => {
        createExited = true;
        createFailed = err;
      },
    );
    const deadline = Date.now() + CREATE_TIMEOUT_MS;
    try {
      for (;;) {
        options.signal.throwIfAborted();
        if (createFailed !== undefined) {
          // libxl destroys a half-built domain itself; there is nothing of ours to clean up.
          const stderr = (createFailed as { result?: { stderr?: string } }).result?.stderr?.trim() ?? '';
          throw new ToolstackError(`xl create failed${stderr ? `:\n${stderr}` : `: ${(createFailed as Error).message}`}`, {
            hint: `the config is ${configPath}; try \`xl create -c ${configPath}\` by hand to see the whole error`,
          });
        }
        const id = await this.xl.domid(spec.name);
        if (id !== undefined) {
          // The name was free at preflight; the uuid in `xl list -l` confirms this domain is the one our config made.
          const uuid = (await this.xl.listLong(id))[0]?.config.c_info.uuid;
          if (uuid !== undefined && uuid !== spec.uuid) {
            throw new ToolstackError(`domain ${spec.name} (domid ${id}) has uuid ${uuid}, not ${spec.uuid}: another tool created it meanwhile; fbxen leaves it alone`, {
              hint: 'check `xl list -l`, then boot again with another --name',
            });
          }
          domain.id = String(id);
          options.onDomain?.(domain);
          break;
        }
        if (createExited) {
          await sleep(0); // let a rejection that raced with the exit land before judging
          if (createFailed !== undefined) continue;
          throw new ToolstackError(`xl create exited but no domain named ${spec.name} exists`, { hint: `read the console log and the transcript in ${options.runDir}` });
        }
        if (Date.now() > deadline) throw new TimeoutError(`xl create did not produce domain ${spec.name} within ${CREATE_TIMEOUT_MS / 1000} s`, { hint: 'check `xl list` and the xl logs in /var/log/xen/' });
        await sleep(this.o.pollMs ?? 250, options.signal);
      }
    } catch (err) {
      await console.detach();
      throw err;
    }
    return { domain, console, config, keepHint: `domain ${spec.name} (domid ${domain.id}) left running; the console capture stops when fbxen exits (xl console ${domain.id} reattaches)` };
  }

  async find(name: string, uuid?: string): Promise<DomainRef | undefined> {
    await this.ready();
    const id = await this.xl.domid(name);
    if (id === undefined) return undefined;
    if (uuid !== undefined) {
      const actual = (await this.xl.listLong(id))[0]?.config.c_info.uuid;
      // An unreadable uuid counts as ours, as at create: the name was free at preflight.
      if (actual !== undefined && actual !== uuid) return undefined;
    }
    return { name, id: String(id), host: this.xl.host, ...(uuid ? { uuid } : {}) };
  }

  async locate(name: string): Promise<DomainLocation | undefined> {
    await this.ready();
    return this.migration.locate(name, this.at);
  }

  async state(domain: DomainRef): Promise<DomainState | undefined> {
    const rows = await this.xl.list().catch(() => undefined);
    if (!rows) return 'unknown'; // xl did not answer: not evidence that the domain went
    const row = rows.find((r) => String(r.domid) === domain.id);
    return row ? stateOf(row.state) : undefined;
  }

  async attachConsole(domain: DomainRef, sink: Writable): Promise<ConsoleAttachment | undefined> {
    // The console of a domain on another dom0 is not reachable from here.
    if (domain.host !== this.xl.host || domain.id === '-' || domain.id === '') return undefined;
    return this.consoles.attach(domain, sink);
  }

  shutdown(domain: DomainRef, graceMs: number): Promise<boolean> {
    return this.xl.shutdown(Number(domain.id), graceMs);
  }

  destroy(domain: DomainRef): Promise<void> {
    return this.xl.destroy(Number(domain.id));
  }

  async save(domain: DomainRef, dir: string, iteration: number, timeoutMs: number): Promise<Checkpoint> {
    // On a remote dom0 xl writes the checkpoint into the run's directory there.
    const where = this.runDir ? await this.runDir.made() : dir;
    const { ms: _ms, ...cp } = await this.migration.save(domain, where, iteration, timeoutMs);
    return cp;
  }

  async restore(checkpoint: Checkpoint, timeoutMs: number): Promise<DomainRef> {
    const r = await this.migration.restore(checkpoint, timeoutMs);
    this.at = r.domain.host;
    return r.domain;
  }

  async migrationRoute(domain: string, mode: MigrateMode, to: string | undefined): Promise<MigrationRoute> {
    this.peers.to = to ?? 'localhost';
    await this.ready();
    const route = await this.migration.route(domain, mode);
    if (route.skip) return route;
    // The type decides the console to attach (PVH: the PV console) and what the probes expect.
    const type = (await this.xl.listLong(domain).catch(() => []))[0]?.config.c_info.type;
    const guestType = type === 'hvm' || type === 'pvh' ? type : undefined;
    if (type === 'pvh' || type === 'pv') this.consoles.consoleType = 'pv';
    return guestType ? { ...route, guestType } : route;
  }

  async migrate(domain: DomainRef, host: string, timeoutMs: number, console?: Writable): Promise<MigrationOutcome> {
    const out = await this.migration.migrate(domain, host, timeoutMs, console);
    if (out.where) this.at = out.where.host;
    return out;
  }

  plan(step: PlanStep): string[] {
    const d = this.runDir;
    const lines = xlPlan(this.xl, step, { spec: (g) => this.spec(this.onHost(g)), backTo: this.peers.backTo, configPath: (runDir) => (d ? d.pathOf(this.configFile) : join(runDir, this.configFile)) });
    if (!d) return lines;
    // The connection is opened before the first command: the preflight's.
    if (step.step === 'preflight' || step.step === 'migrate-preflight') return [...this.o.remote!.session.plan.open(), ...lines];
    if (step.step === 'migrate' && step.mode === 'save-restore') return xlPlan(this.xl, { ...step, checkpointDir: posix.join(d.root, d.run) }, { spec: (g) => this.spec(g), backTo: this.peers.backTo, configPath: () => '' });
    if (step.step === 'stage') return d.planStage(step.files);
    if (step.step === 'create') return [`${this.o.remote!.session.plan.put(join(step.runDir, this.configFile), posix.join(d.root, d.run))}`, ...lines];
    if (step.step === 'stop') return [...lines, ...d.planEnd()];
    return lines;
  }

  mapError(err: unknown, action: string): FbxenError {
    if (err instanceof CommandFailedError) return new ToolstackError(`${action}: ${err.message}`, { hint: err.hint ?? 'check `xl list` and the xl logs in /var/log/xen/', cause: err });
    if (err instanceof FbxenError) return err;
    return new ToolstackError(`${action}: ${err instanceof Error ? err.message : String(err)}`, { hint: 'check `xl list` and the xl logs in /var/log/xen/', cause: err });
  }

  async close(): Promise<void> {
    await this.consoles.close();
    // What stays on the host is said, not hidden; the session still closes.
    await this.runDir?.cleanup().catch((err: unknown) => this.o.info?.(`the run's directory on ${this.o.remote?.session.label} was not removed: ${err instanceof Error ? err.message : String(err)}`));
    await this.o.remote?.session.close();
  }
}
