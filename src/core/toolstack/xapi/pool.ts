/**
 * The pool a run works in: its name and master, the SR for the disks (--sr, else the pool's default)
 * and the network for the VIF (--network, else xenbr0). Every answer is validated (records.ts).
 */
import { InputError, ToolstackError } from '../../errors.js';
import { NULL_REF, PlanRecorder, str, type Api, type Rec } from './api.js';
import { XapiError } from './errors.js';
import { expectShape, HostRecord, NetworkRecord, RecordMap, SrRecord } from './records.js';
import type { XapiValue } from './xmlrpc.js';

export interface PoolChoice {
  poolName: string;
  master: { name: string; address: string };
  sr: string;
  srRec: Rec;
  network: string;
  netRec: Rec;
}

async function findOne(api: Api, cls: 'SR' | 'network', wanted: string | undefined, fallback: () => Promise<string>): Promise<[string, Rec]> {
  const all = expectShape(RecordMap(cls === 'SR' ? SrRecord : NetworkRecord), await api.call(`${cls}.get_all_records`), `${cls}.get_all_records`) as Record<string, Rec>;
  if (wanted) {
    const hits = Object.entries(all).filter(([ref, r]) => r['uuid'] === wanted || r['name_label'] === wanted || ref === wanted || (cls === 'network' && r['bridge'] === wanted));
    if (hits.length === 1) return hits[0]!;
    const names = Object.values(all)
      .map((r) => JSON.stringify(r['name_label']))
      .join(', ');
    throw new InputError(hits.length ? `--${cls === 'SR' ? 'sr' : 'network'} ${wanted} matches ${hits.length} objects` : `no ${cls} named ${JSON.stringify(wanted)} in the pool`, {
      hint: hits.length ? 'pass its uuid instead of the name' : `choose one of: ${names}`,
    });
  }
  const ref = await fallback();
  const rec = all[ref];
  if (!rec) throw new ToolstackError(`the pool's default ${cls} ${ref} is not in ${cls}.get_all_records`, { hint: `pass --${cls === 'SR' ? 'sr' : 'network'} explicitly` });
  return [ref, rec];
}

/** Reads the pool, its master, the SR and the network (a plan records the same calls with symbolic answers). */
export async function choosePool(api: Api, wanted: { sr?: string | undefined; network?: string | undefined }): Promise<PoolChoice> {
  const plan = api instanceof PlanRecorder ? api : undefined;
  const pools = (await api.call('pool.get_all')) as XapiValue;
  const poolRef = Array.isArray(pools) ? str(pools[0]) : str(pools);
  const poolName = str(await api.call('pool.get_name_label', poolRef));
  const masterRef = str(await api.call('pool.get_master', poolRef));
  const masterAnswer = await api.call('host.get_record', masterRef);
  const masterRec = (plan ? {} : expectShape(HostRecord, masterAnswer, 'host.get_record')) as Rec;
  let sr: string;
  let srRec: Rec;
  if (plan) {
    if (!wanted.sr) await api.call('pool.get_default_SR', poolRef);
    await api.call('SR.get_all_records');
    [sr, srRec] = [wanted.sr ? `<SR ${wanted.sr}>` : '<default SR>', { uuid: '<uuid>', name_label: wanted.sr ?? '<default>', shared: false, type: '?' }];
  } else {
    [sr, srRec] = await findOne(api, 'SR', wanted.sr, async () => {
      const d = str(await api.call('pool.get_default_SR', poolRef));
      if (!d || d === NULL_REF) throw new XapiError('DEFAULT_SR_NOT_FOUND', [], 'pool.get_default_SR');
      return d;
    });
    if (srRec['content_type'] === 'iso') throw new InputError(`SR ${str(srRec['name_label'])} is an ISO library, not disk storage`, { hint: 'pass --sr with a disk SR (xe sr-list content-type=user)' });
  }
  let network: string;
  let netRec: Rec;
  if (plan) {
    await api.call('network.get_all_records');
    [network, netRec] = [wanted.network ? `<network ${wanted.network}>` : '<network xenbr0>', { uuid: '<uuid>', name_label: wanted.network ?? '', bridge: 'xenbr0' }];
  } else {
    [network, netRec] = await findOne(api, 'network', wanted.network, async () => {
      const all = expectShape(RecordMap(NetworkRecord), await api.call('network.get_all_records'), 'network.get_all_records') as Record<string, Rec>;
      const hit = Object.entries(all).find(([, r]) => r['bridge'] === 'xenbr0') ?? Object.entries(all).find(([, r]) => !String(r['bridge']).startsWith('xapi'));
      if (!hit) throw new InputError('the pool has no network on xenbr0', { hint: 'pass --network NAME' });
      return hit[0];
    });
  }
  return { poolName, master: { name: str(masterRec['name_label']), address: str(masterRec['address']) }, sr, srRec, network, netRec };
}
