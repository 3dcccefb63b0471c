/**
 * The Toolstack interface: what fbxen's flows (boot, migrate-test) ask of a toolstack, in the spirit of
 * lima's driver interface. Two drivers implement it, each the only code that knows its toolstack:
 * `XlDriver` (src/core/toolstack/xl/, every `xl` command through a Runner that may run over ssh) and
 * `XapiDriver` (src/core/toolstack/xapi/, XAPI calls). The flows ask `capabilities` instead of guessing
 * from the toolstack's name, and never see an xl command line or an XAPI ref.
 *
 * A driver is constructed with its session (runner, env, host, credentials) by the flow; every method
 * below either acts on that host or, for `plan`, describes what it would do without contacting anything.
 */
import type { Writable } from 'node:stream';
import { TimeoutError, ToolstackError, type ErrorOptions, type FbxenError } from '../errors.js';
import type { ToolstackName } from '../run/artifacts.js';

export type { ToolstackName };
export type MigrateMode = 'live' | 'save-restore';

/** What a driver can do; a flow asks here rather than testing `name`. */
export interface ToolstackCapabilities {
  /** save to a checkpoint and restore (xl save/restore; XAPI VM.suspend/resume) */
  saveRestore: boolean;
  /** live migration on the same host (xl: localhost migrate; XAPI: within the pool) */
  liveMigrate: boolean;
  /** live migration to another host (xl: `xl migrate DOMID HOST` over ssh; XAPI: another pool host) */
  migrateToHost: boolean;
  /** a guest of type 'pvh' can be created */
  pvh: boolean;
  /** the CD drive can hold an ISO file fbxen made or was given (xl: a path on the host; XAPI: a VDI) */
  cdAsIso: boolean;
  /** --iso may also name an ISO the toolstack already has (XAPI: an ISO library's VDI by name) */
  isoByName?: boolean | undefined;
  /** the toolstack runs on another machine (xl over ssh, a XAPI pool): files must be staged there */
  remote: boolean;
  /** after a migration the console must be attached again by fbxen ('reattach', xl), or reconnects by itself ('reconnects', XAPI's QEMU) */
  consoleAfterMigrate: 'reattach' | 'reconnects';
  /** the state a save leaves: a file fbxen names ('file', xl) or the toolstack's own suspend image ('toolstack', XAPI) */
  checkpoint: 'file' | 'toolstack';
}

/** What the host said about itself at preflight; recorded in run.json. */
export interface HostFacts {
  /** 'localhost', the ssh host, or the pool master */
  host: string;
  xenVersion?: string | undefined;
  freeMemoryMiB?: number | undefined;
  /** anything else worth recording (pool name, SR, network, autoballoon...) */
  detail: Record<string, string | number | boolean | null>;
}

export type DiskFormat = 'raw' | 'qcow2' | 'vhd' | 'xva';

/**
 * The guest to create, toolstack-neutral. Paths are local to fbxen; `stage` turns them into paths on the
 * toolstack's host (the same paths when it is this machine).
 */
export interface GuestSpec {
  name: string;
  /** fixed per name so a domain fbxen made can be told from one another tool made under the same name; `prepare` fills it */
  uuid?: string | undefined;
  /** `prepare` fills it (xl: derived from the name) */
  mac?: string | undefined;
  type: 'hvm' | 'pvh';
  vcpus: number;
  memoryMiB: number;
  arch?: 'amd64' | 'i386' | undefined;
  release?: string | undefined;
  image: { path: string; format: DiskFormat; size: number; virtualSize: number };
  cdrom: { kind: 'iso'; path: string } | { kind: 'empty' };
  /** PVH: the kernel to boot directly and its command line (the kenv) */
  kernel?: string | undefined;
  cmdline?: string | undefined;
  /** TEST-ONLY (core/boot/standin-guest.ts): the stand-in guest's ramdisk; its cmdline is taken as it is */
  standin?: { ramdisk: string; vif?: boolean | undefined } | undefined;
  /** xl: the bridge; XAPI: the network (name or uuid; unset: the pool's default) */
  network?: string | undefined;
  /** XAPI: the SR for the disks (unset: the pool's default) */
  storage?: string | undefined;
}

/** Files fbxen has here that the toolstack's host needs. */
export interface StageRequest {
  image: string;
  cd?: string | undefined;
  kernel?: string | undefined;
  /** TEST-ONLY: the stand-in guest's ramdisk */
  ramdisk?: string | undefined;
}

