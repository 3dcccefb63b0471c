/**
 * Migration with XAPI (xapi.md §5.5): VM.pool_migrate inside the pool when every disk is on a shared SR;
 * VM.migrate_send with a VDI map to --dest-sr otherwise (storage motion); VM.suspend + VM.resume for
 * save-restore. Iterations alternate between the VM's host and the destination, as xcp-ng-tests'
 * "then come back". The console: QEMU connects to the VM's platform:hvm_serial tcp: target; fbxen listens
 * on that port, and a new QEMU connects again after each migration.
 */
import { z } from 'zod';
import { EnvironmentError, TimeoutError } from '../errors.js';
import type { XapiClient } from '../toolstack/xapi/client.js';
import { XapiError } from '../toolstack/xapi/errors.js';
import { migrateSend, poolMigrate } from '../toolstack/xapi/migrate.js';
import { openConsoleListener, type ConsoleListener } from '../toolstack/xapi/console.js';
import { expectShape, HostRecord, RecordMap, RefList, SrRecord, VbdRecord } from '../toolstack/xapi/records.js';
import type { ConsoleCapture } from './capture.js';
import { describeLocation, MigrationError, MigrationTimeoutError, type DomainLocation, type MigrateMode, type MigrationDriver, type MigrationOutcome } from './types.js';

type Caller = Pick<XapiClient, 'call' | 'callAsync'> & { readonly masterUrl?: string };

const VmRecord = z
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

export interface XapiDriverOptions {
  client: Caller;
  domain: string;
  /** destination host (name label, uuid or address); default: another host of the pool */
  to?: string | undefined;
  /** destination SR for VM.migrate_send (storage motion) when the disks are not on a shared SR */
  destSr?: string | undefined;
  /** listen address for the console (default: the hvm_serial host when it is local, else all) */
  listenHost?: string | undefined;
  /** FBXEN_XAPI_CONSOLE_PEERS (who may connect to the console) */
  env?: NodeJS.ProcessEnv | undefined;
}

const STATE: Record<string, DomainLocation['state']> = { Running: 'running', Paused: 'paused', Suspended: 'suspended', Halted: 'halted' };

export class XapiMigrationDriver implements MigrationDriver {
  readonly toolstack = 'xapi' as const;
  private vm: string | undefined;
  private home: string | undefined;
  private dest: string | undefined;
  private destSr: string | undefined;
  private hostNames = new Map<string, string>();
  private listener: ConsoleListener | undefined;
  private useMigrateSend = false;

  constructor(private readonly o: XapiDriverOptions) {}

  private async vmRef(): Promise<string> {
    if (this.vm) return this.vm;
    const refs = expectShape(RefList, await this.o.client.call('VM.get_by_name_label', this.o.domain), 'VM.get_by_name_label');
    if (refs.length !== 1) throw new MigrationError(refs.length ? `${refs.length} VMs are named ${this.o.domain}` : `no VM named ${this.o.domain}`, undefined, { hint: 'give the name of one running VM (xe vm-list)' });
    this.vm = refs[0]!;
    return this.vm;
  }

  private async record(): Promise<z.infer<typeof VmRecord>> {
    return expectShape(VmRecord, await this.o.client.call('VM.get_record', await this.vmRef()), 'VM.get_record');
  }

  private async hosts(): Promise<Record<string, z.infer<typeof HostRecord>>> {
    const hosts = expectShape(RecordMap(HostRecord), await this.o.client.call('host.get_all_records'), 'host.get_all_records');
    for (const [ref, h] of Object.entries(hosts)) this.hostNames.set(ref, h.name_label);
    return hosts;
  }

