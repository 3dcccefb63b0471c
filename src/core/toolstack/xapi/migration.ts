/**
 * Migration with XAPI (xapi.md §5.5): VM.pool_migrate inside the pool when every disk is on a shared SR;
 * VM.migrate_send with a VDI map to --dest-sr otherwise (storage motion); VM.suspend + VM.resume for
 * save-restore. The route alternates between the VM's host and the destination, as xcp-ng-tests' "then
 * come back". fbxen never destroys a VM here: a failure says where the VM is now.
 */
import { z } from 'zod';
import { EnvironmentError, TimeoutError } from '../../errors.js';
import { describeLocation, MigrationError, MigrationTimeoutError, type DomainLocation, type MigrateMode, type MigrationRoute } from '../types.js';
import type { Api } from './api.js';
import { XapiError } from './errors.js';
import { migrateSend, poolMigrate } from './migrate.js';
import { expectShape, HostRecord, RecordMap, RefList, SrRecord, VbdRecord } from './records.js';

export type Caller = Pick<Api, 'call' | 'callAsync'>;

export const VmRecord = z
  .object({
    name_label: z.string(),
    power_state: z.string(),
    resident_on: z.string(),
    VBDs: z.array(z.string()),
    VIFs: z.array(z.string()).default([]),
    platform: z.record(z.string(), z.unknown()).default({}),
    allowed_operations: z.array(z.string()).optional(),
  })
  .loose();
export type VmRecordT = z.infer<typeof VmRecord>;

const STATE: Record<string, DomainLocation['state']> = { Running: 'running', Paused: 'paused', Suspended: 'suspended', Halted: 'halted' };

export function vmState(powerState: string): DomainLocation['state'] {
  return STATE[powerState] ?? 'unknown';
}

/** One VM, found by name, and the hosts and SR a migration of it uses. */
export class VmMigration {
  private vm: string | undefined;
  /** host ref → name label */
  readonly hostNames = new Map<string, string>();
  private home: string | undefined;
  private dest: string | undefined;
  private destSrRef: string | undefined;

  constructor(
    private readonly client: Caller,
    readonly domain: string,
    private readonly o: { destSr?: string | undefined } = {},
  ) {}

  async vmRef(): Promise<string> {
    if (this.vm) return this.vm;
    const refs = expectShape(RefList, await this.client.call('VM.get_by_name_label', this.domain), 'VM.get_by_name_label');
    if (refs.length !== 1) throw new MigrationError(refs.length ? `${refs.length} VMs are named ${this.domain}` : `no VM named ${this.domain}`, undefined, { hint: 'give the name of one running VM (xe vm-list)' });
    this.vm = refs[0]!;
    return this.vm;
  }

  async record(): Promise<VmRecordT> {
    return expectShape(VmRecord, await this.client.call('VM.get_record', await this.vmRef()), 'VM.get_record');
  }

  private async hosts(): Promise<Record<string, z.infer<typeof HostRecord>>> {
    const hosts = expectShape(RecordMap(HostRecord), await this.client.call('host.get_all_records'), 'host.get_all_records');
    for (const [ref, h] of Object.entries(hosts)) this.hostNames.set(ref, h.name_label);
    return hosts;
  }

  /** The route's names → host refs (name labels need not be unique in a pool). */
  private readonly routeHosts = new Map<string, string>();

  /** A host of the route (its route name, a ref, or a unique name label) as a ref. */
  hostRef(host: string): string | undefined {
    if (this.routeHosts.has(host)) return this.routeHosts.get(host);
    if (this.hostNames.has(host)) return host;
    const named = [...this.hostNames].filter(([, name]) => name === host);
    return named.length === 1 ? named[0]![0] : undefined;
  }

  /** Names for the route's two hosts: their labels, with the uuid when the labels are the same. */
  private nameRoute(hosts: Record<string, z.infer<typeof HostRecord>>, home: string, dest: string): MigrationRoute {
    const label = (ref: string) => hosts[ref]?.name_label ?? ref;
    const same = home !== dest && label(home) === label(dest);
    const name = (ref: string) => (same ? `${label(ref)} (${hosts[ref]?.uuid ?? ref})` : label(ref));
    this.routeHosts.clear();
    this.routeHosts.set(name(home), home);
    this.routeHosts.set(name(dest), dest);
    return { origin: name(home), destination: name(dest) };
  }