/** Where the staged files are on the host, and how to remove what staging put there. */
export interface Staged {
  image: string;
  cd?: string | undefined;
  kernel?: string | undefined;
  ramdisk?: string | undefined;
  /** the host-side directory of this run, when staging made one (removed by `remove`) */
  dir?: string | undefined;
  /** removes only what staging created; a no-op locally */
  remove(): Promise<void>;
  /** leaves what staging created for a kept domain: neither remove() nor the driver's close() removes it */
  keep?(): void;
}

/** A domain (xl) or VM (XAPI) fbxen can act on. */
export interface DomainRef {
  name: string;
  /** xl domid, or the XAPI VM uuid */
  id: string;
  /** the host it is on, as the driver names hosts ('localhost' for xl on this machine) */
  host: string;
  uuid?: string | undefined;
}

export type DomainState = 'running' | 'paused' | 'suspended' | 'crashed' | 'halted' | 'saved' | 'unknown';

/** Where a domain is: which host, under which id and name, in what state. */
export interface DomainLocation {
  host: string;
  /** xl domid, or XAPI VM ref */
  id: string;
  name: string;
  state: DomainState;
  /** e.g. the checkpoint file holding a saved domain, or the other half of an interrupted xl migration */
  note?: string | undefined;
}

export function describeLocation(l: DomainLocation | undefined): string {
  if (!l) return 'nowhere: the domain vanished';
  return `${l.name} (${l.id}) ${l.state} on ${l.host}${l.note ? `; ${l.note}` : ''}`;
}

/** An attached serial console: bytes flow into the sink given at create/attach; typing goes to the guest. */
export interface ConsoleAttachment {
  /** types into the guest's serial console (migrate-test's console channel) */
  write(text: string): void;
  /** stops reading (the domain is not touched); resolves, within a bound, once nothing more is written into the sink */
  detach(): Promise<void>;
  /** resolves when the console client ends (the domain went, detach, the connection closed) */
  readonly done: Promise<void>;
  /** the domain the console belongs to */
  readonly domain: DomainRef;
}

export interface CreateOptions {
  /** the run directory: xl writes its xl.cfg here, XAPI its VM record */
  runDir: string;
  /** receives the console's bytes from the guest's first byte on */
  console: Writable;
  signal: AbortSignal;
  /** called as soon as the domain exists, before create returns: a signal then still finds and destroys it */
  onDomain?: ((d: DomainRef) => void) | undefined;
  /** appends a line to the run's transcript */
  log?: ((line: string) => void) | undefined;
}

/** What create made: the domain, and its console, attached before the guest ran. */
export interface Created {
  domain: DomainRef;
  console: ConsoleAttachment;
  /** the toolstack's description of the guest (xl.cfg text, the VM record), as written into the run */
  config: string;
  /** what --keep tells the user: where the domain runs, how to reach its console and remove it */
  keepHint: string;
  /** what the toolstack said about where the guest runs; run.json records it under the toolstack's name (XAPI: pool, host, SR, network) */
  facts?: object | undefined;
}

/** The two hosts migrate-test alternates between, in the driver's own names, and whether to skip. */
export interface MigrationRoute {
  /** a reason not to migrate where migration provably does not apply (a pool of one host, an xl without `migrate`) */
  skip?: string | undefined;
  /** where the domain is now */
  origin: string;
  /** where odd iterations go; even iterations come back to origin ('localhost' to 'localhost' for a local migration) */
  destination: string;
  /** the guest's type as the toolstack records it (xl list -l: c_info.type), when it could be read; the probes judge the guest against it */
  guestType?: 'hvm' | 'pvh' | undefined;
}

export interface MigrationOutcome {
  /** the toolstack's own time for the migration (command or task), ms */
  toolstackMs: number;
  where: DomainLocation | undefined;
}

/** A saved domain: the file (xl) or the suspended VM (XAPI). */
export interface Checkpoint {
  domain: DomainRef;
  /** the checkpoint file, when the toolstack writes one (capabilities.checkpoint === 'file') */
  file?: string | undefined;
}

/** The steps `plan` describes for --dry-run, in the order the flows take them. */
export type PlanStep =
  | { step: 'preflight'; guest: GuestSpec }
  /** the toolstack's description of the guest as create writes it into the run (xl.cfg's text) */
  | { step: 'config'; guest: GuestSpec }
  | { step: 'stage'; files: StageRequest }
  | { step: 'create'; guest: GuestSpec; runDir: string; consoleLog: string }
  | { step: 'stop'; guest: GuestSpec; keep: boolean; graceSec: number }
  | { step: 'migrate-preflight'; domain: string; mode: MigrateMode; to?: string | undefined }
  | { step: 'migrate'; domain: string; iteration: number; mode: MigrateMode; to?: string | undefined; checkpointDir: string }
  | { step: 'attach-console'; domain: string; mode: MigrateMode; to?: string | undefined };