  /**
   * A skip only where migration provably does not apply: a live run in a pool of one host. A VM that is
   * not there or not running, an operation XAPI does not allow now, a destination in maintenance, storage
   * that needs --dest-sr: the job could not be done, and the run stops with the reason (exit 4).
   */
  async preflight(mode: MigrateMode): Promise<string | undefined> {
    const stop = (message: string, hint: string) => new EnvironmentError(message, { hint });
    let vm;
    try {
      vm = await this.record();
    } catch (err) {
      if (err instanceof MigrationError) throw stop(err.message, err.hint ?? 'give the name of one running VM (xe vm-list)');
      throw err;
    }
    if (vm.power_state !== 'Running') throw stop(`VM ${this.o.domain} is ${vm.power_state}, not Running`, 'start it first (fbxen boot --toolstack xapi --keep), then run migrate-test again');
    const hosts = await this.hosts();
    this.home = vm.resident_on;
    // XAPI lists what it would allow now; HVM guests are refused live migration until PV drivers are
    // detected (xe-guest-utilities in FreeBSD), which shows up here.
    const allowed = vm.allowed_operations;
    const needed = mode === 'save-restore' ? 'suspend' : this.o.destSr ? undefined : 'pool_migrate';
    if (allowed && needed && !allowed.includes(needed)) {
      throw stop(
        `XAPI does not allow ${needed} for ${this.o.domain} now (allowed: ${allowed.join(', ') || 'none'}); for live migration of an HVM guest XAPI wants PV drivers detected (the xe-guest-utilities port in FreeBSD)`,
        'install and start xe-guest-utilities in the guest (pkg install xe-guest-utilities; service xenguest start), then check `xe vm-param-get param-name=allowed-operations`',
      );
    }
    if (mode === 'save-restore') return undefined;
    const others = Object.entries(hosts).filter(([ref]) => ref !== vm.resident_on);
    if (!this.o.to && others.length === 0) return 'the pool has one host: nowhere to migrate to';
    const wanted = this.o.to ? others.find(([ref, h]) => h.name_label === this.o.to || h.uuid === this.o.to || h.address === this.o.to || ref === this.o.to) : others[0];
    if (!wanted) throw stop(`no other host named ${this.o.to} in the pool (the VM runs on ${this.hostNames.get(vm.resident_on) ?? vm.resident_on})`, 'give --to a host of this pool by name label, uuid or address (xe host-list)');
    if (wanted[1]['enabled'] === false) throw stop(`the destination host ${wanted[1].name_label} is disabled (maintenance mode)`, `enable it (xe host-enable) or give another host with --to`);
    this.dest = wanted[0];
    // VM.pool_migrate moves memory only: each disk must be on an SR both hosts see.
    const srs = expectShape(RecordMap(SrRecord), await this.o.client.call('SR.get_all_records'), 'SR.get_all_records');
    const unshared: string[] = [];
    for (const vbdRef of vm.VBDs) {
      const vbd = expectShape(VbdRecord, await this.o.client.call('VBD.get_record', vbdRef), 'VBD.get_record');
      if (vbd.type !== 'Disk' || vbd.VDI === 'OpaqueRef:NULL') continue;
      const sr = String(await this.o.client.call('VDI.get_SR', vbd.VDI));
      if (!srs[sr]?.shared) unshared.push(`${srs[sr]?.name_label ?? sr} (disk ${vbd.userdevice})`);
    }
    // A --dest-sr that names no SR is refused even when the disks are shared (a typo is not "unused").
    const sr = this.o.destSr === undefined ? undefined : Object.entries(srs).find(([ref, s]) => s.name_label === this.o.destSr || s.uuid === this.o.destSr || ref === this.o.destSr);
    if (this.o.destSr !== undefined && !sr) throw stop(`no SR named ${this.o.destSr} in the pool`, 'give --dest-sr an SR of this pool by name label or uuid (xe sr-list)');
    if (unshared.length) {
      if (!sr) throw stop(`storage not shared: ${unshared.join(', ')}; VM.pool_migrate needs a shared SR`, 'give --dest-sr SR (a shared SR) for VM.migrate_send with storage motion');
      this.destSr = sr[0];
      this.useMigrateSend = true;
    }
    return undefined;
  }

  planPreflight(mode: MigrateMode): string[] {
    return [
      `VM.get_by_name_label ${this.o.domain}, VM.get_record   (Running, and XAPI allows ${mode === 'live' ? 'pool_migrate' : 'suspend'}; else stop, exit 4)`,
      ...(mode === 'live'
        ? [
            `host.get_all_records   (destination: ${this.o.to ?? 'another host of the pool; a pool of one host: skip'}, enabled; else stop, exit 4)`,
            `SR.get_all_records, VBD.get_record, VDI.get_SR per disk   (shared SR for VM.pool_migrate${this.o.destSr ? `, else VM.migrate_send to SR ${this.o.destSr}` : '; else stop, exit 4'})`,
          ]
        : []),
    ];
  }