  /**
   * A skip only where migration provably does not apply: a live run in a pool of one host. A VM that is
   * not there or not running, an operation XAPI does not allow now, a destination in maintenance, storage
   * that needs --dest-sr: the job could not be done, and the run stops with the reason (exit 4).
   */
  async route(mode: MigrateMode, to: string | undefined): Promise<MigrationRoute> {
    const stop = (message: string, hint: string) => new EnvironmentError(message, { hint });
    let vm;
    try {
      vm = await this.record();
    } catch (err) {
      if (err instanceof MigrationError) throw stop(err.message, err.hint ?? 'give the name of one running VM (xe vm-list)');
      throw err;
    }
    if (vm.power_state !== 'Running') throw stop(`VM ${this.domain} is ${vm.power_state}, not Running`, 'start it first (fbxen boot --toolstack xapi --keep), then run migrate-test again');
    const hosts = await this.hosts();
    this.home = vm.resident_on;
    const homeName = this.hostNames.get(vm.resident_on) ?? vm.resident_on;
    // XAPI lists what it would allow now; HVM guests are refused live migration until PV drivers are
    // detected (xe-guest-utilities in FreeBSD), which shows up here.
    const allowed = vm.allowed_operations;
    const needed = mode === 'save-restore' ? 'suspend' : this.o.destSr ? undefined : 'pool_migrate';
    if (allowed && needed && !allowed.includes(needed)) {
      throw stop(
        `XAPI does not allow ${needed} for ${this.domain} now (allowed: ${allowed.join(', ') || 'none'}); for live migration of an HVM guest XAPI wants PV drivers detected (the xe-guest-utilities port in FreeBSD)`,
        'install and start xe-guest-utilities in the guest (pkg install xe-guest-utilities; service xenguest start), then check `xe vm-param-get param-name=allowed-operations`',
      );
    }
    if (mode === 'save-restore') return { origin: homeName, destination: homeName };
    const others = Object.entries(hosts).filter(([ref]) => ref !== vm.resident_on);
    if (!to && others.length === 0) return { skip: 'the pool has one host: nowhere to migrate to', origin: homeName, destination: homeName };
    const wanted = to ? others.find(([ref, h]) => h.name_label === to || h.uuid === to || h.address === to || ref === to) : others[0];
    if (!wanted) throw stop(`no other host named ${to} in the pool (the VM runs on ${homeName})`, 'give --to a host of this pool by name label, uuid or address (xe host-list)');
    if (wanted[1]['enabled'] === false) throw stop(`the destination host ${wanted[1].name_label} is disabled (maintenance mode)`, `enable it (xe host-enable) or give another host with --to`);
    this.dest = wanted[0];
    // VM.pool_migrate moves memory only: each disk must be on an SR both hosts see.
    const srs = expectShape(RecordMap(SrRecord), await this.client.call('SR.get_all_records'), 'SR.get_all_records');
    const unshared: string[] = [];
    for (const vbdRef of vm.VBDs) {
      const vbd = expectShape(VbdRecord, await this.client.call('VBD.get_record', vbdRef), 'VBD.get_record');
      if (vbd.type !== 'Disk' || vbd.VDI === 'OpaqueRef:NULL') continue;
      const sr = String(await this.client.call('VDI.get_SR', vbd.VDI));
      if (!srs[sr]?.shared) unshared.push(`${srs[sr]?.name_label ?? sr} (disk ${vbd.userdevice})`);
    }
    // A --dest-sr that names no SR is refused even when the disks are shared (a typo is not "unused").
    const destSr = this.o.destSr;
    const sr = destSr === undefined ? undefined : Object.entries(srs).find(([ref, s]) => s.name_label === destSr || s.uuid === destSr || ref === destSr);
    if (destSr !== undefined && !sr) throw stop(`no SR named ${destSr} in the pool`, 'give --dest-sr an SR of this pool by name label or uuid (xe sr-list)');
    if (unshared.length) {
      if (!sr) throw stop(`storage not shared: ${unshared.join(', ')}; VM.pool_migrate needs a shared SR`, 'give --dest-sr SR (a shared SR) for VM.migrate_send with storage motion');
      this.destSrRef = sr[0];
    }
    return this.nameRoute(hosts, vm.resident_on, this.dest);
  }

  /** Where the VM is now; undefined when it is gone. */
  async locate(): Promise<DomainLocation | undefined> {
    try {
      const vm = await this.record();
      if (this.hostNames.size === 0) await this.hosts().catch(() => undefined);
      return { host: this.hostNames.get(vm.resident_on) ?? vm.resident_on, id: await this.vmRef(), name: vm.name_label, state: vmState(vm.power_state) };
    } catch (err) {
      if (err instanceof XapiError && err.code === 'HANDLE_INVALID') return undefined;
      if (err instanceof MigrationError) return undefined;
      throw err;
    }
  }

