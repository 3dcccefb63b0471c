/**
 * Migration calls for migrate-test (xapi.md §5.5), as thin typed wrappers over the client:
 * within a pool VM.pool_migrate(vm, host, {live}); across pools or SRs Host.migrate_receive on the
 * destination session, then VM.migrate_send on the source session. Both run as Async tasks.
 */
import type { XapiClient } from './client.js';
import type { XapiValue } from './xmlrpc.js';

type Caller = Pick<XapiClient, 'call' | 'callAsync'>;

/** Live-migrates VM to HOST inside the pool (the VM's disks must be on a shared SR). */
export async function poolMigrate(client: Caller, vm: string, host: string, timeoutMs: number): Promise<void> {
  await client.callAsync('VM.pool_migrate', [vm, host, { live: 'true' }], timeoutMs);
}

export interface MigrateSendPlan {
  /** Destination host and the network its migration traffic uses. */
  destHost: string;
  destNetwork: string;
  /** Source VDI ref → destination SR ref. */
  vdiMap: Record<string, string>;
  /** Source VIF ref → destination network ref. */
  vifMap: Record<string, string>;
}

/** Storage (or cross-pool) live migration; returns the VM's ref on the destination. */
export async function migrateSend(source: Caller, destination: Caller, vm: string, plan: MigrateSendPlan, timeoutMs: number): Promise<string> {
  const token = (await destination.call('host.migrate_receive', plan.destHost, plan.destNetwork, {})) as Record<string, XapiValue>;
  const result = await source.callAsync('VM.migrate_send', [vm, token, true, plan.vdiMap, plan.vifMap, {}, {}], timeoutMs);
  return typeof result === 'string' ? result : String(result);
}