  planIteration(iteration: number, mode: MigrateMode): string[] {
    if (mode === 'save-restore') return ['Async.VM.suspend VM', 'Async.VM.resume VM false false', 'VM.get_record   (power state, resident_on)'];
    const toward = iteration % 2 === 1 ? (this.o.to ?? 'the other host') : 'the original host';
    const call = this.o.destSr ? `host.migrate_receive ${toward}; Async.VM.migrate_send VM {vdi → SR ${this.o.destSr}} (if the disks are not on a shared SR)` : `Async.VM.pool_migrate VM ${toward} {live: true}`;
    return [call, 'VM.get_record   (power state, resident_on); QEMU on the destination reconnects the console'];
  }

  async locate(): Promise<DomainLocation | undefined> {
    try {
      const vm = await this.record();
      if (this.hostNames.size === 0) await this.hosts().catch(() => undefined);
      return { host: this.hostNames.get(vm.resident_on) ?? vm.resident_on, id: await this.vmRef(), name: vm.name_label, state: STATE[vm.power_state] ?? 'unknown' };
    } catch (err) {
      if (err instanceof XapiError && err.code === 'HANDLE_INVALID') return undefined;
      if (err instanceof MigrationError) return undefined;
      throw err;
    }
  }

  async migrate(iteration: number, mode: MigrateMode, timeoutMs: number): Promise<MigrationOutcome> {
    const vm = await this.vmRef();
    const started = Date.now();
    try {
      if (mode === 'save-restore') {
        await this.o.client.callAsync('VM.suspend', [vm], timeoutMs);
        await this.o.client.callAsync('VM.resume', [vm, false, false], timeoutMs);
      } else {
        const target = iteration % 2 === 1 ? this.dest : this.home;
        if (!target) throw new MigrationError('no destination host: the preflight did not run', undefined, { hint: 'this is a bug in fbxen' });
        if (this.useMigrateSend) {
          const vdiMap: Record<string, string> = {};
          for (const vbdRef of (await this.record()).VBDs) {
            const vbd = expectShape(VbdRecord, await this.o.client.call('VBD.get_record', vbdRef), 'VBD.get_record');
            if (vbd.type === 'Disk' && vbd.VDI !== 'OpaqueRef:NULL') vdiMap[vbd.VDI] = this.destSr!;
          }
          const network = expectShape(RefList, await this.o.client.call('network.get_all'), 'network.get_all')[0]!;
          await migrateSend(this.o.client, this.o.client, vm, { destHost: target, destNetwork: network, vdiMap, vifMap: {} }, timeoutMs);
        } else {
          await poolMigrate(this.o.client, vm, target, timeoutMs);
        }
      }
    } catch (err) {
      const where = await this.locate().catch(() => undefined);
      if (err instanceof TimeoutError) {
        throw new MigrationTimeoutError(`the migration of ${this.o.domain} did not finish within ${Math.round(timeoutMs / 1000)} s (task cancelled); the VM is now: ${describeLocation(where)}`, where, {
          hint: 'fbxen destroyed nothing; check the VM with `xe vm-list` (a VM stuck in a power state needs `xe vm-reset-powerstate`)',
        });
      }
      if (err instanceof XapiError) {
        throw new MigrationError(`${err.message}; the VM is now: ${describeLocation(where)}`, where, { hint: err.hint ?? 'fbxen destroyed nothing', cause: err });
      }
      throw err;
    }
    const toolstackMs = Date.now() - started;
    return { toolstackMs, where: await this.locate() };
  }

  async attachConsole(capture: ConsoleCapture): Promise<boolean> {
    if (this.listener) return true; // one listener for the run: QEMU reconnects to it after each migration
    const vm = await this.record();
    const m = /^tcp:([^:]+|\[[^\]]+\]):(\d+)/.exec(String(vm.platform['hvm_serial'] ?? ''));
    if (!m) return false; // no tcp console: the ssh channel is the way in
    // The hardened listener of fbxen boot: only the pool's hosts, one connection read at a time.
    this.listener = await openConsoleListener({
      onData: (d) => capture.write(d),
      advertiseHost: m[1]!.replace(/^\[|\]$/g, ''),
      listenHost: this.o.listenHost,
      port: Number(m[2]),
      pool: this.o.client,
      env: this.o.env,
    });
    return true;
  }

  writeConsole(text: string): void {
    this.listener?.write(text);
  }

  async close(): Promise<void> {
    const l = this.listener;
    this.listener = undefined;
    await l?.close();
  }
}