  /** One live migration to HOST (a route host); VM.migrate_send when the route found unshared disks. */
  async migrateTo(host: string, timeoutMs: number): Promise<number> {
    const vm = await this.vmRef();
    const target = this.hostRef(host);
    return this.timed(timeoutMs, async () => {
      if (!target) throw new MigrationError(`no destination host ${host}: the preflight did not run`, undefined, { hint: 'this is a bug in fbxen' });
      if (this.destSrRef) {
        const vdiMap: Record<string, string> = {};
        for (const vbdRef of (await this.record()).VBDs) {
          const vbd = expectShape(VbdRecord, await this.client.call('VBD.get_record', vbdRef), 'VBD.get_record');
          if (vbd.type === 'Disk' && vbd.VDI !== 'OpaqueRef:NULL') vdiMap[vbd.VDI] = this.destSrRef;
        }
        const network = expectShape(RefList, await this.client.call('network.get_all'), 'network.get_all')[0]!;
        await migrateSend(this.client, this.client, vm, { destHost: target, destNetwork: network, vdiMap, vifMap: {} }, timeoutMs);
      } else {
        await poolMigrate(this.client, vm, target, timeoutMs);
      }
    });
  }

  /** VM.suspend (save) or VM.resume (restore); the time the task took. */
  async suspendOrResume(op: 'suspend' | 'resume', timeoutMs: number): Promise<number> {
    const vm = await this.vmRef();
    return this.timed(timeoutMs, () => this.client.callAsync(`VM.${op}`, op === 'suspend' ? [vm] : [vm, false, false], timeoutMs));
  }

  /** Runs a toolstack operation; a failure becomes a MigrationError saying where the VM is now. */
  private async timed(timeoutMs: number, fn: () => Promise<unknown>): Promise<number> {
    const started = Date.now();
    try {
      await fn();
    } catch (err) {
      const where = await this.locate().catch(() => undefined);
      if (err instanceof TimeoutError) {
        throw new MigrationTimeoutError(`the migration of ${this.domain} did not finish within ${Math.round(timeoutMs / 1000)} s (task cancelled); the VM is now: ${describeLocation(where)}`, where, {
          hint: 'fbxen destroyed nothing; check the VM with `xe vm-list` (a VM stuck in a power state needs `xe vm-reset-powerstate`)',
        });
      }
      if (err instanceof XapiError) {
        throw new MigrationError(`${err.message}; the VM is now: ${describeLocation(where)}`, where, { hint: err.hint ?? 'fbxen destroyed nothing', cause: err });
      }
      throw err;
    }
    return Date.now() - started;
  }
}

/** --dry-run lines of migrate-test's preflight. */
export function planMigratePreflight(domain: string, mode: MigrateMode, to: string | undefined, destSr: string | undefined): string[] {
  return [
    `VM.get_by_name_label ${domain}, VM.get_record   (Running, and XAPI allows ${mode === 'live' ? 'pool_migrate' : 'suspend'}; else stop, exit 4)`,
    ...(mode === 'live'
      ? [
          `host.get_all_records   (destination: ${to ?? 'another host of the pool; a pool of one host: skip'}, enabled; else stop, exit 4)`,
          `SR.get_all_records, VBD.get_record, VDI.get_SR per disk   (shared SR for VM.pool_migrate${destSr ? `, else VM.migrate_send to SR ${destSr}` : '; else stop, exit 4'})`,
        ]
      : []),
  ];
}

/** --dry-run lines of one iteration. */
export function planMigrateIteration(iteration: number, mode: MigrateMode, to: string | undefined, destSr: string | undefined): string[] {
  if (mode === 'save-restore') return ['Async.VM.suspend VM', 'Async.VM.resume VM false false', 'VM.get_record   (power state, resident_on)'];
  const toward = iteration % 2 === 1 ? (to ?? 'the other host') : 'the original host';
  const call = destSr ? `host.migrate_receive ${toward}; Async.VM.migrate_send VM {vdi → SR ${destSr}} (if the disks are not on a shared SR)` : `Async.VM.pool_migrate VM ${toward} {live: true}`;
  return [call, 'VM.get_record   (power state, resident_on); QEMU on the destination reconnects the console'];
}