export interface Toolstack {
  readonly name: ToolstackName;
  readonly capabilities: ToolstackCapabilities;
  /** the file create writes into the run directory: 'xl.cfg', 'vm-record.json' */
  readonly configFile: string;

  /**
   * Checks the guest against what this toolstack accepts and fills what it derives (uuid, mac). Pure: it
   * runs for --dry-run and `config xl` too, so a plan never promises what the run refuses.
   */
  prepare(guest: GuestSpec): GuestSpec;

  /** Host facts; throws EnvironmentError when this is no usable host (no hypervisor, not root, unreachable). */
  facts(): Promise<HostFacts>;
  /** Everything that can be checked before creating: memory, network/bridge, the name free, the image readable. */
  preflight(guest: GuestSpec): Promise<HostFacts>;
  /** Puts the image, CD and kernel where the toolstack's host reads them (a per-run directory over ssh); a no-op locally. */
  stage(files: StageRequest, runId: string): Promise<Staged>;
  /**
   * Creates and starts the guest with its console captured from the first byte (xl create -c; XAPI's
   * hvm_serial listener opened before VM.start). `guest` holds staged paths. Throws a mapped error; a
   * half-made domain is removed by the driver itself (only what it made).
   */
  create(guest: GuestSpec, options: CreateOptions): Promise<Created>;
  /** A domain named `name` (any state); with `uuid`, only when its uuid matches (fbxen's own). */
  find(name: string, uuid?: string): Promise<DomainRef | undefined>;
  /** Where the domain named `name` is, on every host the driver knows (in-flight migration names included). */
  locate(name: string): Promise<DomainLocation | undefined>;
  /** The domain's state, or undefined when it is gone (boot's wait for the frame polls it). */
  state(domain: DomainRef): Promise<DomainState | undefined>;
  /** (Re)attaches the serial console into `sink`; undefined when it cannot be read from here (another host, no tcp serial). */
  attachConsole(domain: DomainRef, sink: Writable): Promise<ConsoleAttachment | undefined>;
  /** Asks the guest to power off, waits up to graceMs; true when it went. */
  shutdown(domain: DomainRef, graceMs: number): Promise<boolean>;
  /** Destroys the domain and what this driver created for it (XAPI: its VDIs); one already gone counts as destroyed. */
  destroy(domain: DomainRef): Promise<void>;
  /** Saves (stops) the domain into a checkpoint (xl: `file` under `dir`; XAPI: VM.suspend). Throws MigrationError with where. */
  save(domain: DomainRef, dir: string, iteration: number, timeoutMs: number): Promise<Checkpoint>;
  /** Restores a checkpoint; the new domain. Throws MigrationError with where (the checkpoint is kept on failure). */
  restore(checkpoint: Checkpoint, timeoutMs: number): Promise<DomainRef>;
  /** migrate-test's preflight: the domain is there and running, the toolstack can migrate, the destination answers. */
  migrationRoute(domain: string, mode: MigrateMode, to: string | undefined): Promise<MigrationRoute>;
  /** One live migration of the domain to `host` (a MigrationRoute host). Throws MigrationError / MigrationTimeoutError with where. */
  migrate(domain: DomainRef, host: string, timeoutMs: number, console?: Writable): Promise<MigrationOutcome>;
  /**
   * The lines of one step for --dry-run (exact commands or calls); nothing is contacted. May be async
   * (XAPI records its plan by running its own code against a call recorder): the flow awaits it.
   */
  plan(step: PlanStep): string[] | Promise<string[]>;
  /** The driver's one error mapping: a raw failure of `action` (a failed command, a XAPI fault) as an FbxenError with a hint. */
  mapError(err: unknown, action: string): FbxenError;
  /** Ends the session (ssh master, XAPI logout, console clients); the domain is not touched. */
  close(): Promise<void>;
}

/** A migration that failed; `where` says where the domain is now (fbxen never destroys it). */
export class MigrationError extends ToolstackError {
  constructor(
    message: string,
    readonly where: DomainLocation | undefined,
    options: ErrorOptions = {},
  ) {
    super(message, options);
  }
}

export class MigrationTimeoutError extends TimeoutError {
  constructor(
    message: string,
    readonly where: DomainLocation | undefined,
    options: ErrorOptions = {},
  ) {
    super(message, options);
  }
}
